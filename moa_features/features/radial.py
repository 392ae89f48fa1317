"""Radial intensity distribution of objects (CellProfiler ``MeasureObjectIntensityDistribution``).

CellProfiler's definitions, with its defaults (4 scaled bins, each object's own centre):

- ``d_edge``: each pixel's Euclidean distance to the nearest pixel outside its object (other
  objects and background; the image border is not an edge);
- the object's centre: its pixel farthest from the edge (the first in row-major order on ties);
- ``d_centre``: the shortest path from the centre to the pixel through the object's own pixels,
  steps to the 8 neighbours costing 1 (edge) or sqrt(2) (diagonal), as CellProfiler's
  ``propagate`` with a flat image gives it; pixels not connected to the centre are left out;
- normalised distance ``d_centre / (d_centre + d_edge + 0.001)``, and bin ``k`` (1..4) holds
  the pixels with ``floor(4 * distance) = k - 1`` (bin 1 at the centre, bin 4 at the edge).

Per object, channel and bin: ``FracAtD`` = fraction of the object's total intensity in the
bin; ``MeanFrac`` = ``FracAtD`` divided by the bin's fraction of the object's pixels (plus
machine epsilon); ``RadialCV`` = coefficient of variation (population standard deviation /
mean) of the mean intensities of the bin's eight wedges around the centre (wedges split by
``row > centre row``, ``col > centre col`` and ``|d row| > |d col|``; empty wedges are
skipped, 0 when the bin is empty). The geometry is computed once per label image
(:func:`radial_geometry`) and every channel is then one compiled pass (:func:`radial_distribution`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BIN_COUNT = 4
MEASURES: tuple[str, ...] = ("FracAtD", "MeanFrac", "RadialCV")

#: The conventions above, for the feature catalogue (docs/features.md).
CONVENTIONS = __doc__

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "<Cpt>_RadialDistribution_FracAtD_<ch>_<k>of4",
        "fraction (0-1)",
        "Fraction of the object's total intensity in ring k of 4 (k = 1 at the centre, the pixel farthest from the "
        "object's edge; rings by normalised distance d_centre / (d_centre + d_edge), CellProfiler's "
        "MeasureObjectIntensityDistribution with scaled bins). Per object for Nuclei, Cells, Cytoplasm; per site as "
        "_Median/_Mean/_Std.",
    ),
    (
        "<Cpt>_RadialDistribution_MeanFrac_<ch>_<k>of4",
        "1 (ratio, >= 0)",
        "FracAtD divided by the fraction of the object's pixels in ring k: > 1 where the ring is brighter than the "
        "object's average.",
    ),
    (
        "<Cpt>_RadialDistribution_RadialCV_<ch>_<k>of4",
        "1 (ratio, >= 0)",
        "Coefficient of variation (population sd / mean) of the mean intensities of ring k's eight wedges around "
        "the centre: angular unevenness of the stain in that ring; 0 for an empty ring.",
    ),
]


@njit(cache=True, nogil=True)
def _edt_1d(f: np.ndarray, n: int, d: np.ndarray, v: np.ndarray, z: np.ndarray) -> None:
    """Felzenszwalb's exact 1-D squared distance transform of ``f[:n]`` into ``d[:n]``."""
    k = 0
    v[0] = 0
    z[0] = -np.inf
    z[1] = np.inf
    for q in range(1, n):
        if f[q] == np.inf:
            continue
        if f[v[k]] == np.inf:
            v[k] = q
            continue
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = np.inf
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        if f[v[k]] == np.inf:
            d[q] = np.inf
        else:
            d[q] = (q - v[k]) ** 2 + f[v[k]]


@njit(cache=True, nogil=True)
def _edge_distance(labels: np.ndarray, n: int) -> np.ndarray:
    """Per pixel, the Euclidean distance to the nearest pixel of another label (0 for background).

    Exact: each object's squared distance transform on its bounding box grown by one pixel
    (clipped to the image), whose ring holds only other pixels, so no nearer one lies outside.
    """
    h, w = labels.shape
    top = np.full(n + 1, h, dtype=np.int64)
    left = np.full(n + 1, w, dtype=np.int64)
    bottom = np.full(n + 1, -1, dtype=np.int64)
    right = np.full(n + 1, -1, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab > 0:
                top[lab] = min(top[lab], y)
                bottom[lab] = max(bottom[lab], y)
                left[lab] = min(left[lab], x)
                right[lab] = max(right[lab], x)
    out = np.zeros((h, w), dtype=np.float64)
    size = max(h, w) + 2
    f = np.empty(size)
    d = np.empty(size)
    v = np.empty(size, dtype=np.int64)
    z = np.empty(size + 1)
    for lab in range(1, n + 1):
        if bottom[lab] < 0:
            continue
        y0, y1 = max(top[lab] - 1, 0), min(bottom[lab] + 1, h - 1)
        x0, x1 = max(left[lab] - 1, 0), min(right[lab] + 1, w - 1)
        bh, bw = y1 - y0 + 1, x1 - x0 + 1
        grid = np.empty((bh, bw))
        for x in range(bw):  # columns first
            for y in range(bh):
                f[y] = np.inf if labels[y0 + y, x0 + x] == lab else 0.0
            _edt_1d(f, bh, d, v, z)
            for y in range(bh):
                grid[y, x] = d[y]
        for y in range(bh):
            for x in range(bw):
                f[x] = grid[y, x]
            _edt_1d(f, bw, d, v, z)
            for x in range(bw):
                if labels[y0 + y, x0 + x] == lab:
                    out[y0 + y, x0 + x] = np.sqrt(d[x])
    return out


@njit(cache=True, nogil=True)
def _relax(labels: np.ndarray, dist: np.ndarray, y: int, x: int, step: int, diagonal: float) -> bool:
    """Lower ``dist[y, x]`` through the four neighbours already visited by a scan in direction ``step``."""
    h, w = labels.shape
    lab = labels[y, x]
    best = dist[y, x]
    yy = y - step
    if 0 <= yy < h:
        for dx in range(-1, 2):
            xx = x + dx
            if 0 <= xx < w and labels[yy, xx] == lab:
                best = min(best, dist[yy, xx] + (diagonal if dx != 0 else 1.0))
    xx = x - step
    if 0 <= xx < w and labels[y, xx] == lab:
        best = min(best, dist[y, xx] + 1.0)
    if best < dist[y, x]:
        dist[y, x] = best
        return True
    return False


@njit(cache=True, nogil=True)
def _geodesic(labels: np.ndarray, dist: np.ndarray) -> None:
    """Shortest 8-neighbour paths (steps 1 and sqrt(2)) within each label, from ``dist``'s zeros.

    Forward and backward raster scans repeated until nothing changes (the chamfer
    propagation; equal to Dijkstra's search, as CellProfiler's ``propagate`` runs it).
    """
    h, w = labels.shape
    diagonal = np.sqrt(2.0)
    changed = True
    while changed:
        changed = False
        for y in range(h):
            for x in range(w):
                if labels[y, x] > 0:
                    changed |= _relax(labels, dist, y, x, 1, diagonal)
        for y in range(h - 1, -1, -1):
            for x in range(w - 1, -1, -1):
                if labels[y, x] > 0:
                    changed |= _relax(labels, dist, y, x, -1, diagonal)


@njit(cache=True, nogil=True)
def _geometry(labels: np.ndarray, n: int, bin_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground pixel indices, their ``label * bins * 8 + bin * 8 + wedge`` keys, and the centres ``(n, 2)``."""
    h, w = labels.shape
    edge = _edge_distance(labels, n)
    best = np.full(n + 1, -1.0)
    centre = np.full(n + 1, -1, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab > 0 and edge[y, x] > best[lab]:
                best[lab] = edge[y, x]
                centre[lab] = y * w + x
    grid = np.full((h, w), np.inf)
    for lab in range(1, n + 1):
        if centre[lab] >= 0:
            grid[centre[lab] // w, centre[lab] % w] = 0.0
    _geodesic(labels, grid)
    dist = grid.ravel()
    count = 0
    for p in range(h * w):
        if dist[p] < np.inf:
            count += 1
    index = np.empty(count, dtype=np.int64)
    key = np.empty(count, dtype=np.int64)
    i = 0
    for p in range(h * w):
        if dist[p] == np.inf:
            continue
        y, x = p // w, p % w
        lab = labels[y, x]
        normalised = dist[p] / (dist[p] + edge[y, x] + 0.001)
        b = min(int(normalised * bin_count), bin_count - 1)
        cy, cx = centre[lab] // w, centre[lab] % w
        wedge = int(y > cy) + 2 * int(x > cx) + 4 * int(abs(y - cy) > abs(x - cx))
        index[i] = p
        key[i] = (lab - 1) * bin_count * 8 + b * 8 + wedge
        i += 1
    centres = np.empty((n, 2), dtype=np.int64)
    for lab in range(1, n + 1):
        centres[lab - 1, 0] = centre[lab] // w if centre[lab] >= 0 else -1
        centres[lab - 1, 1] = centre[lab] % w if centre[lab] >= 0 else -1
    return index, key, centres


@njit(cache=True, nogil=True)
def _key_sums(index: np.ndarray, key: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``values[index]`` per ``key`` (``(size,)`` float64): one pass over the measured pixels."""
    out = np.zeros(size)
    for k in range(index.size):
        out[key[k]] += values[index[k]]
    return out


class RadialGeometry:
    """The rings and wedges of every object of one label image (see :func:`radial_geometry`).

    Attributes: ``n`` objects, ``bin_count`` rings; ``index`` (flat pixel indices of the
    measured pixels) and ``key`` (``(label - 1) * bins * 8 + ring * 8 + wedge``) of equal length;
    ``centres`` ``(n, 2)`` (row, col; -1 for an absent object); ``counts`` ``(n, bins, 8)``
    pixel counts; ``shape``: the label image's shape.
    """

    def __init__(self, index, key, centres, n: int, bin_count: int, shape: tuple[int, int]):
        self.index, self.key, self.centres, self.n, self.bin_count = index, key, centres, n, bin_count
        self.shape = shape
        self.counts = np.bincount(key, minlength=n * bin_count * 8).reshape(n, bin_count, 8).astype(np.float64)


def radial_geometry(labels: np.ndarray, n: int | None = None, bin_count: int = BIN_COUNT) -> RadialGeometry:
    """Rings (scaled bins) and wedges of objects ``1..n`` of an ``(H, W)`` label image.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((9, 9), np.int32)
    >>> labels[1:8, 1:8] = 1
    >>> g = radial_geometry(labels)
    >>> g.centres.tolist(), g.counts.sum(axis=2).tolist()
    ([[4, 4]], [[5.0, 8.0, 16.0, 20.0]])
    """
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    n = int(labels.max(initial=0)) if n is None else int(n)
    if labels.max(initial=0) > n:
        labels = np.where(labels > n, 0, labels)
    index, key, centres = _geometry(labels.astype(np.int32, copy=False), n, bin_count)
    return RadialGeometry(index, key, centres, n, bin_count, labels.shape)


def radial_distribution(plane: np.ndarray, geometry: RadialGeometry) -> dict[str, np.ndarray]:
    """CellProfiler's FracAtD, MeanFrac and RadialCV of one plane's objects.

    Parameters
    ----------
    plane : (H, W) array
        Intensities (any real dtype; the measures are ratios, so units cancel).
    geometry : RadialGeometry
        From :func:`radial_geometry` on the objects' labels (same shape).

    Returns
    -------
    dict
        ``{"<Measure>_<k>of<bins>": (n,) float64}`` for Measure in FracAtD, MeanFrac,
        RadialCV; NaN for an object without pixels or intensity.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((9, 9), np.int32)
    >>> labels[1:8, 1:8] = 1
    >>> r = radial_distribution(np.ones((9, 9)), radial_geometry(labels))
    >>> round(float(r["FracAtD_4of4"][0]), 4), round(float(r["MeanFrac_4of4"][0]), 4)
    (0.4082, 1.0)
    """
    n, bins = geometry.n, geometry.bin_count
    if np.shape(plane) != geometry.shape:
        raise ValueError(f"plane shape {np.shape(plane)} differs from the geometry's label shape {geometry.shape}")
    values = np.ascontiguousarray(plane).ravel()
    sums = _key_sums(geometry.index, geometry.key, values, n * bins * 8).reshape(n, bins, 8)
    counts = geometry.counts
    ring_sum, ring_count = sums.sum(axis=2), counts.sum(axis=2)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = ring_sum / ring_sum.sum(axis=1, keepdims=True)
        pixel_frac = ring_count / ring_count.sum(axis=1, keepdims=True)
        mean_frac = frac / (pixel_frac + np.finfo(float).eps)
        filled = counts > 0
        means = np.where(filled, sums / np.where(filled, counts, 1), 0.0)
        k = filled.sum(axis=2)
        mu = means.sum(axis=2) / k
        sd = np.sqrt(np.where(filled, (means - mu[..., None]) ** 2, 0.0).sum(axis=2) / k)
        cv = np.where(k > 0, sd / mu, 0.0)
    for b in range(bins):
        out[f"FracAtD_{b + 1}of{bins}"] = frac[:, b]
        out[f"MeanFrac_{b + 1}of{bins}"] = mean_frac[:, b]
        out[f"RadialCV_{b + 1}of{bins}"] = cv[:, b]
    return out
