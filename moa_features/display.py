"""Showing channel images to people: shared display range and downsampling.

Used by the report's example panels and by the app, so a treated site and its control are
always shown the same way: one display range per channel computed over both images.
"""

from __future__ import annotations

import numpy as np


def contrast_limits(*stacks: np.ndarray, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """Display range per channel shared by all ``(C, H, W)`` stacks: ``(C, 2)`` [low, high].

    The ``low`` and ``high`` percentiles (inverted-CDF definition) of each channel's pixels
    pooled over every stack, exact and fast from the histogram for unsigned integer images.
    A constant channel gets a non-empty range (``high = low + 1``).
    """
    if not stacks:
        raise ValueError("contrast_limits needs at least one (C, H, W) stack")
    n = stacks[0].shape[0]
    if any(s.ndim != 3 or s.shape[0] != n for s in stacks):
        raise ValueError(f"expected (C, H, W) stacks with the same C, got {[s.shape for s in stacks]}")
    limits = np.empty((n, 2), dtype=np.float64)
    for c in range(n):
        pixels = [s[c].ravel() for s in stacks]
        if all(np.issubdtype(p.dtype, np.unsignedinteger) for p in pixels):
            size = max(int(p.max()) for p in pixels) + 1
            cdf = np.cumsum(sum(np.bincount(p, minlength=size) for p in pixels))
            ranks = np.maximum(np.ceil(np.array([low, high]) / 100 * cdf[-1]), 1)
            lo, hi = np.searchsorted(cdf, ranks, side="left")
        else:
            lo, hi = np.percentile(np.concatenate(pixels), [low, high], method="inverted_cdf")
        limits[c] = (lo, hi if hi > lo else lo + 1.0)
    return limits


def downsample(image: np.ndarray, max_size: int = 256) -> np.ndarray:
    """Block-mean a ``(..., H, W)`` image by an integer factor so ``max(H, W) <= max_size``.

    Returns float32; trailing rows/columns that do not fill a block are dropped.
    """
    h, w = image.shape[-2:]
    f = int(np.ceil(max(h, w) / max_size))
    if f <= 1:
        return image.astype(np.float32)
    h2, w2 = h // f * f, w // f * f
    x = image[..., :h2, :w2].astype(np.float32)
    return x.reshape(*x.shape[:-2], h2 // f, f, w2 // f, f).mean(axis=(-3, -1))
