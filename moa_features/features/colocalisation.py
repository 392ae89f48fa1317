"""Whole-image Costes, rank-weighted (RWC) and K colocalisation of every channel pair.

CellProfiler's ``MeasureColocalization`` definitions (as cp-measure implements them), on the
intensities scaled to 0..1 (divided by the dtype's maximum, 255 or 65535), for channels
``a`` (values ``f``) and ``b`` (values ``s``):

- **K** (Manders' overlap split in two): on the pixels where ``f >= 0.15 max(f)`` and
  ``s >= 0.15 max(s)``, ``K_a_b = sum(f s) / sum(f^2)`` and ``K_b_a = sum(f s) / sum(s^2)``
  (0 when no pixel is above both thresholds, as RWC).
- **RWC** (rank-weighted colocalisation): every pixel's dense rank in each channel (0 for the
  smallest distinct value), weight ``(R - |rank_f - rank_s|) / R`` with ``R`` one more than the
  largest rank; ``RWC_a_b = sum(f w)`` over the pixels above both 15 % thresholds divided by
  ``sum(f)`` over the pixels above a's threshold (``RWC_b_a`` likewise with ``s``).
- **Costes**: the orthogonal (total least squares) regression line ``s = slope f + offset``
  of the pixels not zero in both channels; Costes' automatic threshold is the highest
  ``t`` (on the grid ``k / 255`` or ``k / 65535``) for which the pixels below it,
  ``f < t or s < slope t + offset``, still have a non-negative Pearson correlation, found by
  CellProfiler's default "Faster" search (a shrinking window, candidate at 5/6 of it);
  ``Costes_a_b = sum(f)`` over ``f > t_f and s > t_s`` divided by ``sum(f)`` over ``f >= t_f``.

All of them are read off the pair's joint histogram (the distinct ``(f, s)`` pairs and their
pixel counts), built in one compiled pass for 8-bit images, so each Costes candidate costs a
pass over at most 65,536 histogram cells instead of over every pixel. Undefined values are
NaN (a constant channel, no pixels above the thresholds, an undefined background
correlation); RWC and K are 0 where no pixel is above both 15 % thresholds, as in CellProfiler.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from numba import njit

from moa_features.features.segmentation import check_image

THRESHOLD_PERCENT = 15

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "Image_Correlation_Costes_<a>_<b>",
        "fraction (0-1)",
        "Costes' colocalisation (CellProfiler MeasureColocalization, 'Faster' threshold search): fraction of channel "
        "a's intensity above Costes' automatic threshold that lies where b is above its threshold too; both orders. "
        "NaN when the regression or the background correlation is undefined.",
    ),
    (
        "Image_Correlation_RWC_<a>_<b>",
        "fraction (0-1)",
        "Rank-weighted colocalisation: like Manders' coefficient (15 % of each maximum), each pixel weighted by "
        "(R - |rank_a - rank_b|) / R, ranks of the distinct intensities; both orders.",
    ),
    (
        "Image_Correlation_K_<a>_<b>",
        "1 (>= 0)",
        "Manders' overlap split per channel: sum(a b) / sum(a^2) over the pixels above both 15 % thresholds "
        "(K_<b>_<a>: / sum(b^2)); both orders. 0 when no pixel is above both (CellProfiler's value).",
    ),
]


@njit(cache=True, nogil=True)
def _joint_histograms(x: np.ndarray) -> np.ndarray:
    """``(P, 256 * 256)`` int64 joint histograms of every channel pair (i < j) of a ``(C, N)`` uint8 array."""
    c, n = x.shape
    pairs = c * (c - 1) // 2
    out = np.zeros((pairs, 65536), dtype=np.int64)
    for p in range(n):
        k = 0
        for i in range(c):
            base = np.int64(x[i, p]) * 256
            for j in range(i + 1, c):
                out[k, base + x[j, p]] += 1
                k += 1
    return out


def _pair_table(f: np.ndarray, s: np.ndarray, hist: np.ndarray | None, scale: int):
    """The distinct ``(f, s)`` pairs (scaled to 0..1) and their counts (float64)."""
    if hist is not None:
        cells = np.flatnonzero(hist)
        counts = hist[cells].astype(np.float64)
        return (cells // 256) / scale, (cells % 256) / scale, counts
    codes, counts = np.unique(f.astype(np.int64) * (scale + 1) + s, return_counts=True)
    return (codes // (scale + 1)) / scale, (codes % (scale + 1)) / scale, counts.astype(np.float64)


@njit(cache=True, nogil=True)
def _subset_pearson(u: np.ndarray, v: np.ndarray, c: np.ndarray, thr_u: float, thr_v: float) -> float:
    """Pearson r of the pixels with ``u < thr_u or v < thr_v`` (NaN for < 3 pixels or a constant channel)."""
    n, su, sv = 0.0, 0.0, 0.0
    umin, umax, vmin, vmax = np.inf, -np.inf, np.inf, -np.inf
    for k in range(u.size):
        if u[k] < thr_u or v[k] < thr_v:
            n += c[k]
            su += c[k] * u[k]
            sv += c[k] * v[k]
            umin, umax = min(umin, u[k]), max(umax, u[k])
            vmin, vmax = min(vmin, v[k]), max(vmax, v[k])
    if n < 3 or umax == umin or vmax == vmin:
        return np.nan
    mu, mv = su / n, sv / n
    cuu, cvv, cuv = 0.0, 0.0, 0.0
    for k in range(u.size):
        if u[k] < thr_u or v[k] < thr_v:
            du, dv = u[k] - mu, v[k] - mv
            cuu += c[k] * du * du
            cvv += c[k] * dv * dv
            cuv += c[k] * du * dv
    return cuv / np.sqrt(cuu * cvv)


def _weighted_var(x: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    n = c.sum()
    mean = float((c * x).sum() / n)
    return mean, float((c * (x - mean) ** 2).sum() / (n - 1))


def costes_thresholds(u: np.ndarray, v: np.ndarray, c: np.ndarray, scale: int) -> tuple[float, float]:
    """Costes' automatic thresholds ``(t_f, t_s)`` by CellProfiler's "Faster" search, NaN where undefined.

    u, v: the distinct pairs of scaled intensities; c: their pixel counts; scale: 255 or 65535.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> f = rng.integers(0, 256, 5000)
    >>> s = np.clip(f + rng.integers(-20, 21, 5000), 0, 255)
    >>> t_f, t_s = costes_thresholds(f / 255, s / 255, np.ones(5000), 255)
    >>> 0 < t_f < 1
    True
    """
    nonzero = (u > 0) | (v > 0)
    if c.sum() < 3 or c[nonzero].sum() < 3:
        return np.nan, np.nan
    uz, vz, cz = u[nonzero], v[nonzero], c[nonzero]
    if np.ptp(uz) == 0 or np.ptp(vz) == 0:
        return np.nan, np.nan
    xmean, xvar = _weighted_var(uz, cz)
    ymean, yvar = _weighted_var(vz, cz)
    zvar = _weighted_var(uz + vz, cz)[1]
    covar = 0.5 * (zvar - (xvar + yvar))
    if abs(covar) <= 8 * np.finfo(float).eps * max(xvar, yvar):
        return np.nan, np.nan
    slope = ((yvar - xvar) + np.sqrt((yvar - xvar) * (yvar - xvar) + 4 * (covar * covar))) / (2 * covar)
    offset = ymean - slope * xmean
    if not (np.isfinite(slope) and np.isfinite(offset)):
        return np.nan, np.nan
    left, right = 1.0, float(scale)
    mid, last, valid = ((right - left) // (6 / 5)) + left, 0.0, None
    for _ in range(256):
        if last == mid:
            break
        thr = mid / scale
        r = _subset_pearson(u, v, c, thr, slope * thr + offset)
        if not np.isfinite(r) or r < 0:
            left = mid - 1
        else:
            right, valid = mid + 1, mid
        last = mid
        mid = ((right - left) // (6 / 5 if right - left > 6 else 2)) + left
    else:
        return np.nan, np.nan
    if valid is None:
        return np.nan, np.nan
    thr = (valid - 1) / scale
    thr_s = slope * thr + offset
    if not np.isfinite(_subset_pearson(u, v, c, thr, thr_s)):
        return np.nan, np.nan
    return float(thr), float(thr_s)


def pair_colocalisation(
    u: np.ndarray, v: np.ndarray, c: np.ndarray, scale: int, percent: float = THRESHOLD_PERCENT
) -> dict[str, float]:
    """Costes, RWC and K of one channel pair from its distinct scaled pairs ``(u, v)`` and counts ``c``.

    Returns ``{"Costes_1", "Costes_2", "RWC_1", "RWC_2", "K_1", "K_2"}`` (1: first channel's
    order ``a_b``, 2: ``b_a``).

    Examples
    --------
    >>> import numpy as np
    >>> u = np.array([0.0, 0.5, 1.0])
    >>> pair_colocalisation(u, u, np.array([10.0, 10.0, 10.0]), 255)["K_1"]
    1.0
    """
    out = dict.fromkeys(("Costes_1", "Costes_2", "RWC_1", "RWC_2", "K_1", "K_2"), np.nan)
    if c.sum() == 0:
        return out
    tu, tv = (percent / 100) * u.max(), (percent / 100) * v.max()
    above_u, above_v = u >= tu, v >= tv
    both = above_u & above_v
    with np.errstate(invalid="ignore", divide="ignore"):
        if both.any():
            cross = (c * u * v)[both].sum()
            out["K_1"] = float(cross / (c * u * u)[both].sum())
            out["K_2"] = float(cross / (c * v * v)[both].sum())
            rank_u = np.searchsorted(np.unique(u), u)
            rank_v = np.searchsorted(np.unique(v), v)
            top = max(rank_u.max(), rank_v.max()) + 1
            weight = (top - np.abs(rank_u - rank_v)) * 1.0 / top
            out["RWC_1"] = float((c * u * weight)[both].sum() / (c * u)[above_u].sum())
            out["RWC_2"] = float((c * v * weight)[both].sum() / (c * v)[above_v].sum())
        else:  # CellProfiler: 0 when no pixel is above both thresholds
            out["RWC_1"] = out["RWC_2"] = out["K_1"] = out["K_2"] = 0.0
        t_f, t_s = costes_thresholds(u, v, c, scale)
        if np.isfinite(t_f):
            combined = (u > t_f) & (v > t_s)
            total_u, total_v = (c * u)[u >= t_f].sum(), (c * v)[v >= t_s].sum()
            if total_u > 0 and total_v > 0:
                out["Costes_1"] = float((c * u)[combined].sum() / total_u)
                out["Costes_2"] = float((c * v)[combined].sum() / total_v)
    return out


def colocalisation_features(image: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
    """Costes, RWC and K (both orders) of every channel pair of a site.

    Parameters
    ----------
    image : (C, H, W) uint8 or uint16
        The site.
    channels : sequence of str
        C channel names.

    Returns
    -------
    dict
        ``Image_Correlation_{Costes,RWC,K}_<a>_<b>`` and ``_<b>_<a>`` (fractions; see ``FEATURE_DOCS``).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    >>> f = colocalisation_features(np.concatenate([a, a]), ["w1", "w2"])
    >>> f["Image_Correlation_K_w1_w2"], f["Image_Correlation_RWC_w2_w1"]
    (1.0, 1.0)
    """
    image = check_image(image, channels)
    x = image.reshape(image.shape[0], -1)
    scale = int(np.iinfo(image.dtype).max)
    hists = _joint_histograms(x) if image.dtype == np.uint8 else None
    out: dict[str, float] = {}
    for k, (i, j) in enumerate(combinations(range(len(channels)), 2)):
        u, v, c = _pair_table(x[i], x[j], None if hists is None else hists[k], scale)
        values = pair_colocalisation(u, v, c, scale)
        a, b = channels[i], channels[j]
        for measure in ("Costes", "RWC", "K"):
            out[f"Image_Correlation_{measure}_{a}_{b}"] = values[f"{measure}_1"]
            out[f"Image_Correlation_{measure}_{b}_{a}"] = values[f"{measure}_2"]
    return out
