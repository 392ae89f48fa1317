"""Per-object measurements (CellProfiler's definitions) and their aggregation per site.

Objects come as label masks (:class:`~moa_features.features.segmentation.Masks`): nuclei,
cells and cytoplasm with matching numbers 1..n. For each object and channel,
:func:`object_intensity` gives CellProfiler's ``MeasureObjectIntensity`` measurements:

- ``IntegratedIntensity`` (sum), ``MeanIntensity``, ``StdIntensity`` (population, ddof=0),
  ``MinIntensity``, ``MaxIntensity``;
- ``LowerQuartileIntensity``, ``MedianIntensity``, ``UpperQuartileIntensity``: CellProfiler's
  quantile rule, the sorted values' entry at 0-based position ``area * f`` with linear
  interpolation to the next one (``f`` = 1/4, 1/2, 3/4; the last value when there is no
  next one); ``MADIntensity``: the same rule at 1/2 on ``|value - MedianIntensity|``;
- ``IntegratedIntensityEdge``, ``MeanIntensityEdge``: over the object's outline, the pixels
  with a 4-neighbour of another label or on the image border;
- ``MassDisplacement``: distance in pixels between the intensity-weighted and the
  unweighted centroid.

Intensities are grey levels of the input dtype (CellProfiler divides 8-bit values by 255).
Shapes (``AreaShape_*``) come from :func:`~moa_features.features.shape.shape_measurements`.
For 8-bit images every order statistic is read off per-object histograms (one compiled
pass per channel over nuclei and cytoplasm, cells being their sum, that also sums the
position-weighted and outline intensities); other dtypes sort the pixels per object. Both
give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from moa_features.features.outline import mark_outline, outline
from moa_features.features.segmentation import COMPARTMENTS, Masks

INTENSITY_MEASURES: tuple[str, ...] = (
    "IntegratedIntensity",
    "MeanIntensity",
    "StdIntensity",
    "MinIntensity",
    "MaxIntensity",
    "LowerQuartileIntensity",
    "MedianIntensity",
    "MADIntensity",
    "UpperQuartileIntensity",
    "IntegratedIntensityEdge",
    "MeanIntensityEdge",
    "MassDisplacement",
)
_QUANTILES = {"LowerQuartileIntensity": 0.25, "MedianIntensity": 0.5, "UpperQuartileIntensity": 0.75}


@njit(cache=True, nogil=True)
def _bin_at_rank(hist: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Per row of histograms ``hist`` (n, B), the bin holding 0-based ``ranks`` (n,); B past the end."""
    n, bins = hist.shape
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        count, b = 0, 0
        while b < bins:
            count += hist[i, b]
            if count > ranks[i]:
                break
            b += 1
        out[i] = b
    return out


def _cp_quantile(value_at, area: np.ndarray, fraction: float) -> np.ndarray:
    """CellProfiler's quantile: entry ``area * f`` of the sorted values, interpolated to the next.

    value_at(ranks) returns the sorted values at 0-based ranks per object (ranks < area).
    """
    position = area * fraction
    lower = np.floor(position).astype(np.int64)
    frac = position - lower
    has_next = lower < area - 1
    lo = value_at(np.minimum(lower, np.maximum(area - 1, 0)))
    hi = value_at(np.minimum(lower + 1, np.maximum(area - 1, 0)))
    return np.where(has_next, lo * (1 - frac) + hi * frac, lo)


def _histogram_stats(hist: np.ndarray, top: int) -> dict[str, np.ndarray]:
    """Sum, moments and CellProfiler order statistics from per-object histograms ``(n, top+1)``."""
    grey = np.arange(top + 1, dtype=np.float64)
    area = hist.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        integrated = hist @ grey
        mean = integrated / area
        variance = np.maximum(hist @ (grey * grey) / area - mean * mean, 0)
        out = {
            "IntegratedIntensity": integrated,
            "MeanIntensity": mean,
            "StdIntensity": np.sqrt(variance),
            "MinIntensity": np.where(area > 0, _bin_at_rank(hist, np.zeros_like(area)), np.nan),
            "MaxIntensity": np.where(area > 0, _bin_at_rank(hist, area - 1), np.nan),
        }
        for name, f in _QUANTILES.items():
            out[name] = np.where(area > 0, _cp_quantile(lambda r: _bin_at_rank(hist, r), area, f), np.nan)
        median2 = np.rint(np.nan_to_num(2 * out["MedianIntensity"])).astype(np.int64)  # a multiple of 1/2
        mad = _cp_quantile(lambda r: _deviation_at(hist, median2, r), area, 0.5) / 2
        out["MADIntensity"] = np.where(area > 0, mad, np.nan)
    return out


@njit(cache=True, nogil=True)
def _deviation_at(hist: np.ndarray, median2: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Per object, twice the ``ranks``-th smallest ``|v - median|`` (0-based), from its histogram.

    hist: ``(n, B)`` histograms of values 0..B-1; median2: twice each median (integers in
    0..2(B-1)). The values below and above the median are walked outwards in the order of
    ``|2v - median2|`` until more than ``rank`` are counted; ``2B - 1`` where there are too
    few values.
    """
    n, bins = hist.shape
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        m2 = median2[i]
        below, above = m2 // 2, m2 // 2 + 1  # |2v - m2| = m2 - 2v for v <= below, 2v - m2 for v >= above
        count, deviation = 0, 2 * bins - 1
        while below >= 0 or above < bins:
            if above >= bins or (below >= 0 and m2 - 2 * below <= 2 * above - m2):
                count += hist[i, below]
                d = m2 - 2 * below
                below -= 1
            else:
                count += hist[i, above]
                d = 2 * above - m2
                above += 1
            if count > ranks[i]:
                deviation = d
                break
        out[i] = deviation
    return out


def _sorted_stats(plane: np.ndarray, labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The order statistics of :func:`_histogram_stats` by sorting the pixels per object."""
    inside = labels > 0
    lab = labels[inside].astype(np.int64)
    val = plane[inside].astype(np.float64)
    area = np.bincount(lab, minlength=n + 1)[1:]
    offsets = np.r_[0, np.cumsum(area)[:-1]]
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        integrated = np.bincount(lab, weights=val, minlength=n + 1)[1:]
        mean = integrated / area
        variance = np.maximum(np.bincount(lab, weights=val * val, minlength=n + 1)[1:] / area - mean * mean, 0)
        out.update(IntegratedIntensity=integrated, MeanIntensity=mean, StdIntensity=np.sqrt(variance))
        order = np.lexsort((val, lab))
        sorted_val = val[order]
        empty = area == 0
        safe = np.minimum(offsets, max(len(sorted_val) - 1, 0))
        out["MinIntensity"] = np.where(empty, np.nan, sorted_val[safe] if len(sorted_val) else np.nan)
        last = np.minimum(offsets + area - 1, max(len(sorted_val) - 1, 0))
        out["MaxIntensity"] = np.where(empty, np.nan, sorted_val[last] if len(sorted_val) else np.nan)

        def at(values: np.ndarray):
            return lambda r: values[np.minimum(offsets + r, max(len(values) - 1, 0))] if len(values) else r * np.nan

        for name, f in _QUANTILES.items():
            out[name] = np.where(empty, np.nan, _cp_quantile(at(sorted_val), area, f))
        median = np.r_[0.0, np.nan_to_num(out["MedianIntensity"])]
        dev = np.abs(val - median[lab])
        sorted_dev = dev[np.lexsort((dev, lab))]
        out["MADIntensity"] = np.where(empty, np.nan, _cp_quantile(at(sorted_dev), area, 0.5))
    return out


def object_intensity(plane: np.ndarray, labels: np.ndarray, n: int | None = None) -> dict[str, np.ndarray]:
    """CellProfiler ``MeasureObjectIntensity`` measurements of objects ``1..n`` in one plane.

    plane: ``(H, W)`` intensities (uint8 uses per-object histograms, any other real dtype
    sorts); labels: ``(H, W)`` non-negative int labels; n: number of objects (default
    ``labels.max()``). Returns ``{measure: (n,) float64}`` for every name in
    ``INTENSITY_MEASURES``, in grey levels (pixels for ``MassDisplacement``); objects
    absent from ``labels`` get NaN (0 for the integrated sums).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 4), np.int32)
    >>> labels[:2, :2] = 1
    >>> plane = np.arange(16, dtype=np.uint8).reshape(4, 4)
    >>> m = object_intensity(plane, labels)
    >>> float(m["IntegratedIntensity"][0]), float(m["MedianIntensity"][0])  # values 0, 1, 4, 5
    (10.0, 4.0)
    """
    if plane.shape != labels.shape:
        raise ValueError(f"plane shape {plane.shape} differs from labels shape {labels.shape}")
    labels = labels.astype(np.int64, copy=False)
    n = int(labels.max(initial=0)) if n is None else n
    if plane.dtype == np.uint8:
        hist = np.bincount((labels * 256 + plane).ravel(), minlength=(n + 1) * 256).reshape(n + 1, 256)[1:]
        out = _histogram_stats(hist, 255)
    else:
        out = _sorted_stats(plane, labels, n)
    out.update(_edge_and_displacement(plane, labels, n, out["IntegratedIntensity"]))
    return out


def _edge_and_displacement(
    plane: np.ndarray, labels: np.ndarray, n: int, integrated: np.ndarray, edge: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    edge = outline(labels) if edge is None else edge
    edge_lab = labels[edge]
    edge_val = plane[edge].astype(np.float64)
    edge_sum = np.bincount(edge_lab, weights=edge_val, minlength=n + 1)[1:]
    edge_area = np.bincount(edge_lab, minlength=n + 1)[1:]
    flat = labels.ravel()
    values = plane.ravel().astype(np.float64)
    h, w = labels.shape
    ys = np.repeat(np.arange(h, dtype=np.float64), w)
    xs = np.tile(np.arange(w, dtype=np.float64), h)
    area = np.bincount(flat, minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.bincount(flat, weights=xs, minlength=n + 1)[1:] / area
        cy = np.bincount(flat, weights=ys, minlength=n + 1)[1:] / area
        mx = np.bincount(flat, weights=xs * values, minlength=n + 1)[1:] / integrated
        my = np.bincount(flat, weights=ys * values, minlength=n + 1)[1:] / integrated
        return {
            "IntegratedIntensityEdge": edge_sum,
            "MeanIntensityEdge": edge_sum / edge_area,
            "MassDisplacement": np.hypot(mx - cx, my - cy),
        }


class _SiteIndex:
    """Per-site pixel bookkeeping shared by every channel's intensity measurements.

    Every cell pixel lies in its nucleus, its cytoplasm, or both (the nucleus's outline, which
    CellProfiler's cytoplasm keeps), so one key per foreground pixel (nucleus only i -> i, both
    i -> n + i, cytoplasm only i -> 2n + i) serves all three compartments, for histograms and
    weighted sums alike: nuclei = keys 1 + 2, cells = 1 + 2 + 3, cytoplasm = 2 + 3. ``edges``:
    per pixel, bit c set where it lies on the outline of compartment ``COMPARTMENTS[c]``; ``edge_area``: ``(3, n + 1)``
    outline pixel counts per compartment and label.
    """

    def __init__(self, masks: Masks):
        self.n = masks.n
        self.key, self.edges, self.edge_area = _site_keys(masks.nuclei, masks.cells, masks.cytoplasm, self.n)

    def split(self, sums: np.ndarray) -> dict[str, np.ndarray]:
        """Per-key sums ``(3n + 1, ...)`` -> per-compartment ``(n, ...)``."""
        n = self.n
        nucleus, both, cyto = sums[1 : n + 1], sums[n + 1 : 2 * n + 1], sums[2 * n + 1 :]
        return {"Nuclei": nucleus + both, "Cells": nucleus + both + cyto, "Cytoplasm": both + cyto}


@njit(cache=True, nogil=True)
def _site_keys(
    nuclei: np.ndarray, cells: np.ndarray, cytoplasm: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The :class:`_SiteIndex` arrays: keys ``(H, W)`` int32, outline bits ``(H, W)`` uint8, edge areas.

    Raises ``ValueError`` unless every cell pixel is in its nucleus or its cytoplasm (or both),
    with the same numbers 1..n.
    """
    h, w = nuclei.shape
    key = np.zeros((h, w), dtype=np.int32)
    edges = np.zeros((h, w), dtype=np.uint8)
    edge_area = np.zeros((3, n + 1), dtype=np.int64)
    on_outline = np.zeros((3, h, w), dtype=np.bool_)
    for c, labels in enumerate((nuclei, cells, cytoplasm)):
        mark_outline(labels, on_outline[c])
    consistent = True
    for y in range(h):
        for x in range(w):
            nucleus, cell, cyto = nuclei[y, x], cells[y, x], cytoplasm[y, x]
            consistent &= (cell == max(nucleus, cyto)) & ((nucleus == 0) | (cyto == 0) | (nucleus == cyto))
            consistent &= (nucleus >= 0) & (cyto >= 0) & (nucleus <= n) & (cyto <= n)
            key[y, x] = cyto + 2 * n if nucleus == 0 and cyto > 0 else nucleus + n * (cyto > 0)
            edges[y, x] = on_outline[0, y, x] | on_outline[1, y, x] << 1 | on_outline[2, y, x] << 2
    if not consistent:
        raise ValueError("masks: cells must be nuclei plus cytoplasm, with the same numbers 1..n")
    for y in range(h):
        for x in range(w):
            if edges[y, x]:
                label = max(nuclei[y, x], cytoplasm[y, x])
                for c in range(3):
                    edge_area[c, label] += edges[y, x] >> c & 1
    return key, edges, edge_area


@njit(cache=True, nogil=True)
def _plane_sums(
    key: np.ndarray, edges: np.ndarray, plane: np.ndarray, n: int, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over a plane: per-key histograms, position-weighted sums and outline sums.

    key, edges: as :class:`_SiteIndex`; plane: integer values; bins: 256 for a uint8 plane
    (histograms of its values), 0 for none. Returns ``hist`` ``(3n + 1, bins)`` int64,
    ``moments`` ``(2, 3n + 1)`` (sums of x * value and y * value) and ``edge`` ``(3, n + 1)``
    (value sums over each compartment's outline), float64 (exact integers; row 0 / key 0 is
    the background).
    """
    h, w = key.shape
    hist = np.zeros((3 * n + 1, bins), dtype=np.int64)
    moments = np.zeros((2, 3 * n + 1), dtype=np.float64)
    edge = np.zeros((3, n + 1), dtype=np.float64)
    for y in range(h):
        current, total, weighted = 0, 0, 0  # a run of equal keys is summed in integers, then added
        for x in range(w):
            k = key[y, x]
            v = plane[y, x]
            if k != current:
                moments[0, current] += weighted
                moments[1, current] += y * total
                current, total, weighted = k, 0, 0
            total += v
            weighted += x * v
            if bins:
                hist[k, v] += 1
            bits = edges[y, x]
            if bits:
                label = (k - 1) % n + 1
                for c in range(3):
                    if bits >> c & 1:
                        edge[c, label] += v
        moments[0, current] += weighted
        moments[1, current] += y * total
    return hist, moments, edge


def _intensity_all(
    plane: np.ndarray, masks: Masks, index: _SiteIndex, centres: dict[str, tuple]
) -> dict[str, dict[str, np.ndarray]]:
    """Intensity measurements of the three compartments of one plane (one pass over its pixels)."""
    n = index.n
    histogram = plane.dtype == np.uint8
    hist, moments, edge = _plane_sums(index.key, index.edges, plane, n, 256 if histogram else 0)
    if histogram:
        out = {name: _histogram_stats(h, 255) for name, h in index.split(hist).items()}
    else:
        out = {name: _sorted_stats(plane, labels.astype(np.int64), n) for name, labels in masks.compartments().items()}
    sx, sy = index.split(moments[0]), index.split(moments[1])
    for name, m in out.items():
        c = COMPARTMENTS.index(name)
        with np.errstate(invalid="ignore", divide="ignore"):
            m["IntegratedIntensityEdge"] = edge[c, 1:]
            m["MeanIntensityEdge"] = edge[c, 1:] / index.edge_area[c, 1:]
            mx = sx[name] / m["IntegratedIntensity"]
            my = sy[name] / m["IntegratedIntensity"]
            m["MassDisplacement"] = np.hypot(mx - centres[name][0], my - centres[name][1])
    return out


def site_intensity(
    image: np.ndarray, channels: Sequence[str], masks: Masks, centres: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Intensity measurements of every object of the three compartments, every channel.

    image: ``(C, H, W)`` uint8/uint16; channels: C names; masks: the site's :class:`Masks`
    (at least one object); centres: per compartment name the ``(x, y)`` centroids, ``(n,)``
    each, in pixels (the unweighted centroids of ``MassDisplacement``). Returns
    ``{"<Cpt>_Intensity_<Measure>_<ch>": (n,)}``, one pass over each plane's pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features.segmentation import masks_from_labels
    >>> nuclei = np.zeros((8, 8), np.int32)
    >>> nuclei[2:4, 2:4] = 1
    >>> centres = dict.fromkeys(COMPARTMENTS, (np.array([2.5]), np.array([2.5])))
    >>> m = site_intensity(np.full((1, 8, 8), 3, np.uint8), ["w1"], masks_from_labels(nuclei), centres)
    >>> float(m["Nuclei_Intensity_IntegratedIntensity_w1"][0])
    12.0
    """
    index = _SiteIndex(masks)
    out: dict[str, np.ndarray] = {}
    for plane, ch in zip(image, channels):
        for name, measures in _intensity_all(plane, masks, index, centres).items():
            for measure in INTENSITY_MEASURES:
                out[f"{name}_Intensity_{measure}_{ch}"] = measures[measure]
    return out
