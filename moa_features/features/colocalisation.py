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
Per object (:func:`object_colocalisation`, with the per-object correlation option), the same
measures on each object's own pixels, thresholds and ranks, in one compiled pass per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from numba import njit

from moa_features.features.correlation import joint_histograms
from moa_features.features.segmentation import check_image

THRESHOLD_PERCENT = 15

#: The conventions above, for the feature catalogue (docs/features.md).
CONVENTIONS = __doc__

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
    (
        "<Cpt>_Correlation_{Costes,RWC,K}_<a>_<b>",
        "as the image-level ones",
        "The same three measures per object (Nuclei, Cells, Cytoplasm) on the object's own pixels, thresholds and "
        "ranks (CellProfiler MeasureColocalization on objects); only with the per-object correlation option "
        "(--object-correlation), aggregated per site as _Median/_Mean/_Std. An empty object: NaN Costes, 0 RWC and K.",
    ),
]


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
    thr, thr_s = _costes_search(u, v, c, scale, slope, offset)
    return float(thr), float(thr_s)


@njit(cache=True, nogil=True)
def _costes_search(
    u: np.ndarray, v: np.ndarray, c: np.ndarray, scale: int, slope: float, offset: float
) -> tuple[float, float]:
    """CellProfiler's "Faster" Costes search along the regression line ``v = slope * u + offset``.

    The highest threshold of ``u`` (in steps of ``1 / scale``) below which the pixels' Pearson
    correlation is no longer positive, and the matching threshold of ``v``; ``(nan, nan)`` when
    the search does not settle or no threshold gives a finite correlation. ``c``: pixel weights.
    """
    left, right = 1.0, float(scale)
    mid, last, valid = ((right - left) // (6 / 5)) + left, 0.0, np.nan
    converged = False
    for _ in range(256):
        if last == mid:
            converged = True
            break
        thr = mid / scale
        r = _subset_pearson(u, v, c, thr, slope * thr + offset)
        if not np.isfinite(r) or r < 0:
            left = mid - 1
        else:
            right, valid = mid + 1, mid
        last = mid
        mid = ((right - left) // (6 / 5 if right - left > 6 else 2)) + left
    if not converged or np.isnan(valid):
        return np.nan, np.nan
    thr = (valid - 1) / scale
    thr_s = slope * thr + offset
    if not np.isfinite(_subset_pearson(u, v, c, thr, thr_s)):
        return np.nan, np.nan
    return thr, thr_s


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


def colocalisation_features(
    image: np.ndarray, channels: Sequence[str], histograms: np.ndarray | None = None
) -> dict[str, float]:
    """Costes, RWC and K (both orders) of every channel pair of a site.

    Parameters
    ----------
    image : (C, H, W) uint8 or uint16
        The site.
    channels : sequence of str
        C channel names.
    histograms : ndarray of int64, shape (C * (C - 1) / 2, 65536), optional
        The image's :func:`~moa_features.features.correlation.joint_histograms`, when already
        computed (8-bit images only).

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
    hists = None
    if image.dtype == np.uint8:
        hists = joint_histograms(image) if histograms is None else histograms
    out: dict[str, float] = {}
    for k, (i, j) in enumerate(combinations(range(len(channels)), 2)):
        u, v, c = _pair_table(x[i], x[j], None if hists is None else hists[k], scale)
        values = pair_colocalisation(u, v, c, scale)
        a, b = channels[i], channels[j]
        for measure in ("Costes", "RWC", "K"):
            out[f"Image_Correlation_{measure}_{a}_{b}"] = values[f"{measure}_1"]
            out[f"Image_Correlation_{measure}_{b}_{a}"] = values[f"{measure}_2"]
    return out


@njit(cache=True, nogil=True)
def _pixel_lists(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices grouped by label 1..n (raster order within each) and each label's start."""
    flat = labels.ravel()
    start = np.zeros(n + 2, dtype=np.int64)
    for p in range(flat.size):
        if flat[p] > 0:
            start[flat[p] + 1] += 1
    for k in range(1, n + 2):
        start[k] += start[k - 1]
    fill = start.copy()
    index = np.empty(start[n + 1], dtype=np.int64)
    for p in range(flat.size):
        lab = flat[p]
        if lab > 0:
            index[fill[lab]] = p
            fill[lab] += 1
    return index, start


@njit(cache=True, nogil=True)
def _dense_ranks_8bit(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """:func:`_dense_ranks` of integer values 0..255 by counting (``table``: 256 int64 scratch)."""
    table[:] = 0
    for k in range(values.size):
        table[values[k]] = 1
    rank = -1
    for v in range(256):
        if table[v]:
            rank += 1
            table[v] = rank
    ranks = np.empty(values.size, dtype=np.int64)
    for k in range(values.size):
        ranks[k] = table[values[k]]
    return ranks


@njit(cache=True, nogil=True)
def _dense_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the distinct values (0 for the smallest)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.int64)
    rank = 0
    for k in range(values.size):
        if k > 0 and values[order[k]] != values[order[k - 1]]:
            rank += 1
        ranks[order[k]] = rank
    return ranks


@njit(cache=True, nogil=True)
def _variance(x: np.ndarray) -> tuple[float, float]:
    mean = x.mean()
    return mean, ((x - mean) ** 2).sum() / (x.size - 1)


@njit(cache=True, nogil=True)
def _object_costes(f: np.ndarray, s: np.ndarray, scale: int) -> tuple[float, float]:
    """Costes' coefficients of one object's pixels (scaled 0..1), as :func:`costes_thresholds` and cp-measure."""
    nan = (np.nan, np.nan)
    if f.size < 3:
        return nan
    nonzero = (f > 0) | (s > 0)
    if nonzero.sum() < 3:
        return nan
    fz, sz = f[nonzero], s[nonzero]
    if fz.max() == fz.min() or sz.max() == sz.min():
        return nan
    xmean, xvar = _variance(fz)
    ymean, yvar = _variance(sz)
    zvar = _variance(fz + sz)[1]
    covar = 0.5 * (zvar - (xvar + yvar))
    if abs(covar) <= 8 * np.finfo(np.float64).eps * max(xvar, yvar):
        return nan
    slope = ((yvar - xvar) + np.sqrt((yvar - xvar) * (yvar - xvar) + 4 * (covar * covar))) / (2 * covar)
    offset = ymean - slope * xmean
    if not (np.isfinite(slope) and np.isfinite(offset)):
        return nan
    thr, thr_s = _costes_search(f, s, np.ones(f.size), scale, slope, offset)
    if np.isnan(thr):
        return nan
    both, total_f, total_s, both_s = 0.0, 0.0, 0.0, 0.0
    for k in range(f.size):
        if f[k] > thr and s[k] > thr_s:
            both += f[k]
            both_s += s[k]
        if f[k] >= thr:
            total_f += f[k]
        if s[k] >= thr_s:
            total_s += s[k]
    if total_f <= 0 or total_s <= 0:
        return nan
    return both / total_f, both_s / total_s


@njit(cache=True, nogil=True)
def _object_pair(
    a: np.ndarray, b: np.ndarray, index: np.ndarray, start: np.ndarray, scale: int, percent: float
) -> np.ndarray:
    """``(n, 6)``: Costes a_b, b_a, RWC a_b, b_a, K a_b, b_a of every object (flat planes ``a``, ``b``)."""
    n = start.size - 2
    out = np.zeros((n, 6))
    table = np.zeros(256, dtype=np.int64)
    for lab in range(n):
        k0, k1 = start[lab + 1], start[lab + 2]
        size = k1 - k0
        if size == 0:
            out[lab, 0] = out[lab, 1] = np.nan
            continue
        f = np.empty(size)
        s = np.empty(size)
        ia = np.empty(size, dtype=np.int64)
        ib = np.empty(size, dtype=np.int64)
        for k in range(size):
            ia[k], ib[k] = a[index[k0 + k]], b[index[k0 + k]]
            f[k] = ia[k] / scale
            s[k] = ib[k] / scale
        out[lab, 0], out[lab, 1] = _object_costes(f, s, scale)
        tf, ts = (percent / 100) * f.max(), (percent / 100) * s.max()
        cross, ff, ss, above_f, above_s = 0.0, 0.0, 0.0, 0.0, 0.0
        any_both = False
        for k in range(size):
            if f[k] >= tf:
                above_f += f[k]
            if s[k] >= ts:
                above_s += s[k]
            if f[k] >= tf and s[k] >= ts:
                any_both = True
                cross += f[k] * s[k]
                ff += f[k] * f[k]
                ss += s[k] * s[k]
        if not any_both:
            continue  # CellProfiler: RWC and K are 0
        out[lab, 4], out[lab, 5] = cross / ff, cross / ss
        if scale == 255:
            rf, rs = _dense_ranks_8bit(ia, table), _dense_ranks_8bit(ib, table)
        else:
            rf, rs = _dense_ranks(f), _dense_ranks(s)
        top = max(rf.max(), rs.max()) + 1
        wf, ws = 0.0, 0.0
        for k in range(size):
            if f[k] >= tf and s[k] >= ts:
                weight = (top - abs(rf[k] - rs[k])) * 1.0 / top
                wf += f[k] * weight
                ws += s[k] * weight
        out[lab, 2], out[lab, 3] = wf / above_f, ws / above_s
    return out


def object_colocalisation(
    image: np.ndarray, channels: Sequence[str], labels: np.ndarray, n: int, percent: float = THRESHOLD_PERCENT
) -> dict[str, np.ndarray]:
    """Per-object Costes, RWC and K of every channel pair (CellProfiler MeasureColocalization on objects).

    Parameters
    ----------
    image : (C, H, W) uint8 or uint16
        The site.
    channels : sequence of str
        C channel names.
    labels : (H, W) int array
        Objects 1..n.
    n : int
        Number of objects.

    Returns
    -------
    dict
        ``{"Correlation_{Costes,RWC,K}_<a>_<b>": (n,)}`` and ``_<b>_<a>``, each object's own
        thresholds (as the image-level measures, on its pixels); an object without pixels
        gets NaN for Costes and 0 for RWC and K (cp-measure's values).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((8, 8), np.int32)
    >>> labels[:, :4], labels[:, 4:] = 1, 2
    >>> plane = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    >>> out = object_colocalisation(np.concatenate([plane, plane]), ["a", "b"], labels, 2)
    >>> out["Correlation_K_a_b"].tolist(), out["Correlation_RWC_b_a"].tolist()
    ([1.0, 1.0], [1.0, 1.0])
    """
    image = check_image(image, channels)
    scale = int(np.iinfo(image.dtype).max)
    index, start = _pixel_lists(np.ascontiguousarray(labels).astype(np.int64, copy=False), int(n))
    flat = image.reshape(image.shape[0], -1)
    out: dict[str, np.ndarray] = {}
    for i, j in combinations(range(len(channels)), 2):
        values = _object_pair(flat[i], flat[j], index, start, scale, float(percent))
        a, b = channels[i], channels[j]
        for col, name in enumerate(
            (f"Costes_{a}_{b}", f"Costes_{b}_{a}", f"RWC_{a}_{b}", f"RWC_{b}_{a}", f"K_{a}_{b}", f"K_{b}_{a}")
        ):
            out[f"Correlation_{name}"] = values[:, col]
    return out
