"""The microscope and the batch effects: per-plate gain, offset, vignetting; shot noise, 8-bit.

Every experiment and plate draws its own per-channel gain (log-sd 0.25 experiment, 0.2 plate),
background offset, vignetting strength and centre, and a biological drift in cell density and
nuclear size (:func:`batch_params`); :func:`acquire` turns a noiseless signal into 8-bit images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from moa_features.synthetic._seeds import seeded_rng
from moa_features.synthetic.design import ScreenSpec

N_CHANNELS = 6
# Per-channel signal scale (DN at unit gain), background offset (DN) and photons per DN.
SIGNAL_SCALE = np.array([36.0, 38.0, 16.0, 20.0, 7.0, 18.0], dtype=np.float32)
BACKGROUND = np.array([1.5, 7.0, 5.0, 4.0, 1.2, 6.0], dtype=np.float32)
PHOTONS_PER_DN = np.array([4.0, 2.0, 2.0, 2.0, 3.0, 2.0], dtype=np.float32)


@dataclass(frozen=True)
class BatchParams:
    """Acquisition and biology of one plate: per-channel ``gain`` and ``offset`` (DN),
    ``vignette`` (relative fall-off at the corners), ``centre`` of the illumination
    (fraction of the image, (row, col)), cell ``density`` and ``nucleus_scale`` factors."""

    gain: np.ndarray
    offset: np.ndarray
    vignette: np.ndarray
    centre: tuple[float, float]
    density: float
    nucleus_scale: float


def batch_params(spec: ScreenSpec, seed: int, experiment_index: int, plate: int) -> BatchParams:
    """Batch effects of one plate: the experiment's draws combined with the plate's."""
    b = spec.batch_strength
    re = seeded_rng(seed, 1, experiment_index)
    rp = seeded_rng(seed, 2, experiment_index, plate)
    gain = np.exp(re.normal(0, 0.25 * b, N_CHANNELS) + rp.normal(0, 0.2 * b, N_CHANNELS))
    offset = BACKGROUND * np.exp(re.normal(0, 0.3 * b, N_CHANNELS) + rp.normal(0, 0.15 * b, N_CHANNELS))
    vig_exp = re.uniform(0.15, 0.45) * b
    vignette = np.clip(vig_exp * rp.uniform(0.8, 1.25) * np.exp(rp.normal(0, 0.15, N_CHANNELS)), 0, 0.8)
    centre = tuple(0.5 + rp.normal(0, 0.12 * b, 2))
    density = float(np.exp(re.normal(0, 0.08 * b) + rp.normal(0, 0.05 * b)))
    nucleus_scale = float(np.exp(re.normal(0, 0.04 * b) + rp.normal(0, 0.02 * b)))
    return BatchParams(
        gain.astype(np.float32), offset.astype(np.float32), vignette.astype(np.float32),
        (float(centre[0]), float(centre[1])), density, nucleus_scale,
    )  # fmt: skip


def acquire(
    rng: np.random.Generator,
    signal: np.ndarray,
    batch: BatchParams,
    psf_sigma: float,
    haze_width: int,
    gain_jitter: np.ndarray,
) -> np.ndarray:
    """Microscope and camera: PSF blur plus out-of-focus haze (box width ``haze_width``
    px), vignetting, gain, offset, shot noise, 8-bit.

    ``signal``: (6, H, W) float stain signal; returns (6, H, W) uint8.
    """
    _, h, w = signal.shape
    img = ndi.gaussian_filter(signal, (0, psf_sigma, psf_sigma))
    box = (1, haze_width, haze_width)  # out-of-focus light: two box blurs ~ a wide Gaussian
    img += 0.3 * ndi.uniform_filter(ndi.uniform_filter(signal, box), box)
    y = (np.arange(h, dtype=np.float32) / h - batch.centre[0])[:, None]
    x = (np.arange(w, dtype=np.float32) / w - batch.centre[1])[None, :]
    r2 = (y**2 + x**2) / 0.5  # 1 at the corners of a centred field
    illum = 1 - batch.vignette[:, None, None] * r2[None]
    gain = (batch.gain * gain_jitter * SIGNAL_SCALE)[:, None, None]
    dn = batch.offset[:, None, None] * (0.6 + 0.4 * illum) + gain * illum * img
    k = PHOTONS_PER_DN[:, None, None]
    counts = rng.poisson(np.maximum(dn, 0) * k)
    return np.clip(np.rint(counts / k), 0, 255).astype(np.uint8)
