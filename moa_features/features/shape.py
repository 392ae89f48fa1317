"""AreaShape: per-object shape measurements of a label image (CellProfiler's MeasureObjectSizeShape).

:func:`shape_measurements` (area, perimeter, eccentricity, solidity, extent, axis lengths,
compactness, centroid) is identical to :func:`skimage.measure.regionprops` (``area``,
``perimeter``, ``eccentricity``, ``solidity``, ``extent``, ``axis_major_length``,
``axis_minor_length``, ``centroid``) and computed for all objects at once by compiled
(numba) passes over the label image: exact integer moments and bounding boxes from
horizontal runs, perimeters from border-pixel codes, and convex hulls (for Solidity) from each
row's extreme columns by a monotone chain, whose pixel counts equal regionprops'
``area_convex`` exactly. Lengths in pixels, areas in pixels².
"""

from __future__ import annotations

from math import sqrt

import numpy as np
from numba import njit

from moa_features.features.outline import mark_outline
from moa_features.features.segmentation import check_plane

SHAPE_MEASURES: tuple[str, ...] = (
    "Area",
    "Perimeter",
    "FormFactor",
    "Eccentricity",
    "Solidity",
    "Extent",
    "MajorAxisLength",
    "MinorAxisLength",
    "Compactness",
)

# Benkrid-Crookes perimeter weights, indexed by the border-pixel code (as in skimage).
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + sqrt(2.0)) / 2.0
# Rows of _moments: area, sums of y, x, y², x², xy (relative to the bounding-box corner), bounding box.
_AREA, _SY, _SX, _SYY, _SXX, _SXY, _YMIN, _YMAX, _XMIN, _XMAX = range(10)


@njit(cache=True, nogil=True)
def _run_end(labels: np.ndarray, y: int, x: int) -> int:
    """Last column of the run of equal labels starting at ``(y, x)``."""
    label = labels[y, x]
    w = labels.shape[1]
    while x + 1 < w and labels[y, x + 1] == label:
        x += 1
    return x


@njit(cache=True, nogil=True)
def _moments(labels: np.ndarray, n: int) -> np.ndarray:
    """Per label 0..n, ``(10, n + 1)`` int64 rows ``_AREA`` ... ``_XMAX`` (see above).

    One pass over the horizontal runs (closed-form sums over a run's columns). The sums are
    exact integers, in coordinates relative to the label's bounding-box corner; absent
    labels keep area 0 and the box ``(h, -1, w, -1)``. Raises ``ValueError`` for a label
    outside ``0..n``.
    """
    h, w = labels.shape
    s = np.zeros((10, n + 1), dtype=np.int64)
    s[_YMIN], s[_YMAX], s[_XMIN], s[_XMAX] = h, -1, w, -1
    for y in range(h):
        a = 0
        while a < w:
            label = labels[y, a]
            b = _run_end(labels, y, a)
            if label != 0:
                if label < 0 or label > n:
                    raise ValueError("labels: expected non-negative integer labels up to the number of objects")
                length = b - a + 1
                sx = (a + b) * length // 2
                s[_AREA, label] += length
                s[_SY, label] += y * length
                s[_SX, label] += sx
                s[_SYY, label] += y * y * length
                s[_SXX, label] += (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) // 6
                s[_SXY, label] += y * sx
                s[_YMIN, label] = min(s[_YMIN, label], y)
                s[_YMAX, label] = y
                s[_XMIN, label] = min(s[_XMIN, label], a)
                s[_XMAX, label] = max(s[_XMAX, label], b)
            a = b + 1
    for label in range(1, n + 1):  # to the bounding-box corner (y0, x0)
        area, y0, x0, sy, sx = s[_AREA, label], s[_YMIN, label], s[_XMIN, label], s[_SY, label], s[_SX, label]
        s[_SYY, label] += area * y0 * y0 - 2 * y0 * sy
        s[_SXX, label] += area * x0 * x0 - 2 * x0 * sx
        s[_SXY, label] += area * x0 * y0 - x0 * sy - y0 * sx
        s[_SY, label] = sy - area * y0
        s[_SX, label] = sx - area * x0
    return s


@njit(cache=True, nogil=True)
def _hull_chain(extreme: np.ndarray, y0: int, side: int, points: np.ndarray, chain: np.ndarray) -> int:
    """One side of a label's convex hull, in doubled pixel coordinates.

    extreme: per pixel row from ``y0`` on, the row's extreme column on this side (``side``
    -1: left, +1: right; -1 for rows without pixels, which are skipped). A pixel (r, c) has
    centre (2r, 2c) and its edge midpoints (2r +- 1, 2c), (2r, 2c +- 1) (skimage's
    ``offset_coordinates``); the outermost of those per doubled row form a y-monotone chain
    whose convex envelope on this side (Andrew's monotone chain, collinear points dropped) is
    the hull's boundary. ``points``, ``chain``: ``(2, >= 3 * rows)`` int64 work space; the
    ``(y, x)`` vertices are written to ``chain``. Returns their number.
    """
    m = 0
    for i in range(len(extreme)):
        e = extreme[i]
        if e < 0:
            continue
        r = y0 + i
        for dy, dx in ((-1, 0), (0, side), (1, 0)):
            py, px = 2 * r + dy, 2 * e + dx
            if m > 0 and points[0, m - 1] == py:  # consecutive rows share a doubled row: the outer point
                points[1, m - 1] = max(points[1, m - 1], px) if side > 0 else min(points[1, m - 1], px)
            else:
                points[0, m], points[1, m] = py, px
                m += 1
    k = 0
    for i in range(m):
        py, px = points[0, i], points[1, i]
        while k >= 2:
            y_0, x_0, y_1, x_1 = chain[0, k - 2], chain[1, k - 2], chain[0, k - 1], chain[1, k - 1]
            if side * ((x_1 - x_0) * (py - y_0) - (px - x_0) * (y_1 - y_0)) > 0:
                break
            k -= 1  # not strictly outside the chord of its neighbours: never a hull vertex
        chain[0, k], chain[1, k] = py, px
        k += 1
    return k


@njit(cache=True, nogil=True)
def _interpolate(chain: np.ndarray, i: int, y: int) -> float:
    """x of the chain's edge from vertex i to i + 1 at doubled row y."""
    y0, x0, y1, x1 = chain[0, i], chain[1, i], chain[0, i + 1], chain[1, i + 1]
    return x0 + (x1 - x0) * (y - y0) / (y1 - y0)


@njit(cache=True, nogil=True)
def _convex_areas(labels: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Convex-hull pixel counts per label 0..n (float64), as regionprops' ``area_convex``.

    labels: ``(H, W)`` labels 0..n; s: their :func:`_moments`. The hull is that of every
    pixel's edge midpoints; pixel centres inside or on it count. Per label: each row's
    leftmost and rightmost column, the two hull chains (:func:`_hull_chain`), then per pixel
    row the integer columns between them.
    """
    h, w = labels.shape
    n = s.shape[1] - 1
    heights = np.maximum(s[_YMAX] - s[_YMIN] + 1, 0)
    offsets = np.zeros(n + 2, dtype=np.int64)
    offsets[1:] = np.cumsum(heights)
    left = np.full(offsets[-1], w, dtype=np.int64)
    right = np.full(offsets[-1], -1, dtype=np.int64)
    for y in range(h):
        a = 0
        while a < w:
            label = labels[y, a]
            b = _run_end(labels, y, a)
            if label != 0:
                r = offsets[label] + y - s[_YMIN, label]
                left[r] = min(left[r], a)
                right[r] = max(right[r], b)
            a = b + 1
    left[right < 0] = -1
    size = 3 * heights.max()
    points = np.empty((2, size), dtype=np.int64)
    left_chain = np.empty((2, size), dtype=np.int64)
    right_chain = np.empty((2, size), dtype=np.int64)
    out = np.zeros(n + 1, dtype=np.float64)
    eps = 1e-9
    for label in range(1, n + 1):
        if s[_AREA, label] == 0:
            continue
        y0, first, last = s[_YMIN, label], offsets[label], offsets[label + 1]
        _hull_chain(left[first:last], y0, -1, points, left_chain)
        _hull_chain(right[first:last], y0, 1, points, right_chain)
        i = j = 0
        count = 0.0
        for r in range(y0, s[_YMAX, label] + 1):
            while left_chain[0, i + 1] <= 2 * r:
                i += 1
            while right_chain[0, j + 1] <= 2 * r:
                j += 1
            xl, xr = _interpolate(left_chain, i, 2 * r), _interpolate(right_chain, j, 2 * r)
            count += max(np.floor(xr / 2 + eps) - np.ceil(xl / 2 - eps) + 1, 0.0)
        out[label] = count
    return out


@njit(cache=True, nogil=True)
def _perimeters(labels: np.ndarray, n: int, weights: np.ndarray) -> np.ndarray:
    """Perimeter of labels 0..n exactly as ``skimage.measure.perimeter(obj, 4)`` per object.

    Each border pixel (:func:`mark_outline`) adds the Benkrid-Crookes ``weights[code]`` of
    its border-pixel code (1, +2 per 4-neighbour and +10 per diagonal neighbour that is a
    border pixel of the same label), in raster order. labels: non-negative (raises
    ``ValueError`` for a label above ``n``).
    """
    h, w = labels.shape
    border = np.zeros((h + 2, w + 2), dtype=np.bool_)  # padded: no neighbour outside the image is a border pixel
    mark_outline(labels, border[1:-1, 1:-1])
    out = np.zeros(n + 1, dtype=np.float64)
    for y in range(1, h + 1):
        for x in range(1, w + 1):
            if not border[y, x]:
                continue
            label = labels[y - 1, x - 1]
            if label > n:
                raise ValueError("labels: expected non-negative integer labels up to the number of objects")
            code = 1
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if (dy or dx) and border[y + dy, x + dx] and labels[y + dy - 1, x + dx - 1] == label:
                        code += 2 if dy == 0 or dx == 0 else 10
            out[label] += weights[code]
    return out


def shape_measurements(labels: np.ndarray, n: int | None = None) -> dict[str, np.ndarray]:
    """Per-object shape measurements of labels ``1..labels.max()``.

    labels: ``(H, W)`` non-negative int labels (labels absent from the image get area 0 and
    NaN shape values). Returns arrays of length n keyed by ``Area`` (px²), ``Perimeter``
    (px), ``Eccentricity``, ``Solidity``, ``FormFactor`` (4*pi*Area/Perimeter²),
    ``Extent``, ``MajorAxisLength``, ``MinorAxisLength`` (px); identical to
    :func:`skimage.measure.regionprops` (``area``, ``perimeter``, ``eccentricity``,
    ``solidity``, ``extent``, ``axis_major_length``, ``axis_minor_length``) up to rounding;
    also ``Compactness`` (CellProfiler's) and the centroid ``Center_X``, ``Center_Y`` (px).
    ``n``: number of objects (default ``labels.max()``).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((10, 10), np.int32)
    >>> labels[2:5, 3:7] = 1
    >>> m = shape_measurements(labels)
    >>> float(m["Area"][0]), float(m["Extent"][0]), float(m["Center_X"][0])
    (12.0, 1.0, 4.5)
    """
    labels = check_plane(labels, "labels").astype(np.int32, copy=False)
    n = int(labels.max(initial=0)) if n is None else n
    s = _moments(labels, n)
    if not s[_AREA].any():
        return {m: np.full(n, 0.0 if m == "Area" else np.nan) for m in (*SHAPE_MEASURES, "Center_X", "Center_Y")}
    area, sy, sx, syy, sxx, sxy = s[_AREA : _SXY + 1, 1:].astype(np.float64)
    y_min, y_max, x_min, x_max = s[_YMIN:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = sy / area, sx / area
        var_y = syy / area - my * my
        var_x = sxx / area - mx * mx
        cov = sxy / area - my * mx
        half_trace = (var_x + var_y) / 2
        root = np.sqrt(((var_y - var_x) / 2) ** 2 + cov**2)
        l1 = np.maximum(half_trace + root, 0)
        l2 = np.maximum(half_trace - root, 0)
        perimeter = _perimeters(labels, n, _PERIMETER_WEIGHTS)[1:]
        convex = _convex_areas(labels, s)[1:]
        out = {
            "Area": area,
            "Perimeter": perimeter,
            "Eccentricity": np.where(l1 > 0, np.sqrt(np.maximum(1 - l2 / l1, 0)), 0.0),
            "Solidity": area / convex,
            "FormFactor": 4 * np.pi * area / perimeter**2,
            "Extent": area / ((y_max - y_min + 1) * (x_max - x_min + 1)),
            "MajorAxisLength": 4 * np.sqrt(l1),
            "MinorAxisLength": 4 * np.sqrt(l2),
            "Compactness": 2 * np.pi * (var_x + var_y) / area,
            "Center_X": mx + x_min,
            "Center_Y": my + y_min,
        }
    present = area > 0
    for measure in [*SHAPE_MEASURES[1:], "Center_X", "Center_Y"]:
        out[measure] = np.where(present, out[measure], np.nan)
    return out
