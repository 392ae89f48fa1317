"""Morphology feature family: segmentation, per-object measurements, aggregation per site.

For one site (``(C, H, W)`` uint8/uint16 image):

1. :func:`~moa_features.features.segmentation.segment` labels nuclei, cells and cytoplasm
   (or the caller passes its own :class:`~moa_features.features.segmentation.Masks`);
   border nuclei are excluded by default, diameter limits are options.
2. :func:`~moa_features.features.objects.measure_objects` measures every object
   (CellProfiler's AreaShape and MeasureObjectIntensity definitions); per-object Haralick
   texture and colocalisation are options.
3. :func:`~moa_features.features.objects.aggregate_objects` gives the site's median, mean
   and standard deviation over objects (``<column>_Median`` etc.).

:func:`shape_measurements` (area, perimeter, eccentricity, solidity, extent, axis lengths,
compactness, centroid) is identical to :func:`skimage.measure.regionprops` (``area``,
``perimeter``, ``eccentricity``, ``solidity``, ``extent``, ``axis_major_length``,
``axis_minor_length``, ``centroid``) and computed for all objects at once from run-length
encodings; the convex hulls (for Solidity) come from a vectorised chain construction whose
pixel counts equal regionprops' ``area_convex`` exactly.

Units: lengths in pixels, areas in pixels², intensities in grey levels of the input dtype
(0-255 for uint8, 0-65535 for uint16; no rescaling). A site without nuclei gives
``Nuclei_Count = 0`` and NaN for every statistic over objects (``Image_AreaOccupied_*`` are 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import sqrt

import numpy as np

from moa_features.features.segmentation import (  # noqa: F401  (re-exported: the segmentation step)
    Masks,
    _check_plane,
    check_image,
    segment,
    segment_cells,
    segment_nuclei,
)

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

FEATURE_DOCS: list[tuple[str, str, str]] = [
    ("Nuclei_Count", "objects", "Number of nuclei kept (after border and size exclusion); one cell per nucleus."),
    ("Image_AreaOccupied_Fraction_Nuclei", "fraction (0-1)", "Fraction of the site's pixels covered by kept nuclei."),
    ("Image_AreaOccupied_Fraction_Cells", "fraction (0-1)", "Fraction of the site's pixels covered by kept cells."),
    ("<Cpt>_AreaShape_Area_<stat>", "pixels²", "Object area (pixel count)."),
    (
        "<Cpt>_AreaShape_Perimeter_<stat>",
        "pixels",
        "Perimeter as regionprops 'perimeter' (4-connected border, Benkrid-Crookes weights).",
    ),
    ("<Cpt>_AreaShape_FormFactor_<stat>", "1", "4*pi*Area/Perimeter² (about 1 for a disk)."),
    (
        "<Cpt>_AreaShape_Eccentricity_<stat>",
        "1 (0-1)",
        "Eccentricity of the ellipse with the same second central moments.",
    ),
    (
        "<Cpt>_AreaShape_Solidity_<stat>",
        "1 (0-1]",
        "Area / convex-hull area (hull pixel count as regionprops 'area_convex').",
    ),
    ("<Cpt>_AreaShape_Extent_<stat>", "1 (0-1]", "Area / bounding-box area."),
    (
        "<Cpt>_AreaShape_MajorAxisLength_<stat>",
        "pixels",
        "Major axis of the ellipse with the same normalised second central moments (4*sqrt(eigenvalue)).",
    ),
    ("<Cpt>_AreaShape_MinorAxisLength_<stat>", "pixels", "Minor axis of that ellipse."),
    (
        "<Cpt>_AreaShape_Compactness_<stat>",
        "1",
        "2*pi * mean squared distance of the pixels from the centroid / Area (1 for a disk; CellProfiler).",
    ),
    ("<Cpt>_Intensity_IntegratedIntensity_<ch>_<stat>", "grey level", "Sum of the object's pixel values."),
    ("<Cpt>_Intensity_MeanIntensity_<ch>_<stat>", "grey level", "Mean pixel value in the object."),
    (
        "<Cpt>_Intensity_StdIntensity_<ch>_<stat>",
        "grey level",
        "Population standard deviation of the object's pixel values.",
    ),
    ("<Cpt>_Intensity_MinIntensity_<ch>_<stat>", "grey level", "Smallest pixel value in the object."),
    ("<Cpt>_Intensity_MaxIntensity_<ch>_<stat>", "grey level", "Largest pixel value in the object."),
    (
        "<Cpt>_Intensity_LowerQuartileIntensity_<ch>_<stat>",
        "grey level",
        "CellProfiler's 1/4 quantile: sorted value at position area/4, interpolated to the next.",
    ),
    ("<Cpt>_Intensity_MedianIntensity_<ch>_<stat>", "grey level", "CellProfiler's 1/2 quantile (same rule)."),
    ("<Cpt>_Intensity_UpperQuartileIntensity_<ch>_<stat>", "grey level", "CellProfiler's 3/4 quantile (same rule)."),
    (
        "<Cpt>_Intensity_MADIntensity_<ch>_<stat>",
        "grey level",
        "CellProfiler's 1/2 quantile of |value - MedianIntensity|.",
    ),
    (
        "<Cpt>_Intensity_IntegratedIntensityEdge_<ch>_<stat>",
        "grey level",
        "Sum over the object's outline (pixels with a 4-neighbour outside the object, or on the image border).",
    ),
    ("<Cpt>_Intensity_MeanIntensityEdge_<ch>_<stat>", "grey level", "Mean over the object's outline."),
    (
        "<Cpt>_Intensity_MassDisplacement_<ch>_<stat>",
        "pixels",
        "Distance between the intensity-weighted and the unweighted centroid.",
    ),
    (
        "<Cpt>_Texture_<Measure>_<ch>_<d>_avg_<q>_<stat>",
        "as Image_Texture",
        "Option (--object-texture): Haralick measures of the object's own GLCM (pairs inside the object), quantised as "
        "the image-level texture.",
    ),
    (
        "<Cpt>_Correlation_Correlation_<a>_<b>_<stat>",
        "1 (-1 to 1)",
        "Option (--object-correlation): Pearson correlation of channels a and b inside the object.",
    ),
]
MORPHOLOGY_CONVENTIONS = """``<Cpt>``: Nuclei, Cells or Cytoplasm (cell minus its nucleus); ``<stat>``: Median, Mean or
Std (ddof=0) over the site's objects, NaN values (e.g. an empty cytoplasm) ignored. Nuclei
touching the image border are excluded by default (``--keep-border-objects``), and
``--min-diameter``/``--max-diameter`` limit the nuclei's equivalent diameters (pixels). The
per-object table (``extract --objects``, ``NAME.objects.parquet``) holds the same
measurements without ``_<stat>``, one row per object, with the site's ``Metadata_`` keys,
``ObjectNumber`` and ``Location_Center_X/Y`` (the nucleus centroid, pixels)."""

# Benkrid-Crookes perimeter weights, indexed by the border-pixel code (as in skimage).
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + sqrt(2.0)) / 2.0


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of equal non-zero labels: (label, row, first column, last column)."""
    h, w = labels.shape
    edge = np.zeros((h, 1), dtype=labels.dtype)
    padded = np.hstack([edge, labels, edge])
    inner = padded[:, 1:-1]
    starts = np.flatnonzero((inner != padded[:, :-2]) & (inner != 0))
    ends = np.flatnonzero((inner != padded[:, 2:]) & (inner != 0))
    rows, first = np.divmod(starts, w)
    return labels.ravel()[starts].astype(np.int64), rows, first, ends % w


def _row_extremes(lab: np.ndarray, row: np.ndarray, first: np.ndarray, last: np.ndarray, h: int):
    """Per (label, row): leftmost and rightmost column, from runs in raster order."""
    key = lab * h + row
    order = np.argsort(key, kind="stable")
    key = key[order]
    group = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    left = np.minimum.reduceat(first[order], group)
    right = np.maximum.reduceat(last[order], group)
    return key[group] // h, key[group] % h, left, right


def _chain(lab: np.ndarray, row: np.ndarray, end: np.ndarray, side: int):
    """One side of every label's convex hull, in doubled pixel coordinates.

    lab, row, end: per (label, row), sorted by label then row, the row's extreme column on
    this side (``side`` -1: left, +1: right). A pixel (r, c) has centre (2r, 2c) and its
    edge midpoints (2r +- 1, 2c), (2r, 2c +- 1) (skimage's ``offset_coordinates``); the
    outermost of those per doubled row, per label, form a y-monotone chain whose convex
    envelope on this side is the hull's boundary. Returns ``(label, y, x)`` of the hull
    vertices, sorted by label then y.
    """
    y = (2 * row[:, None] + np.array([-1, 0, 1])).ravel()
    x = (2 * end[:, None] + np.array([0, side, 0])).ravel()
    lab = np.repeat(lab, 3)
    # consecutive rows share the doubled row between them: keep the outer point
    first = np.r_[True, (lab[1:] != lab[:-1]) | (y[1:] != y[:-1])]
    starts = np.flatnonzero(first)
    x = (np.maximum if side > 0 else np.minimum).reduceat(x, starts)
    lab, y = lab[starts], y[starts]
    # Drop every point not strictly outside the chord of its neighbours (never a hull
    # vertex: the chord's end points are in the set), all at once, until none is left.
    while len(x) > 2:
        same = (lab[:-2] == lab[1:-1]) & (lab[1:-1] == lab[2:])
        cross = (x[1:-1] - x[:-2]) * (y[2:] - y[:-2]) - (x[2:] - x[:-2]) * (y[1:-1] - y[:-2])
        drop = np.zeros(len(x), dtype=bool)
        drop[1:-1] = same & (side * cross <= 0)
        if not drop.any():
            break
        keep = ~drop
        lab, y, x = lab[keep], y[keep], x[keep]
    return lab, y, x


def _chain_at(chain: tuple[np.ndarray, np.ndarray, np.ndarray], qlab: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """x of each label's hull chain at doubled rows ``qy`` (strictly inside its y range)."""
    lab, y, x = chain
    span = int(max(y.max(initial=0), qy.max(initial=0))) + 2
    key = lab * span + y
    i = np.searchsorted(key, qlab * span + qy, side="right") - 1
    y0, y1, x0, x1 = y[i], y[i + 1], x[i], x[i + 1]
    return x0 + (x1 - x0) * (qy - y0) / (y1 - y0)


def _convex_areas(lab: np.ndarray, row: np.ndarray, left: np.ndarray, right: np.ndarray, n: int) -> np.ndarray:
    """Convex-hull pixel counts per label 1..n, as regionprops' ``area_convex``.

    The hull is that of every pixel's edge midpoints; pixel centres inside or on it count.
    Vectorised over all labels (no per-object loop, no private third-party code): each
    label's left and right hull chains (:func:`_chain`), then per pixel row the integer
    columns between them.
    """
    left_chain = _chain(lab, row, left, -1)
    right_chain = _chain(lab, row, right, 1)
    # every pixel-centre row from each label's first to last row
    first = np.r_[True, lab[1:] != lab[:-1]]
    last = np.r_[lab[1:] != lab[:-1], True]
    labels, top, bottom = lab[first], row[first], row[last]
    counts = bottom - top + 1
    qlab = np.repeat(labels, counts)
    qrow = np.repeat(top, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    xl = _chain_at(left_chain, qlab, 2 * qrow)
    xr = _chain_at(right_chain, qlab, 2 * qrow)
    eps = 1e-9
    per_row = np.maximum(np.floor(xr / 2 + eps) - np.ceil(xl / 2 - eps) + 1, 0)
    return np.bincount(qlab, weights=per_row, minlength=n + 1)[1:]


def _perimeters(labels: np.ndarray, n: int) -> np.ndarray:
    """Perimeter of labels 1..n exactly as ``skimage.measure.perimeter(obj, 4)`` per object."""
    h, w = labels.shape
    p = np.zeros((h + 2, w + 2), dtype=labels.dtype)
    p[1:-1, 1:-1] = labels
    c = p[1:-1, 1:-1]
    border = np.zeros(p.shape, dtype=bool)
    border[1:-1, 1:-1] = (c != 0) & (
        (c != p[:-2, 1:-1]) | (c != p[2:, 1:-1]) | (c != p[1:-1, :-2]) | (c != p[1:-1, 2:])
    )
    idx = np.flatnonzero(border)
    flat_p, flat_b = p.ravel(), border.ravel()
    lab = flat_p[idx]
    code = np.ones(len(idx), dtype=np.int64)
    w2 = w + 2
    for offset, weight in (
        (-1, 2),
        (1, 2),
        (-w2, 2),
        (w2, 2),
        (-w2 - 1, 10),
        (-w2 + 1, 10),
        (w2 - 1, 10),
        (w2 + 1, 10),
    ):
        q = idx + offset
        code += weight * (flat_b[q] & (flat_p[q] == lab))
    return np.bincount(lab, weights=_PERIMETER_WEIGHTS[code], minlength=n + 1)[1:]


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
    labels = _check_plane(labels, "labels")
    if labels.size and labels.min() < 0:
        raise ValueError("labels: expected non-negative integer labels")
    labels = labels.astype(np.int32, copy=False)
    n = int(labels.max(initial=0)) if n is None else n
    if not labels.any():
        return {m: np.full(n, 0.0 if m == "Area" else np.nan) for m in (*SHAPE_MEASURES, "Center_X", "Center_Y")}
    h = labels.shape[0]
    lab, row, first, last = _runs(labels)
    length = (last - first + 1).astype(np.float64)
    # Bounding boxes, by label-sorted runs (runs are in raster order: rows ascend per label).
    y_min = np.full(n + 1, h, dtype=np.int64)
    y_max = np.full(n + 1, -1, dtype=np.int64)
    x_min = np.full(n + 1, labels.shape[1], dtype=np.int64)
    x_max = np.full(n + 1, -1, dtype=np.int64)
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]
    starts = np.flatnonzero(np.r_[True, sorted_lab[1:] != sorted_lab[:-1]])
    present_labels = sorted_lab[starts]
    y_min[present_labels] = row[order][starts]
    y_max[present_labels] = row[order][np.r_[starts[1:], len(order)] - 1]
    x_min[present_labels] = np.minimum.reduceat(first[order], starts)
    x_max[present_labels] = np.maximum.reduceat(last[order], starts)
    # Second moments from runs, in coordinates relative to each object's bbox corner.
    y = (row - y_min[lab]).astype(np.float64)
    a = (first - x_min[lab]).astype(np.float64)
    b = (last - x_min[lab]).astype(np.float64)
    sx = (a + b) * length / 2
    sxx = (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) / 6

    def per_label(weights: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=weights, minlength=n + 1)[1:]

    area = per_label(length)
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = per_label(y * length) / area, per_label(sx) / area
        var_y = per_label(y * y * length) / area - my * my
        var_x = per_label(sxx) / area - mx * mx
        cov = per_label(y * sx) / area - my * mx
        half_trace = (var_x + var_y) / 2
        root = np.sqrt(((var_y - var_x) / 2) ** 2 + cov**2)
        l1 = np.maximum(half_trace + root, 0)
        l2 = np.maximum(half_trace - root, 0)
        perimeter = _perimeters(labels, n)
        convex = _convex_areas(*_row_extremes(lab, row, first, last, h), n)
        out = {
            "Area": area,
            "Perimeter": perimeter,
            "Eccentricity": np.where(l1 > 0, np.sqrt(np.maximum(1 - l2 / l1, 0)), 0.0),
            "Solidity": area / convex,
            "FormFactor": 4 * np.pi * area / perimeter**2,
            "Extent": area / ((y_max - y_min + 1) * (x_max - x_min + 1))[1:],
            "MajorAxisLength": 4 * np.sqrt(l1),
            "MinorAxisLength": 4 * np.sqrt(l2),
            "Compactness": 2 * np.pi * (var_x + var_y) / area,
            "Center_X": mx + x_min[1:],
            "Center_Y": my + y_min[1:],
        }
    present = area > 0
    for measure in [*SHAPE_MEASURES[1:], "Center_X", "Center_Y"]:
        out[measure] = np.where(present, out[measure], np.nan)
    return out


def morphology_features(
    image: np.ndarray,
    channels: Sequence[str],
    nuclear_channel: int = 0,
    cell_channel: int = 2,
    masks: Masks | None = None,
    **options,
) -> dict[str, float]:
    """Segmentation-based features of one site: counts, coverage, per-object aggregates.

    image: ``(C, H, W)`` uint8/uint16; channels: the C channel names; nuclear_channel /
    cell_channel: plane indices used to segment (ignored when ``masks`` is given); options:
    passed to :func:`moa_features.features.objects.site_objects` (``exclude_border``,
    ``min_diameter``, ``max_diameter``, ``threshold``, ``texture``, ``correlation``, ...).
    Returns the flat dict documented in ``FEATURE_DOCS``. Deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((3, 64, 64), np.uint8)
    >>> image[0, 20:30, 20:30] = 200
    >>> image[2, 15:35, 15:35] = 90
    >>> f = morphology_features(image, ["w1", "w2", "w3"])
    >>> f["Nuclei_Count"], f["Nuclei_AreaShape_Area_Median"]
    (1.0, 96.0)
    """
    from moa_features.features.objects import site_objects, site_summary

    objects, masks = site_objects(image, channels, nuclear_channel, cell_channel, masks=masks, **options)
    return site_summary(objects, masks)
