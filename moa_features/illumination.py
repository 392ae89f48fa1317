"""Illumination correction in CellProfiler's sense (CorrectIlluminationCalculate / Apply).

A plate's illumination function, per channel, is the robust mean of a sample of its sites,
smoothed and normalised:

1. each sampled site is averaged over ``block`` x ``block`` pixel blocks (the function is
   smooth, so nothing is lost, and a sample of full-size sites fits in a few MB);
2. per block, the median over the sampled sites (robust to the odd bright or empty site);
   all-zero blocks (zero-padded borders) are left out, and blocks no site imaged take the
   value of the nearest imaged block, so padding never sets the function's scale;
3. Gaussian smoothing over ``sigma_fraction`` of the field's width (in blocks), nearest
   edge mode;
4. bilinear interpolation back to full size, and division by the function's minimum, so
   that every value is >= 1 (CellProfiler's "rescale" option): dividing an image by it
   only ever dims pixels, so corrected images stay in their dtype without clipping.

:func:`correct` divides a site by its plate's function and rounds back to the input dtype,
so every downstream feature keeps its exact integer fast paths.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi

MIN_SITES = 8  # a plate with fewer sampled sites gets no correction (the median would be the cells)
BLOCK = 16
SIGMA_FRACTION = 1 / 16


def block_means(image: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """``(C, ceil(H/block), ceil(W/block))`` float32 means of ``block`` x ``block`` tiles.

    Examples
    --------
    >>> import numpy as np
    >>> block_means(np.arange(16, dtype=np.uint8).reshape(1, 4, 4), 2).tolist()
    [[[2.5, 4.5], [10.5, 12.5]]]
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {image.shape}")
    c, h, w = image.shape
    hb, wb = -(-h // block), -(-w // block)
    padded = np.pad(image.astype(np.float32), ((0, 0), (0, hb * block - h), (0, wb * block - w)), mode="edge")
    return padded.reshape(c, hb, block, wb, block).mean(axis=(2, 4))


def illumination_function(
    blocks: Iterable[np.ndarray], shape: tuple[int, int], sigma_fraction: float = SIGMA_FRACTION
) -> np.ndarray:
    """A plate's illumination function from its sites' :func:`block_means`.

    blocks: ``(C, hb, wb)`` block means of each sampled site (at least :data:`MIN_SITES`);
    shape: the full ``(H, W)``. Returns ``(C, H, W)`` float32, every value >= 1 (minimum 1
    per channel).

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:64, :64]
    >>> site = (100 * (1 - ((y - 32) ** 2 + (x - 32) ** 2) / 4096))[None].astype(np.uint8)
    >>> f = illumination_function([block_means(site)] * 8, (64, 64))
    >>> float(f.min()), bool(f[0, 32, 32] > f[0, 0, 0])
    (1.0, True)
    """
    stack = np.stack(list(blocks)).astype(np.float32)
    if stack.shape[0] < MIN_SITES:
        raise ValueError(f"an illumination function needs at least {MIN_SITES} sites, got {stack.shape[0]}")
    robust = _fill_empty(_median_of_imaged(stack))
    c, hb, wb = robust.shape
    sigma = max(sigma_fraction * max(hb, wb), 0.5)
    smooth = ndi.gaussian_filter(robust, (0, sigma, sigma), mode="nearest")
    h, w = shape
    # block centres -> pixel coordinates, bilinear, constant beyond the outer centres
    block = -(-max(h, w) // max(hb, wb))
    rows = np.clip((np.arange(h) + 0.5) / block - 0.5, 0, hb - 1)
    cols = np.clip((np.arange(w) + 0.5) / block - 0.5, 0, wb - 1)
    grid = np.meshgrid(rows, cols, indexing="ij")
    full = np.stack([ndi.map_coordinates(plane, grid, order=1, mode="nearest") for plane in smooth])
    floor = np.maximum(full.reshape(c, -1).min(axis=1), 1e-6)[:, None, None]
    return np.maximum(full / floor, 1.0).astype(np.float32)


def _median_of_imaged(stack: np.ndarray) -> np.ndarray:
    """Per block, the median over sites of the blocks that hold any signal (``(n, C, hb, wb)`` -> ``(C, hb, wb)``).

    An all-zero block (a zero-padded border, a masked-out region) is no measurement of the
    illumination; blocks never imaged at all come out NaN.
    """
    imaged = np.where(stack > 0, stack, np.nan)
    out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    seen = np.isfinite(imaged).any(axis=0)
    out[seen] = np.nanmedian(imaged[:, seen], axis=0)
    return out


def _fill_empty(robust: np.ndarray) -> np.ndarray:
    """NaN blocks take the value of the nearest imaged block of their channel (1 for a channel never imaged)."""
    out = robust.copy()
    for plane in out:
        empty = ~np.isfinite(plane)
        if empty.all():
            plane[:] = 1.0
        elif empty.any():
            index = ndi.distance_transform_edt(empty, return_distances=False, return_indices=True)
            plane[:] = plane[tuple(index)]
    return out


def correct(image: np.ndarray, function: np.ndarray) -> np.ndarray:
    """Divide a ``(C, H, W)`` uint8/uint16 site by an illumination function, rounding to its dtype.

    function: ``(C, H, W)`` float32 >= 1 (:func:`illumination_function`). Returns an array of
    the input's dtype (values only decrease, so nothing clips).

    Examples
    --------
    >>> import numpy as np
    >>> correct(np.full((1, 2, 2), 100, np.uint8), np.full((1, 2, 2), 2.0, np.float32)).tolist()
    [[[50, 50], [50, 50]]]
    """
    if image.shape != function.shape:
        raise ValueError(f"illumination function shape {function.shape} differs from the image's {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got dtype {image.dtype}")
    out = np.divide(image, function, dtype=np.float32)
    out += 0.5
    return out.astype(image.dtype)
