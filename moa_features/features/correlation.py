"""Whole-image colocalisation of every channel pair: Pearson, Manders M1/M2, overlap.

Conventions (CellProfiler's ``MeasureColocalization``, image level):

- Pearson's r over all pixels, every pair at once from exact integer sums and
  cross-products (for 8-bit pixels read off the pairs' joint histograms, which the
  colocalisation family shares; otherwise blockwise float64 matrix products, exact for
  16-bit pixels too); the same value as ``scipy.stats.pearsonr``.
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

from collections.abc import Sequence
from itertools import combinations
from math import sqrt

import numpy as np
from numba import njit

from moa_features.features.segmentation import check_image

THRESHOLD_FRACTION = 0.15

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "Image_Correlation_Pearson_<a>_<b>",
        "1 (-1 to 1)",
        "Pearson correlation of the pixel values of channels a and b (a before b in channel order); NaN if either "
        "channel is constant.",
    ),
    (
        "Image_Correlation_Manders_<a>_<b>",
        "fraction (0-1)",
        "Manders' coefficient (CellProfiler convention): fraction of channel a's intensity above 15 % of a's maximum "
        "that lies on pixels where b is above 15 % of b's maximum; both orders (M1 and M2). NaN if a is all zero.",
    ),
    (
        "Image_Correlation_Overlap_<a>_<b>",
        "1 (0-1)",
        "Manders' overlap coefficient sum(a*b) / sqrt(sum(a^2) sum(b^2)) over the pixels above both 15 % thresholds; "
        "NaN if none.",
    ),
]


_BLOCK_PIXELS = 1 << 14  # pixels per block: a (6, block) float64 slab (768 KB) stays in cache


def _pixels(image: np.ndarray, channels: Sequence[str] | None = None) -> np.ndarray:
    """The checked ``(C, H, W)`` image as ``(C, H*W)``."""
    image = check_image(image, channels)
    return image.reshape(image.shape[0], -1)


def _block_products(x: np.ndarray, thresholds: np.ndarray | None) -> list[np.ndarray]:
    """Exact integer sums over all pixels of a ``(C, N)`` uint8/uint16 array, block by block.

    Returns ``[sum_x (C,), gram (C, C)]`` and, with per-channel ``thresholds``, also
    ``within, squares, cross`` (C, C): with ``kept_a = x_a * above_a`` and
    ``above_a = x_a >= thresholds[a]``, ``within[a, b] = sum kept_a above_b``,
    ``squares[a, b] = sum kept_a^2 above_b``, ``cross[a, b] = sum kept_a kept_b``.
    Each block's float64 matrix products are exact (integers below 2**53) and are summed
    as int64, so every result is exact.
    """
    c = x.shape[0]
    totals = [np.zeros(c, dtype=np.int64), np.zeros((c, c), dtype=np.int64)]
    if thresholds is not None:
        totals += [np.zeros((c, c), dtype=np.int64) for _ in range(3)]
    if thresholds is None:
        for start in range(0, x.shape[1], _BLOCK_PIXELS):
            xf = x[:, start : start + _BLOCK_PIXELS].astype(np.float64)
            totals[0] += xf.sum(axis=1).astype(np.int64)
            totals[1] += (xf @ xf.T).astype(np.int64)
        return totals
    slab = np.empty((2 * c, min(_BLOCK_PIXELS, x.shape[1])), dtype=np.float64)  # rows: x, kept
    weighted = np.empty_like(slab)  # rows: kept, kept^2
    for start in range(0, x.shape[1], _BLOCK_PIXELS):
        block = x[:, start : start + _BLOCK_PIXELS]
        k = block.shape[1]
        xf, kept = slab[:c, :k], slab[c:, :k]
        xf[...] = block
        above = (block >= thresholds[:, None]).astype(np.float64)
        np.multiply(xf, above, out=kept)
        weighted[:c, :k] = kept
        np.multiply(kept, kept, out=weighted[c:, :k])
        pairs = slab[:, :k] @ slab[:, :k].T  # (2C, 2C): gram (x x) and cross (kept kept)
        masked = weighted[:, :k] @ above.T  # (2C, C): within and squares
        totals[0] += xf.sum(axis=1).astype(np.int64)
        totals[1] += pairs[:c, :c].astype(np.int64)
        totals[2] += masked[:c].astype(np.int64)
        totals[3] += masked[c:].astype(np.int64)
        totals[4] += pairs[c:, c:].astype(np.int64)
    return totals


def joint_histograms(image: np.ndarray) -> np.ndarray | None:
    """Joint grey-level histograms of every channel pair of an 8-bit image.

    Parameters
    ----------
    image : ndarray, shape (C, H, W)
        One site.

    Returns
    -------
    ndarray of int64, shape (C * (C - 1) / 2, 65536), or None
        Row ``k`` for the ``k``-th pair ``(a, b)``, ``a < b`` in :func:`itertools.combinations`
        order: pixel counts at ``256 * value_a + value_b``. ``None`` unless ``image`` is uint8.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[[0, 1]], [[2, 2]]], np.uint8)
    >>> np.flatnonzero(joint_histograms(image)[0]).tolist()  # (0, 2) and (1, 2)
    [2, 258]
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        return None
    x = np.ascontiguousarray(image.reshape(image.shape[0], -1))
    scratch = np.empty(65536, np.int32 if x.shape[1] < 2**31 else np.int64)
    return _joint_histograms(x, scratch)


@njit(cache=True, nogil=True)
def _joint_histograms(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``(P, 65536)`` int64 joint histograms of every channel pair (i < j) of a ``(C, N)`` uint8 array.

    One pair at a time into ``scratch`` (65,536 counts, small enough to stay in cache).
    """
    c, n = x.shape
    out = np.empty((c * (c - 1) // 2, 65536), dtype=np.int64)
    k = 0
    for i in range(c):
        for j in range(i + 1, c):
            xi, xj = x[i], x[j]
            scratch[:] = 0
            for p in range(n):
                scratch[(np.int32(xi[p]) << 8) | xj[p]] += 1
            out[k] = scratch
            k += 1
    return out


@njit(cache=True, nogil=True)
def _histogram_products(hists: np.ndarray, c: int, thresholds: np.ndarray):  # pragma: no cover - compiled
    """:func:`_block_products`' five exact totals (with ``thresholds``) from the pairs' joint histograms.

    Channel ``a``'s own grey-level histogram is a margin of pair ``(0, a)`` (of ``(0, 1)`` for
    channel 0). Needs ``c >= 2``.
    """
    own = np.zeros((c, 256), dtype=np.int64)
    sums = np.zeros(c, dtype=np.int64)
    gram = np.zeros((c, c), dtype=np.int64)
    within = np.zeros((c, c), dtype=np.int64)
    squares = np.zeros((c, c), dtype=np.int64)
    cross = np.zeros((c, c), dtype=np.int64)
    k = 0
    for a in range(c):
        for b in range(a + 1, c):
            h = hists[k]
            for u in range(256):
                above_u = u >= thresholds[a]
                for v in range(256):
                    count = h[u * 256 + v]
                    if count == 0:
                        continue
                    if a == 0:
                        own[b, v] += count
                        if b == 1:
                            own[0, u] += count
                    gram[a, b] += count * u * v
                    if above_u and v >= thresholds[b]:
                        within[a, b] += count * u
                        within[b, a] += count * v
                        squares[a, b] += count * u * u
                        squares[b, a] += count * v * v
                        cross[a, b] += count * u * v
            gram[b, a] = gram[a, b]
            cross[b, a] = cross[a, b]
            k += 1
    for a in range(c):
        for u in range(256):
            count = own[a, u]
            sums[a] += count * u
            gram[a, a] += count * u * u
            if u >= thresholds[a]:
                within[a, a] += count * u
                squares[a, a] += count * u * u
                cross[a, a] += count * u * u
    return sums, gram, within, squares, cross


def _pearson_from_sums(n: int, sums: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """Pearson r of every channel pair from exact integer sums (``n * cov`` in Python ints)."""
    c = len(sums)
    s, g = sums.tolist(), gram.tolist()
    cov = [[n * g[a][b] - s[a] * s[b] for b in range(c)] for a in range(c)]
    r = np.full((c, c), np.nan)
    for a in range(c):
        for b in range(c):
            if cov[a][a] > 0 and cov[b][b] > 0:
                r[a, b] = cov[a][b] / sqrt(cov[a][a] * cov[b][b])
    return np.clip(r, -1.0, 1.0)


def pearson_matrix(image: np.ndarray) -> np.ndarray:
    """Pearson correlation of every channel pair of an image.

    From exact integer sums and cross-products (no cancellation).

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site.

    Returns
    -------
    ndarray of float64, shape (C, C)
        Symmetric correlations, unitless; rows and columns of constant channels are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    >>> pearson_matrix(np.concatenate([a, 255 - a]))[0, 1]
    np.float64(-1.0)
    """
    x = _pixels(image)
    sums, gram = _block_products(x, None)
    return _pearson_from_sums(x.shape[1], sums, gram)


def _manders_overlap_from_sums(
    within: np.ndarray, squares: np.ndarray, cross: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    within, squares, cross = (m.astype(np.float64) for m in (within, squares, cross))
    with np.errstate(divide="ignore", invalid="ignore"):
        manders = within / np.diag(within)[:, None]
        overlap = cross / np.sqrt(squares * squares.T)
    return manders, overlap


def _thresholds(x: np.ndarray, fraction: float) -> np.ndarray:
    return fraction * x.max(axis=1).astype(np.float64)


def manders_overlap(image: np.ndarray, fraction: float = THRESHOLD_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Manders' coefficients and overlap of every channel pair of an image.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site.
    fraction : float, default THRESHOLD_FRACTION (0.15)
        Each channel's threshold as a fraction of its maximum.

    Returns
    -------
    manders : ndarray of float64, shape (C, C)
        ``manders[a, b]``: fraction (0-1) of channel a's above-threshold intensity where b is
        also above threshold.
    overlap : ndarray of float64, shape (C, C)
        Manders' overlap coefficient, symmetric.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    >>> manders, overlap = manders_overlap(np.concatenate([a, a]))
    >>> float(manders[0, 1]), float(overlap[0, 1])
    (1.0, 1.0)
    """
    x = _pixels(image)
    _, _, within, squares, cross = _block_products(x, _thresholds(x, fraction))
    return _manders_overlap_from_sums(within, squares, cross)


def correlation_features(
    image: np.ndarray, channels: Sequence[str], histograms: np.ndarray | None = None
) -> dict[str, float]:
    """Pearson, Manders (both orders) and overlap of every channel pair.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site.
    channels : sequence of str
        The C channel names.
    histograms : ndarray of int64, shape (C * (C - 1) / 2, 65536), optional
        The image's :func:`joint_histograms`, when already computed (8-bit images only).

    Returns
    -------
    dict of str to float
        ``Image_Correlation_{Pearson,Manders,Overlap}_<a>_<b>`` (see ``FEATURE_DOCS``).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    >>> correlation_features(np.concatenate([a, a]), ["w1", "w2"])["Image_Correlation_Pearson_w1_w2"]
    1.0
    """
    x = _pixels(image, channels)
    thresholds = _thresholds(x, THRESHOLD_FRACTION)
    if x.dtype == np.uint8 and x.shape[0] >= 2:
        hists = joint_histograms(image) if histograms is None else histograms
        sums, gram, within, squares, cross = _histogram_products(hists, x.shape[0], thresholds)
    else:
        sums, gram, within, squares, cross = _block_products(x, thresholds)
    r = _pearson_from_sums(x.shape[1], sums, gram)
    manders, overlap = _manders_overlap_from_sums(within, squares, cross)
    out: dict[str, float] = {}
    for i, j in combinations(range(len(channels)), 2):
        a, b = channels[i], channels[j]
        out[f"Image_Correlation_Pearson_{a}_{b}"] = float(r[i, j])
        out[f"Image_Correlation_Manders_{a}_{b}"] = float(manders[i, j])
        out[f"Image_Correlation_Manders_{b}_{a}"] = float(manders[j, i])
        out[f"Image_Correlation_Overlap_{a}_{b}"] = float(overlap[i, j])
    return out


def object_correlation(image: np.ndarray, channels: Sequence[str], labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per-object Pearson correlation of every channel pair (CellProfiler MeasureColocalization).

    From exact per-object sums; NaN where a channel is constant inside the object.

    Parameters
    ----------
    image : ndarray, shape (C, H, W)
        The site's planes.
    channels : sequence of str
        The C channel names.
    labels : ndarray of int, shape (H, W)
        Object labels ``1..n`` (0 = background).
    n : int
        Number of objects.

    Returns
    -------
    dict of str to ndarray, each shape (n,)
        ``"Correlation_Correlation_<a>_<b>"`` (a before b in channel order) -> Pearson r.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.ones((4, 4), np.int32)
    >>> plane = np.arange(16, dtype=np.uint8).reshape(4, 4)
    >>> float(object_correlation(np.stack([plane, plane]), ["a", "b"], labels, 1)["Correlation_Correlation_a_b"][0])
    1.0
    """
    flat = labels.ravel().astype(np.int64)
    inside = flat > 0
    lab = flat[inside]
    values = [plane.ravel()[inside].astype(np.float64) for plane in image]
    count = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    sums = [np.bincount(lab, weights=v, minlength=n + 1)[1:] for v in values]
    squares = [np.bincount(lab, weights=v * v, minlength=n + 1)[1:] for v in values]
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        var = [sq - s * s / count for s, sq in zip(sums, squares)]
        for a, b in combinations(range(len(channels)), 2):
            cross = np.bincount(lab, weights=values[a] * values[b], minlength=n + 1)[1:] - sums[a] * sums[b] / count
            denom = np.sqrt(var[a] * var[b])
            out[f"Correlation_Correlation_{channels[a]}_{channels[b]}"] = np.where(denom > 0, cross / denom, np.nan)
    return out
