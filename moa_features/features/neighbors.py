"""Neighbors feature family: CellProfiler's MeasureObjectNeighbors, per object.

For each object of a label image, with neighbours taken among the same objects:

- ``NumberOfNeighbors``: how many other objects have a pixel within the neighbour distance
  ``d`` of one of its pixels (offsets ``dy² + dx² <= d²``; "Adjacent" is ``d = 1``, the four
  side neighbours);
- ``PercentTouching``: 100 x the fraction of its outline pixels (pixels with an
  8-neighbour of another value, or on the image border) that lie within ``d + 0.5`` of
  another object's pixel;
- ``FirstClosestDistance``, ``SecondClosestDistance``: distances in pixels from its centroid
  to the nearest and second nearest other centroids; ``AngleBetweenNeighbors``: the angle in
  degrees at its centroid between those two.

As in CellProfiler, a site with one object gives 0 for every measure, and one with two
gives 0 for the second closest distance and the angle. The closest objects' numbers
(``FirstClosestObjectNumber``...) are left out: they mean nothing once aggregated per site.
Nuclei are measured within 1 pixel (``Nuclei_Neighbors_<Measure>_1``), cells when adjacent
(``Cells_Neighbors_<Measure>_Adjacent``): CellProfiler's methods "Within a specified
distance" (1 pixel) and "Adjacent". One compiled pass over the pixels per label image; equal to cp-measure's
``measureobjectneighbors`` (tests/test_features_neighbors.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.spatial import cKDTree

from moa_features.features.segmentation import Masks, check_plane

NEIGHBOR_MEASURES: tuple[str, ...] = (
    "NumberOfNeighbors",
    "PercentTouching",
    "FirstClosestDistance",
    "SecondClosestDistance",
    "AngleBetweenNeighbors",
)
CONVENTIONS = __doc__.split("\n\n", 1)[1]  # the catalogue's introduction to the family
#: Neighbour distance per compartment: ``None`` is CellProfiler's "Adjacent" (1 pixel, named so).
DISTANCES: dict[str, int | None] = {"Nuclei": 1, "Cells": None}

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "<Cpt>_Neighbors_NumberOfNeighbors_<scale>_<stat>",
        "objects",
        "Other objects with a pixel within the neighbour distance of the object's pixels (Nuclei: 1 pixel, scale "
        "'1'; Cells: adjacent, scale 'Adjacent').",
    ),
    (
        "<Cpt>_Neighbors_PercentTouching_<scale>_<stat>",
        "percent",
        "Share of the object's outline pixels (8-connected) within the neighbour distance + 0.5 of another object.",
    ),
    (
        "<Cpt>_Neighbors_FirstClosestDistance_<scale>_<stat>",
        "pixels",
        "Distance between the object's centroid and the nearest other centroid (0 if the site has one object).",
    ),
    (
        "<Cpt>_Neighbors_SecondClosestDistance_<scale>_<stat>",
        "pixels",
        "Distance to the second nearest other centroid (0 with fewer than three objects).",
    ),
    (
        "<Cpt>_Neighbors_AngleBetweenNeighbors_<scale>_<stat>",
        "degrees",
        "Angle at the object's centroid between the nearest and the second nearest centroids.",
    ),
]


def neighbors_features(masks: Masks) -> dict[str, np.ndarray]:
    """Per-object neighbour measurements of nuclei (within 1 pixel) and cells (adjacent).

    Parameters
    ----------
    masks : Masks
        The site's masks (objects 1..n).

    Returns
    -------
    dict of str to ndarray
        ``{"<Cpt>_Neighbors_<Measure>_<scale>": (n,) float64}`` for Cpt in Nuclei, Cells.

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features.segmentation import masks_from_labels
    >>> nuclei = np.zeros((10, 20), np.int32)
    >>> nuclei[2:6, 2:6], nuclei[2:6, 8:12] = 1, 2
    >>> cells = np.zeros_like(nuclei)
    >>> cells[1:8, 1:7], cells[1:8, 7:13] = 1, 2
    >>> f = neighbors_features(masks_from_labels(nuclei, cells))
    >>> f["Cells_Neighbors_NumberOfNeighbors_Adjacent"].tolist(), f["Nuclei_Neighbors_NumberOfNeighbors_1"].tolist()
    ([1.0, 1.0], [0.0, 0.0])
    """
    out: dict[str, np.ndarray] = {}
    for name, labels in masks.compartments().items():
        if name in DISTANCES:
            distance = DISTANCES[name]
            scale = "Adjacent" if distance is None else str(distance)
            for measure, values in object_neighbors(labels, masks.n, distance or 1).items():
                out[f"{name}_Neighbors_{measure}_{scale}"] = values
    return out


def object_neighbors(labels: np.ndarray, n: int | None = None, distance: int = 1) -> dict[str, np.ndarray]:
    """MeasureObjectNeighbors of objects ``1..n`` among themselves, within ``distance`` pixels.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Non-negative labels.
    n : int, optional
        Number of objects (default ``labels.max()``); absent labels get NaN.
    distance : int
        Neighbour distance in pixels (1: CellProfiler's "Adjacent").

    Returns
    -------
    dict of str to ndarray
        ``{measure: (n,) float64}`` for every name in ``NEIGHBOR_MEASURES``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 9), np.int32)
    >>> labels[1:4, 1:4], labels[1:4, 4:7] = 1, 2  # side by side
    >>> m = object_neighbors(labels)
    >>> m["NumberOfNeighbors"].tolist(), m["FirstClosestDistance"].tolist()
    ([1.0, 1.0], [3.0, 3.0])
    """
    labels = check_plane(labels, "labels")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(f"labels: expected non-negative integer labels, got dtype {labels.dtype}")
    if distance < 1:
        raise ValueError(f"distance must be a positive number of pixels, got {distance}")
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    n = int(labels.max(initial=0)) if n is None else n
    out = {m: np.zeros(n) for m in NEIGHBOR_MEASURES}
    if n == 0:
        return out
    area, sy, sx, outline_count, touching, pairs = _scan(labels, n, _disk(distance), _disk(distance + 0.5))
    present = area > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        cy, cx = sy / area, sx / area
        out["PercentTouching"] = touching * 100.0 / outline_count
    pairs = np.unique(pairs)
    out["NumberOfNeighbors"] = np.bincount(pairs // (n + 1) - 1, minlength=n).astype(np.float64)
    k = int(present.sum())
    if k > 1:
        first, second, angle = _closest(cy[present], cx[present])
        out["FirstClosestDistance"][present] = first
        out["SecondClosestDistance"][present] = second
        out["AngleBetweenNeighbors"][present] = angle
    else:
        out["PercentTouching"][present] = 0.0
    for measure in NEIGHBOR_MEASURES:
        out[measure][~present] = np.nan
    return out


def _disk(radius: float) -> np.ndarray:
    """Offsets ``(k, 2)`` of the disk ``dy² + dx² <= radius²`` but the centre (centrosome's ``strel_disk``)."""
    r = int(radius)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = (dy * dy + dx * dx <= radius * radius) & ((dy != 0) | (dx != 0))
    return np.column_stack([dy[inside], dx[inside]]).astype(np.int64)


def _closest(cy: np.ndarray, cx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per centroid: distance to the nearest and second nearest others, and the angle between them (degrees)."""
    m = len(cy)
    points = np.column_stack([cy, cx])
    k = min(3, m)
    distances, found = cKDTree(points).query(points, k=k)
    rows = np.arange(m)
    # the point itself (distance 0, usually first) goes last; the two nearest others stay in order
    order = np.argsort(np.where(found == rows[:, None], np.inf, distances), axis=1, kind="stable")[:, : k - 1]
    others = np.take_along_axis(found, order, axis=1)
    v1 = np.stack([cx[others[:, 0]] - cx, cy[others[:, 0]] - cy])
    first = np.sqrt(np.sum(v1**2, 0))
    if m < 3:
        return first, np.zeros(m), np.zeros(m)
    v2 = np.stack([cx[others[:, 1]] - cx, cy[others[:, 1]] - cy])
    second = np.sqrt(np.sum(v2**2, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        dot = np.sum(v1 * v2, 0) / np.sqrt(np.sum(v1**2, 0) * np.sum(v2**2, 0))
    return first, second, np.arccos(dot) * 180.0 / np.pi


@njit(cache=True, nogil=True)
def _scan(labels, n, near, touch):  # pragma: no cover - compiled
    """One pass: areas, coordinate sums, outline and touching outline pixel counts, neighbour pairs.

    near, touch: ``(k, 2)`` offsets of the neighbour disk and of the touching disk. Returns
    per label 1..n ``area``, ``sum y``, ``sum x``, outline pixels, touching outline pixels
    (float64 ``(n,)``), and the neighbour pairs as codes ``a * (n + 1) + b`` (with repeats).
    """
    h, w = labels.shape
    area = np.zeros(n + 1)
    sy = np.zeros(n + 1)
    sx = np.zeros(n + 1)
    outline = np.zeros(n + 1)
    touching = np.zeros(n + 1)
    pairs = np.empty(1024, np.int64)
    count = 0
    local = np.abs(near).max() <= 1 and np.abs(touch).max() <= 1  # both disks within the 3x3 neighbourhood
    last_pair = -1
    for y in range(h):
        for x in range(w):
            a = labels[y, x]
            if a == 0:
                continue
            area[a] += 1
            sy[a] += y
            sx[a] += x
            on_outline = y == 0 or x == 0 or y == h - 1 or x == w - 1
            if not on_outline:
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        if labels[y + dy, x + dx] != a:
                            on_outline = True
            if not on_outline and local:
                continue  # every label within reach is a's own
            for k in range(near.shape[0]):
                yy, xx = y + near[k, 0], x + near[k, 1]
                if 0 <= yy < h and 0 <= xx < w:
                    b = labels[yy, xx]
                    if b != 0 and b != a:
                        code = np.int64(a) * (n + 1) + b
                        if code != last_pair:  # runs of one pair are common: skip the obvious repeats
                            if count == len(pairs):
                                pairs = np.concatenate((pairs, np.empty(count, np.int64)))
                            pairs[count] = code
                            count += 1
                            last_pair = code
            if on_outline:
                outline[a] += 1
                for k in range(touch.shape[0]):
                    yy, xx = y + touch[k, 0], x + touch[k, 1]
                    if 0 <= yy < h and 0 <= xx < w:
                        b = labels[yy, xx]
                        if b != 0 and b != a:
                            touching[a] += 1
                            break
    return area[1:], sy[1:], sx[1:], outline[1:], touching[1:], pairs[:count]
