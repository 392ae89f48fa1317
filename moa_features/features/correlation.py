"""Whole-image colocalisation of every channel pair: Pearson, Manders M1/M2, overlap.

Conventions (CellProfiler's ``MeasureColocalization``, image level):

- Pearson's r over all pixels, every pair at once from one centred matrix product
  (float64, the same value as ``scipy.stats.pearsonr``).
- Manders' coefficients use a per-channel threshold of 15 % of that channel's maximum:
  ``above_a = a >= 0.15 * max(a)``. ``Manders_<a>_<b>`` (M1 of the pair a, b) is the
  fraction of channel a's above-threshold intensity that lies where b is above threshold too:
  ``sum(a[above_a & above_b]) / sum(a[above_a])``; ``Manders_<b>_<a>`` is M2.
- Overlap coefficient (Manders' overlap, on the pixels above both thresholds):
  ``sum(a*b) / sqrt(sum(a^2) * sum(b^2))``.
- Undefined values are NaN, silently: Pearson when either channel is constant, Manders and
  overlap when a channel is all zero.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

THRESHOLD_FRACTION = 0.15

FEATURE_DOCS: list[tuple[str, str, str]] = [
    ("Image_Correlation_Pearson_<a>_<b>", "1 (-1 to 1)", "Pearson correlation of the pixel values of channels a and b (a before b in channel order); NaN if either channel is constant."),
    ("Image_Correlation_Manders_<a>_<b>", "fraction (0-1)", "Manders' coefficient (CellProfiler convention): fraction of channel a's intensity above 15 % of a's maximum that lies on pixels where b is above 15 % of b's maximum; both orders (M1 and M2). NaN if a is all zero."),
    ("Image_Correlation_Overlap_<a>_<b>", "1 (0-1)", "Manders' overlap coefficient sum(a*b) / sqrt(sum(a^2) sum(b^2)) over the pixels above both 15 % thresholds; NaN if none."),
]


def pearson_matrix(image: np.ndarray) -> np.ndarray:
    """Pearson correlation of every channel pair, ``(C, C)`` float64 from a ``(C, H, W)`` image.

    One centred matrix product; rows/columns of constant channels are NaN.
    """
    x = image.reshape(image.shape[0], -1).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    gram = x @ x.T
    norm = np.sqrt(np.diag(gram))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = gram / np.outer(norm, norm)
    r[(norm == 0)[:, None] | (norm == 0)[None, :]] = np.nan
    return np.clip(r, -1.0, 1.0)


_JOINT_BINS_LIMIT = 1 << 23


def _masked_sums(x: np.ndarray, above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``within[a, b] = sum(x_a * above_a * above_b)`` and ``squares[a, b]`` (the same of x_a^2),
    exact, from one histogram per channel over (which channels are above, value).

    x: ``(C, N)`` unsigned integers; above: ``(C, N)`` bool.
    """
    c = x.shape[0]
    n_codes = 1 << c
    code = np.zeros(x.shape[1], dtype=np.min_scalar_type(n_codes - 1))
    for k in range(c):
        code |= above[k].view(np.uint8).astype(code.dtype, copy=False) << k
    # has[code, k]: channel k is above threshold in pixels with that code
    has = ((np.arange(n_codes)[:, None] >> np.arange(c)) & 1).astype(bool)
    both = (has[:, :, None] & has[:, None, :]).reshape(n_codes, c * c).astype(np.int64)
    within = np.empty((c, c), dtype=np.float64)
    squares = np.empty((c, c), dtype=np.float64)
    for a in range(c):
        span = int(x[a].max()) + 1
        if n_codes * span <= _JOINT_BINS_LIMIT:
            index = code.astype(np.min_scalar_type(n_codes * span - 1))
            index *= span
            index += x[a]
            counts = np.bincount(index, minlength=n_codes * span).reshape(n_codes, span)
            value = np.arange(span, dtype=np.int64)
            s1, s2 = counts @ value, counts @ (value * value)
        else:
            xa = x[a].astype(np.float64)
            s1 = np.bincount(code, weights=xa, minlength=n_codes)
            s2 = np.bincount(code, weights=xa * xa, minlength=n_codes)
        within[a] = (s1 @ both).reshape(c, c)[a]
        squares[a] = (s2 @ both).reshape(c, c)[a]
    return within, squares


def manders_overlap(image: np.ndarray, fraction: float = THRESHOLD_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Manders' coefficients and overlap of every channel pair of a ``(C, H, W)`` image.

    Returns ``(manders, overlap)``, both ``(C, C)`` float64: ``manders[a, b]`` is the
    fraction of channel a's above-threshold intensity where b is also above threshold
    (threshold: ``fraction`` of each channel's maximum); ``overlap`` is symmetric.
    """
    c = image.shape[0]
    x = image.reshape(c, -1)
    thresholds = fraction * x.max(axis=1).astype(np.float64)
    above = x >= thresholds[:, None]
    within, squares = _masked_sums(x, above)
    kept = x * above  # x where above its own threshold, else 0
    kept = kept.astype(np.float64)
    cross = kept @ kept.T  # cross[a, b] = sum of a*b where both are above
    with np.errstate(divide="ignore", invalid="ignore"):
        manders = within / np.diag(within)[:, None]
        overlap = cross / np.sqrt(squares * squares.T)
    return manders, overlap


def correlation_features(image: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
    """Pearson, Manders (both orders) and overlap of every channel pair.

    image: ``(C, H, W)`` uint8/uint16; channels: C names. Returns
    ``Image_Correlation_{Pearson,Manders,Overlap}_<a>_<b>`` (see ``FEATURE_DOCS``).
    """
    if image.ndim != 3 or image.shape[0] != len(channels):
        raise ValueError(f"expected a (C, H, W) image with C={len(channels)}, got shape {image.shape}")
    r = pearson_matrix(image)
    manders, overlap = manders_overlap(image)
    out: dict[str, float] = {}
    for i, j in combinations(range(len(channels)), 2):
        a, b = channels[i], channels[j]
        out[f"Image_Correlation_Pearson_{a}_{b}"] = float(r[i, j])
        out[f"Image_Correlation_Manders_{a}_{b}"] = float(manders[i, j])
        out[f"Image_Correlation_Manders_{b}_{a}"] = float(manders[j, i])
        out[f"Image_Correlation_Overlap_{a}_{b}"] = float(overlap[i, j])
    return out
