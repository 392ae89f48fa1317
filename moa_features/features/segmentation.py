"""Segmentation: label masks of nuclei, cells and cytoplasm, a step of its own.

Measurements take these masks as input (as cp-measure does), so a user can bring their own
(e.g. from Cellpose, through ``ObjectsFileName_Nuclei``-style LoadData columns).

1. :func:`segment_nuclei` on the nuclear (Hoechst/DAPI) channel: Gaussian smoothing,
   global threshold (Otsu, or minimum cross-entropy) of the raw plane applied to the
   smoothed plane (CellProfiler's order, which reproduces its nuclei), hole filling, removal of small
   objects, then touching nuclei are split by a watershed on the Euclidean distance
   transform seeded at its regional maxima, followed by a merge of fragments joined by a
   wide neck (relative to the fragment's own radius, so it holds at any magnification).
2. Cells on the cell-body channel (actin/phalloidin by default), by one of two methods:

   - ``propagation`` (the default; :func:`propagate_cells`): CellProfiler's
     IdentifySecondaryObjects, method Propagation (Jones et al. 2005,
     :mod:`~moa_features.features.propagation`): the foreground is the cell plane (on the
     0..1 scale) at or above 0.8 times its threshold (the same method as the nuclei's, from
     the raw plane, as CellProfiler's ExampleHuman pipeline sets it), seeds are the kept
     nuclei and every nucleus touching the border (CellProfiler's seeds: so a kept cell
     never spreads into a border neighbour's territory), regularisation lambda 0.05, then
     each cell's holes are filled;
   - ``watershed`` (:func:`segment_cells`): seeded watershed of the smoothed channel's
     gradient magnitude (quantised to 65,536 levels for the bucket-queue
     :func:`~moa_features.features.watershed.watershed`), seeds = all nuclei, foreground = a
     fraction of the Otsu threshold of the cell channel, union the nuclei.
3. :func:`filter_objects`: as CellProfiler's IdentifyPrimaryObjects, nuclei outside a
   diameter range and nuclei touching the image border are discarded (with their cells), and
   the survivors are renumbered 1..n; cell ``i`` holds nucleus ``i``.
4. Cytoplasm ``i`` = cell ``i`` minus nucleus ``i`` shrunk by its outline (CellProfiler's
   IdentifyTertiaryObjects default): the nucleus's rim belongs to the cytoplasm as well.

Smoothing, hole filling, the distance transform (:mod:`~moa_features.features.filters`) and the watershed
(:mod:`~moa_features.features.watershed`) are compiled kernels, each tested against SciPy's or
scikit-image's function, for the per-site speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.filters import sobel, threshold_li, threshold_otsu
from skimage.morphology import local_maxima

from moa_features.features.filters import fill_holes, fill_label_holes, gaussian, squared_distance
from moa_features.features.outline import shrink_outline
from moa_features.features.propagation import propagate
from moa_features.features.watershed import watershed

THRESHOLDS: tuple[str, ...] = ("otsu", "li")
CELL_METHODS: tuple[str, ...] = ("propagation", "watershed")
COMPARTMENTS: tuple[str, ...] = ("Nuclei", "Cells", "Cytoplasm")


@dataclass(frozen=True)
class Masks:
    """Label masks of one site, 0 = background.

    ``cells`` label ``i`` contains ``nuclei`` label ``i``; ``cytoplasm`` is ``cells`` minus
    the inside of ``nuclei`` (same numbers; the nucleus's outline pixels belong to both, as
    in CellProfiler). ``n`` is the number of objects (labels ``1..n``).

    Parameters
    ----------
    nuclei, cells, cytoplasm : ndarray of int32, shape (H, W)
        Label images of the three compartments.
    """

    nuclei: np.ndarray
    cells: np.ndarray
    cytoplasm: np.ndarray

    @property
    def n(self) -> int:
        return int(self.nuclei.max(initial=0))

    def compartments(self) -> dict[str, np.ndarray]:
        """``{"Nuclei": ..., "Cells": ..., "Cytoplasm": ...}`` in CellProfiler's naming."""
        return dict(zip(COMPARTMENTS, (self.nuclei, self.cells, self.cytoplasm)))


def _threshold(smoothed: np.ndarray, method: str) -> float:
    if method == "otsu":
        return float(threshold_otsu(smoothed))
    if method == "li":
        return float(threshold_li(smoothed))
    raise ValueError(f"threshold must be one of {THRESHOLDS}, got {method!r}")


def _raw_threshold(plane: np.ndarray, method: str) -> float:
    """The threshold of the raw plane, to cut its smoothed copy (as CellProfiler does).

    Where the plane's grey values around the threshold are contiguous (real images), the
    threshold is used as it is: CellProfiler's nuclei are reproduced. Where it falls in an
    empty stretch of the histogram (e.g. a two-valued plane, whose Otsu threshold sits just
    above the lower value), the cut moves to the middle of that stretch, so objects keep
    their size once smoothed; both cut the raw plane identically.
    """
    plane = np.asarray(plane)
    if plane.dtype in (np.uint8, np.uint16):
        counts = np.bincount(plane.ravel())
        present = np.flatnonzero(counts)
        if method == "otsu" and present.size > 1:  # the histogram skimage would build, built once
            lo, hi = present[0], present[-1]
            t = float(threshold_otsu(hist=(counts[lo : hi + 1], np.arange(lo, hi + 1))))
        else:
            t = _threshold(plane, method)
        lower_values, upper_values = present[present <= t], present[present > t]
    else:
        values = plane.astype(np.float32, copy=False)
        t = _threshold(values, method)
        above = values > t
        lower_values, upper_values = values[~above], values[above]
    if not lower_values.size or not upper_values.size:
        return t
    lower, upper = float(lower_values.max()), float(upper_values.min())
    return t if upper - lower <= 1 else (lower + upper) / 2


def _scaled_otsu(plane: np.ndarray) -> float:
    """``threshold_otsu(plane / max)`` of a uint8/uint16 plane (``max`` its dtype's maximum), from its
    grey-level counts.

    scikit-image histograms the scaled plane into 256 equal bins over its range; the grey
    levels present, weighted by their pixel counts, fall into the same bins (the bin of a value
    does not depend on the other values), so the histogram, and the threshold, are the same,
    without a pass over a million floats.
    """
    counts = np.bincount(plane.ravel())
    present = np.flatnonzero(counts)
    values = present / float(np.iinfo(plane.dtype).max)
    hist, edges = np.histogram(values, bins=256, weights=counts[present])
    return float(threshold_otsu(hist=(hist, (edges[:-1] + edges[1:]) / 2.0)))


def check_plane(plane: np.ndarray, name: str) -> np.ndarray:
    """``plane`` as an ndarray, or ``ValueError`` naming ``name`` unless it is 2-D ``(H, W)``.

    Parameters
    ----------
    plane : array_like, shape (H, W)
        The plane to check.
    name : str
        What the plane is, for the error message.

    Returns
    -------
    ndarray, shape (H, W)
        ``plane`` as an array.

    Raises
    ------
    ValueError
        If ``plane`` is not 2-D.

    Examples
    --------
    >>> check_plane([[1, 2]], "labels").shape
    (1, 2)
    """
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (H, W) array, got shape {plane.shape}")
    return plane


def _relabel(labels: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Apply a label lookup table (``mapping[0]`` must be 0); returns int32 labels."""
    return mapping.astype(np.int32, copy=False)[labels]


def _merge_wide_necks(fragments: np.ndarray, squared: np.ndarray, neck_ratio: float) -> np.ndarray:
    """Merge adjacent watershed fragments that are not separated by a real neck.

    Two 4-adjacent fragments ``a``, ``b`` are merged when the highest distance-transform
    value on their shared border (the neck half-width) is at least ``neck_ratio`` times the
    smaller of their peak distance values (inscribed radii). Merging is transitive
    (connected components of the merge graph); output labels are sequential, int32.
    ``squared``: the squared distance transform (the square root, monotone, is taken of the
    peaks and necks only: the same values as of the whole image).
    """
    n = int(fragments.max())
    if n == 0:
        return fragments.astype(np.int32, copy=False)
    fragments = np.ascontiguousarray(fragments, dtype=np.int32)
    peak, key, value = _neck_pairs(fragments, np.ascontiguousarray(squared, dtype=np.float64), n)
    peak = np.sqrt(peak)
    order = np.argsort(key, kind="stable")
    key, value = key[order], value[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, dtype=np.int64)
    neck = np.sqrt(np.maximum.reduceat(value, starts)) if key.size else np.zeros(0)
    la, lb = np.divmod(key[starts], n + 1)
    merge = neck >= neck_ratio * np.minimum(peak[la], peak[lb])
    graph = coo_matrix((np.ones(int(merge.sum())), (la[merge], lb[merge])), shape=(n + 1, n + 1))
    _, component = connected_components(graph, directed=False)
    # Number the merged objects 1..k in order of their lowest fragment label.
    present = np.flatnonzero(peak > 0)
    _, merged = np.unique(component[present], return_inverse=True)
    mapping = np.zeros(n + 1, dtype=np.int32)
    mapping[present] = merged + 1
    return _relabel(fragments, mapping)


@njit(cache=True, nogil=True)
def _neck_pairs(fragments, squared, n):  # pragma: no cover - compiled
    """Per fragment the largest squared distance, and per 4-adjacent pixel pair of two fragments
    ``a != b`` (both > 0) the key ``min * (n + 1) + max`` and the smaller squared distance."""
    h, w = fragments.shape
    peak = np.zeros(n + 1)
    count = 0
    for y in range(h):
        for x in range(w):
            a = fragments[y, x]
            if a > 0:
                peak[a] = max(peak[a], squared[y, x])
                if x + 1 < w and fragments[y, x + 1] > 0 and fragments[y, x + 1] != a:
                    count += 1
                if y + 1 < h and fragments[y + 1, x] > 0 and fragments[y + 1, x] != a:
                    count += 1
    key = np.empty(count, np.int64)
    value = np.empty(count, np.float64)
    k = 0
    for y in range(h):
        for x in range(w):
            a = fragments[y, x]
            if a == 0:
                continue
            for yy, xx in ((y, x + 1), (y + 1, x)):
                if yy < h and xx < w:
                    b = fragments[yy, xx]
                    if b > 0 and b != a:
                        key[k] = np.int64(min(a, b)) * (n + 1) + max(a, b)
                        value[k] = min(squared[y, x], squared[yy, xx])
                        k += 1
    return peak, key, value


def segment_nuclei(
    nuclear: np.ndarray,
    sigma: float = 1.0,
    min_nucleus_area: int = 16,
    min_area_fraction: float = 0.15,
    neck_ratio: float = 0.85,
    threshold: str = "otsu",
) -> np.ndarray:
    """Label nuclei in a nuclear-stain plane.

    The plane is smoothed with a Gaussian of ``sigma`` pixels; the threshold is computed on the
    **raw** plane and applied to the smoothed one (CellProfiler's order, which reproduces its
    nuclei; where the raw threshold falls in an empty stretch of the histogram, e.g. a
    two-valued plane, the cut moves to the middle of that stretch). Holes are filled, then
    objects smaller than ``max(min_nucleus_area, min_area_fraction * median object area)``
    pixels are removed: the relative term follows the magnification (RxRx 512x512 nuclei are
    ~80-500 px², full-size 1024x1024 ~4x that), the absolute one guards sites with only
    debris. Touching nuclei are split by a watershed of the distance transform from its
    regional maxima; fragments whose shared neck is at least ``neck_ratio`` times the smaller
    fragment's inscribed radius are merged back.

    Parameters
    ----------
    nuclear : ndarray, shape (H, W)
        The nuclear channel, any real dtype.
    sigma : float, default 1.0
        Gaussian smoothing in pixels.
    min_nucleus_area : int, default 16
        Smallest nucleus kept, in pixels.
    min_area_fraction : float, default 0.15
        Smallest nucleus kept, as a fraction of the median object area.
    neck_ratio : float, default 0.85
        Fragments whose neck half-width is at least this fraction of the smaller one's
        inscribed radius are merged.
    threshold : {"otsu", "li"}, default "otsu"
        Global threshold method: Otsu, or minimum cross-entropy (CellProfiler's default in its
        example pipelines).

    Returns
    -------
    ndarray of int32, shape (H, W)
        Labels, 0 = background, nuclei numbered 1..n (deterministic order); all 0 for a
        constant plane.

    Raises
    ------
    ValueError
        If ``nuclear`` is not 2-D or ``threshold`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> plane = np.zeros((64, 64), np.uint8)
    >>> plane[10:20, 10:20] = plane[40:52, 30:44] = 200
    >>> int(segment_nuclei(plane).max())
    2
    """
    nuclear = check_plane(nuclear, "nuclear channel")
    smoothed = gaussian(nuclear, sigma)
    if not smoothed.size or smoothed.max() <= smoothed.min():
        return np.zeros(nuclear.shape, dtype=np.int32)
    foreground = fill_holes(smoothed > _raw_threshold(nuclear, threshold))
    components, n = ndi.label(foreground)
    if n == 0:
        return np.zeros(nuclear.shape, dtype=np.int32)
    area = np.bincount(components.ravel(), minlength=n + 1)
    keep = area >= max(min_nucleus_area, min_area_fraction * np.median(area[1:]))
    keep[0] = False
    if not keep.any():
        return np.zeros(nuclear.shape, dtype=np.int32)
    # Dropping components keeps the raster order of the others: relabel them 1..n.
    components = _relabel(components, np.where(keep, np.cumsum(keep), 0))
    n = int(keep.sum())
    foreground = components > 0
    # Exact Euclidean distance to the background (Otsu always leaves some background), squared.
    squared = squared_distance(foreground)
    peaks = local_maxima(squared, connectivity=2, allow_borders=True) & foreground
    markers, n_markers = ndi.label(peaks, structure=np.ones((3, 3), dtype=bool))
    # Only components holding several maxima need the watershed (most hold one).
    n_peaks = np.bincount(components[markers > 0], minlength=n + 1)
    clumped = (n_peaks > 1)[components]
    # Flood down the distance transform: levels = max - squared distance (integers, same order).
    top = squared.max()
    fragments = watershed((top - squared).astype(np.int32), np.where(clumped, markers, 0), mask=clumped)
    single = foreground & ~clumped
    fragments[single] = components[single] + n_markers
    return _merge_wide_necks(fragments, squared, neck_ratio)


def segment_cells(
    cell: np.ndarray,
    nuclei: np.ndarray,
    sigma: float = 1.0,
    threshold_factor: float = 0.5,
) -> np.ndarray:
    """Label cells by a watershed seeded with the nuclei.

    The landscape is the gradient magnitude (Sobel) of the cell plane smoothed with ``sigma``
    pixels; the foreground is the smoothed plane above ``threshold_factor`` times its Otsu
    threshold, union the nuclei.

    Parameters
    ----------
    cell : ndarray, shape (H, W)
        Cell-body stain (actin, membrane), any real dtype.
    nuclei : ndarray of int, shape (H, W)
        Nucleus labels (from :func:`segment_nuclei`).
    sigma : float, default 1.0
        Gaussian smoothing in pixels.
    threshold_factor : float, default 0.5
        Foreground threshold as a fraction of the smoothed plane's Otsu threshold.

    Returns
    -------
    ndarray of int32, shape (H, W)
        Cell ``i`` contains nucleus ``i``; foreground unreachable from any nucleus stays 0.

    Raises
    ------
    ValueError
        If the inputs are not 2-D or their shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> nuclei = np.zeros((32, 32), np.int32)
    >>> nuclei[10:14, 10:14] = 1
    >>> cell = np.zeros((32, 32), np.uint8)
    >>> cell[6:18, 6:18] = 100
    >>> cells = segment_cells(cell, nuclei)
    >>> bool((cells[nuclei == 1] == 1).all()), int((cells == 1).sum()) > 16
    (True, True)
    """
    cell = check_plane(cell, "cell channel")
    nuclei = check_plane(nuclei, "nuclei labels")
    if cell.shape != nuclei.shape:
        raise ValueError(f"cell channel shape {cell.shape} differs from nuclei labels shape {nuclei.shape}")
    nuclei = nuclei.astype(np.int32, copy=False)
    if not nuclei.any():
        return np.zeros(cell.shape, dtype=np.int32)
    smoothed = gaussian(cell, sigma)
    foreground = nuclei > 0
    if smoothed.max() > smoothed.min():
        foreground |= smoothed > threshold_factor * threshold_otsu(smoothed)
    # Nucleus pixels whose 4 neighbours are all labelled or outside the mask never grow a
    # cell; leaving them out of the flood (and back in afterwards) gives the same labels
    # with a much smaller priority queue.
    settled = np.pad(foreground & (nuclei == 0), 1)
    inner = (nuclei > 0) & ~(settled[:-2, 1:-1] | settled[2:, 1:-1] | settled[1:-1, :-2] | settled[1:-1, 2:])
    cells = watershed(_quantise(sobel(smoothed)), np.where(inner, 0, nuclei), mask=foreground & ~inner)
    cells[inner] = nuclei[inner]
    return cells.astype(np.int32, copy=False)


def propagate_cells(
    cell: np.ndarray,
    seeds: np.ndarray,
    threshold: str = "otsu",
    regularization: float = 0.05,
    threshold_factor: float = 0.8,
) -> np.ndarray:
    """Label cells by CellProfiler's Propagation from seed nuclei (IdentifySecondaryObjects).

    Parameters
    ----------
    cell : ndarray, shape (H, W)
        Cell-body stain, uint8/uint16 (scaled to 0..1 by the dtype's maximum, as CellProfiler
        reads it) or float already on that scale.
    seeds : ndarray of int, shape (H, W)
        Seed labels (nuclei), 0 = none.
    threshold : {"otsu", "li"}
        Global threshold method of the cell plane (minimum cross-entropy is ``"li"``).
    regularization : float
        lambda of :func:`~moa_features.features.propagation.propagate` (CellProfiler's 0.05).
    threshold_factor : float
        Correction factor of the threshold (the foreground is ``plane >= factor * threshold``).

    Returns
    -------
    ndarray of int32, shape (H, W)
        Cell labels: each seed's label spread over the foreground it reaches first, holes
        enclosed by one cell filled; every seed keeps its own pixels.

    Examples
    --------
    >>> import numpy as np
    >>> seeds = np.zeros((32, 32), np.int32)
    >>> seeds[10:14, 10:14] = 1
    >>> cell = np.zeros((32, 32), np.uint8)
    >>> cell[6:18, 6:18] = 100
    >>> int((propagate_cells(cell, seeds) == 1).sum())
    144
    """
    cell = check_plane(cell, "cell channel")
    seeds = check_plane(seeds, "seed labels")
    if cell.shape != seeds.shape:
        raise ValueError(f"cell channel shape {cell.shape} differs from seed labels shape {seeds.shape}")
    if np.issubdtype(cell.dtype, np.integer):
        scaled = cell / float(np.iinfo(cell.dtype).max)
    else:
        scaled = cell.astype(np.float64, copy=False)
    if scaled.size and scaled.max() > scaled.min():
        if threshold == "otsu" and cell.dtype in (np.uint8, np.uint16):
            level = _scaled_otsu(cell)
        else:
            level = _threshold(scaled, threshold)
        foreground = scaled >= threshold_factor * level
    else:
        foreground = np.zeros(cell.shape, dtype=bool)
    labels, _ = propagate(scaled, seeds, foreground, regularization)
    return fill_label_holes(labels)


def _quantise(landscape: np.ndarray, levels: int = 1 << 16) -> np.ndarray:
    """A non-negative float landscape as ``levels`` integer levels over ``[0, max]`` (order kept
    up to ties within ``max / levels``), for the bucket-queue :func:`watershed`."""
    top = float(landscape.max(initial=0))
    scale = (levels - 1) / top if top > 0 else 0.0
    return np.rint(landscape * scale).astype(np.uint16 if levels <= 1 << 16 else np.int64)


def filter_objects(
    nuclei: np.ndarray,
    cells: np.ndarray | None = None,
    *,
    exclude_border: bool = True,
    min_diameter: float | None = None,
    max_diameter: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Discard nuclei (and their cells) touching the border or outside a diameter range.

    As CellProfiler's IdentifyPrimaryObjects. Diameters are equivalent-circle diameters
    ``sqrt(4 * area / pi)``; a nucleus touches the border when one of its pixels lies on the
    first/last row or column.

    Parameters
    ----------
    nuclei : ndarray of int, shape (H, W)
        Nucleus labels.
    cells : ndarray of int, shape (H, W), optional
        Cell labels, cell ``i`` holding nucleus ``i``.
    exclude_border : bool, default True
        Discard nuclei touching the border.
    min_diameter, max_diameter : float, optional
        Diameter limits in pixels (CellProfiler's "typical diameter"); ``None``: no limit.

    Returns
    -------
    nuclei : ndarray of int32, shape (H, W)
        The survivors, renumbered 1..n in their old order.
    cells : ndarray of int32, shape (H, W), or None
        Relabelled like ``nuclei``; ``None`` if not given.

    Examples
    --------
    >>> import numpy as np
    >>> nuclei = np.zeros((20, 20), np.int32)
    >>> nuclei[0:4, 0:4] = 1
    >>> nuclei[8:12, 8:12] = 2
    >>> kept, _ = filter_objects(nuclei)
    >>> int(kept.max()), int(kept[9, 9])
    (1, 1)
    """
    nuclei = check_plane(nuclei, "nuclei labels").astype(np.int32, copy=False)
    n = int(nuclei.max(initial=0))
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    if n and (min_diameter is not None or max_diameter is not None):
        diameter = np.sqrt(4 * np.bincount(nuclei.ravel(), minlength=n + 1) / np.pi)
        if min_diameter is not None:
            keep &= diameter >= min_diameter
        if max_diameter is not None:
            keep &= diameter <= max_diameter
    if n and exclude_border:
        keep[np.concatenate([nuclei[0], nuclei[-1], nuclei[:, 0], nuclei[:, -1]])] = False
        keep[0] = False
    mapping = np.where(keep, np.cumsum(keep), 0)
    if cells is not None:
        cells = _relabel(check_plane(cells, "cell labels"), mapping)
    return _relabel(nuclei, mapping), cells


def segment(
    image: np.ndarray,
    nuclear_channel: int = 0,
    cell_channel: int = 2,
    *,
    exclude_border: bool = True,
    min_diameter: float | None = None,
    max_diameter: float | None = None,
    threshold: str = "otsu",
    cells: str = "propagation",
    regularization: float = 0.05,
) -> Masks:
    """Segment one site into nuclei, cells and cytoplasm.

    Nuclei by :func:`segment_nuclei` (``threshold`` method), then :func:`filter_objects`
    (``exclude_border``, diameter limits). Cells (``cells``): ``"propagation"``
    (:func:`propagate_cells`, the same threshold method, lambda ``regularization``) seeded
    with the kept nuclei and the nuclei touching the border, or ``"watershed"``
    (:func:`segment_cells`) grown from every nucleus; cells of discarded nuclei are dropped.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site.
    nuclear_channel, cell_channel : int, default 0 and 2
        Plane indices of the nuclear and the cell-body stain.
    exclude_border : bool, default True
        Discard objects whose nucleus touches the image border.
    min_diameter, max_diameter : float, optional
        Nucleus diameter limits in pixels; ``None``: no limit.
    threshold : {"otsu", "li"}, default "otsu"
        Threshold method of :func:`segment_nuclei` (and of the cell channel with propagation).
    cells : {"propagation", "watershed"}, default "propagation"
        Secondary segmentation: CellProfiler's IdentifySecondaryObjects Propagation, or a
        seeded watershed.
    regularization : float, default 0.05
        Propagation's lambda (weight of spatial distance against image gradient).

    Returns
    -------
    Masks
        The site's nuclei, cells and cytoplasm, ``(H, W)`` int32 each.

    Raises
    ------
    ValueError
        If the image is not ``(C, H, W)`` uint8/uint16 or a channel index is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((3, 64, 64), np.uint8)
    >>> image[0, 20:30, 20:30] = 200
    >>> image[2, 15:35, 15:35] = 90
    >>> masks = segment(image)
    >>> masks.n, int((masks.cells == 1).sum())
    (1, 400)
    """
    image = check_image(image)
    for name, index in (("nuclear_channel", nuclear_channel), ("cell_channel", cell_channel)):
        if not 0 <= index < image.shape[0]:
            raise ValueError(f"{name}={index} is outside the image's {image.shape[0]} channels")
    if cells not in CELL_METHODS:
        raise ValueError(f"cells must be one of {CELL_METHODS}, got {cells!r}")
    nuclei = segment_nuclei(image[nuclear_channel], threshold=threshold)
    options = {"exclude_border": exclude_border, "min_diameter": min_diameter, "max_diameter": max_diameter}
    if cells == "watershed":
        nuclei, cell_labels = filter_objects(nuclei, segment_cells(image[cell_channel], nuclei), **options)
        return masks_from_labels(nuclei, cell_labels)
    kept, _ = filter_objects(nuclei, **options)
    # Seeds (CellProfiler's): the kept nuclei and every nucleus touching the border, under their
    # labels before filtering (so the order of equally near seeds does not depend on the filter).
    to_kept = np.zeros(int(nuclei.max(initial=0)) + 1, dtype=np.int32)
    to_kept[nuclei[kept > 0]] = kept[kept > 0]
    seed = to_kept > 0
    seed[np.concatenate([nuclei[0], nuclei[-1], nuclei[:, 0], nuclei[:, -1]])] = True
    seed[0] = False
    grown = propagate_cells(image[cell_channel], np.where(seed[nuclei], nuclei, 0), threshold, regularization)
    return masks_from_labels(kept, to_kept[grown])


def masks_from_labels(nuclei: np.ndarray, cells: np.ndarray | None = None) -> Masks:
    """:class:`Masks` from given nucleus (and cell) labels, e.g. a user's own segmentation.

    Labels are kept as given (absent numbers give empty objects); nucleus pixels belong to
    their own cell. The cytoplasm is CellProfiler's IdentifyTertiaryObjects with its default
    "shrink smaller object prior to subtraction": the cell minus its nucleus shrunk by the
    nucleus's outline (:func:`~moa_features.features.outline.shrink_outline`), so the nuclear
    rim belongs to both.

    Parameters
    ----------
    nuclei : ndarray of int, shape (H, W)
        Non-negative nucleus labels.
    cells : ndarray of int, shape (H, W), optional
        Cell labels whose label ``i`` holds nucleus ``i``; ``None``: cells = nuclei (an empty
        cytoplasm).

    Returns
    -------
    Masks
        int32 labels.

    Raises
    ------
    ValueError
        If the labels are not 2-D non-negative integers, their shapes differ, or a cell label
        exceeds the largest nucleus label.

    Examples
    --------
    >>> import numpy as np
    >>> nuclei = np.zeros((8, 8), np.int32)
    >>> nuclei[2:4, 2:4] = 1
    >>> cells = np.zeros((8, 8), np.int32)
    >>> cells[1:6, 1:6] = 1
    >>> int(masks_from_labels(nuclei, cells).cytoplasm.sum())  # 25 - 4 cell pixels, + the 4 rim pixels
    25
    """
    nuclei = _check_labels(nuclei, "nuclei labels")
    given_cells = cells
    cells = nuclei.copy() if cells is None else _check_labels(cells, "cell labels")
    if cells.shape != nuclei.shape:
        raise ValueError(f"cell labels shape {cells.shape} differs from nuclei labels shape {nuclei.shape}")
    n = int(nuclei.max(initial=0))
    if cells.size and int(cells.max()) > n:
        raise ValueError(
            f"cell labels go up to {int(cells.max())} but there are {n} nuclei: cell i must hold nucleus i "
            "(number each cell after its nucleus, e.g. CellProfiler's RelateObjects)"
        )
    cells = np.where(nuclei > 0, nuclei, cells)
    if given_cells is None:
        return Masks(nuclei=nuclei, cells=cells, cytoplasm=np.zeros_like(cells))
    return Masks(nuclei=nuclei, cells=cells, cytoplasm=np.where((nuclei > 0) & ~shrink_outline(nuclei), 0, cells))


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = check_plane(labels, name)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name}: expected non-negative integer labels")
    return labels.astype(np.int32, copy=False)


def check_image(image: np.ndarray, channels=None, dtypes: tuple = (np.uint8, np.uint16)) -> np.ndarray:
    """Validate a ``(C, H, W)`` image (the one shape check of every feature family).

    Parameters
    ----------
    image : array_like, shape (C, H, W)
        One site.
    channels : sequence of str, optional
        Channel names whose count must equal C.
    dtypes : tuple of dtype, default (uint8, uint16)
        Accepted dtypes; ``None``: any.

    Returns
    -------
    ndarray, shape (C, H, W)
        The image as an ndarray.

    Raises
    ------
    ValueError
        Naming the expected and the actual shape or dtype.

    Examples
    --------
    >>> import numpy as np
    >>> check_image(np.zeros((2, 4, 4), np.uint8), ["w1", "w2"]).shape
    (2, 4, 4)
    """
    image = np.asarray(image)
    n = "C" if channels is None else f"C={len(channels)}"
    if image.ndim != 3 or (channels is not None and image.shape[0] != len(channels)):
        raise ValueError(f"expected a (C, H, W) image with {n} channels, got shape {image.shape}")
    if dtypes is not None and image.dtype not in dtypes:
        names = " or ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"expected a {names} image, got dtype {image.dtype}")
    return image
