"""Shared inputs for the parity tests against cp-measure: real masks and synthetic label images.

``examplehuman()`` segments CellProfiler's ExampleHuman field with its pipeline's
IdentifyPrimaryObjects settings (once per test session); ``synthetic_labels`` gives touching,
non-convex objects without any data; ``contiguous`` renumbers labels 1..k as cp-measure needs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from _helpers import SHARED_DATA

EXAMPLEHUMAN = SHARED_DATA / "cellprofiler_examplehuman"
CHANNELS = ("DNA", "PH3", "cellbody")


@lru_cache(maxsize=1)
def examplehuman():
    """``(image (3, 512, 512) uint8, masks, objects)``: our segmentation and object table of ExampleHuman."""
    from moa_features.datasets import read_image
    from moa_features.features.site import site_objects

    image = np.stack([read_image(EXAMPLEHUMAN / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)])
    objects, masks = site_objects(image, CHANNELS, 0, 2, threshold="li", min_diameter=8, max_diameter=80)
    return image, masks, objects


def synthetic_labels(seed: int = 0, shape: tuple[int, int] = (160, 200), n: int = 14) -> np.ndarray:
    """Touching ellipses, some with a notch (non-convex) and some one or two pixels wide, labels 1..n."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(10, shape[0] - 10), rng.uniform(10, shape[1] - 10)
        a, b, t = rng.uniform(3, 22), rng.uniform(3, 14), rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        if k % 3 == 0:
            inside &= ~((np.abs(v) < b / 3) & (u > 0))  # a notch: non-convex
        labels[inside] = k
    labels[5, 5:7] = n + 1  # a two-pixel object
    labels[shape[0] - 1, 100:140] = n + 2  # a one-pixel-high object on the border
    return contiguous(labels)


def synthetic_image(labels: np.ndarray, seed: int = 0, channels: int = 2) -> np.ndarray:
    """``(channels, H, W)`` uint8: smooth per-object stains plus noise, correlated between channels."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.normal(size=labels.shape), 3)
    planes = []
    for c in range(channels):
        own = gaussian_filter(rng.normal(size=labels.shape), 1.5)
        plane = 60 + 40 * (labels > 0) + 300 * base + 150 * own * (c + 1) / channels + rng.normal(0, 8, labels.shape)
        planes.append(np.clip(plane, 0, 255).astype(np.uint8))
    return np.stack(planes)


def contiguous(labels: np.ndarray) -> np.ndarray:
    """The labels renumbered 1..k in order of their numbers (cp-measure needs contiguous labels)."""
    present = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[labels]


def assert_close(ours: np.ndarray, theirs: np.ndarray, name: str, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """Equal to ``rtol`` relative (plus ``atol``), NaN where the other is NaN."""
    np.testing.assert_allclose(np.asarray(ours, float), np.asarray(theirs, float), rtol=rtol, atol=atol, err_msg=name)
