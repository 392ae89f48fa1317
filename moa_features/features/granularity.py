"""Granularity spectra (CellProfiler ``MeasureGranularity``), per image and per object.

CellProfiler's algorithm with its defaults (subsampling 0.25 for the measurement and 0.25
again for the background, structuring element radius 10, spectrum length 16):

1. the plane is resampled (bilinear, as ``scipy.ndimage.map_coordinates(order=1)``) to
   ``int(0.25 * shape)`` pixels;
2. background: that image resampled again by 0.25, opened (erosion then dilation) with a
   disk of radius 10, resampled back up (bilinear; a sample whose coordinate rounds past the
   last row or column is 0, as scipy gives it), subtracted, negative values set to 0;
3. for ``k = 1..16``: the previous erosion is eroded again with the 3x3 cross, and the
   image is reconstructed by dilation (4-connected) from it under the background-subtracted
   image; ``Granularity_k = 100 (mean_{k-1} - mean_k) / mean_0`` where ``mean_k`` is the
   reconstruction's mean (``mean_0``: the background-subtracted image's mean): the percentage
   of the signal removed by opening at size ``k`` (in subsampled pixels);
4. per object, each reconstruction is resampled (bilinear) to full size and averaged over the
   object's pixels; ``mean_0`` is then
   the object's mean intensity in the original plane (not
   background-subtracted), as in CellProfiler.

Reconstruction is Vincent's hybrid algorithm (a raster and an anti-raster scan, then a queue),
exact, so the spectra equal scikit-image's ``reconstruction``. Per-object means use a
precomputed table of each object's bilinear weights on the subsampled grid, so each step
costs a pass over that table rather than over the full-size image.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from numba import njit

SPECTRUM_LENGTH = 16
SUBSAMPLE = 0.25
BACKGROUND_SAMPLE = 0.25
ELEMENT_SIZE = 10

#: The conventions above, for the feature catalogue (docs/features.md).
CONVENTIONS = __doc__

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "Image_Granularity_<k>_<ch>",
        "% of the image's signal (can be < 0)",
        "CellProfiler's granularity spectrum, k = 1..16: percentage of the background-subtracted image's mean "
        "intensity removed by a grey-scale opening (erosion then reconstruction) of size k, against size k - 1, "
        "measured on the image subsampled by 0.25 (so size k spans about 4k full-size pixels); background: opening "
        "with a disk of radius 10 at a further 0.25 subsampling.",
    ),
    (
        "<Cpt>_Granularity_<k>_<ch>",
        "% of the object's mean intensity (can be < 0)",
        "The same spectrum per object: the drop in the object's mean of the (full-size, bilinear) reconstruction "
        "from size k - 1 to k, as a percentage of the object's mean intensity in the original plane (CellProfiler's "
        "normalisation). Per object for Nuclei, Cells, Cytoplasm; per site as _Median/_Mean/_Std.",
    ),
]


@njit(cache=True, nogil=True)
def _resample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at the grid ``rows x cols`` (0 outside, as scipy's constant mode)."""
    h, w = image.shape
    out = np.zeros((rows.size, cols.size))
    for a in range(rows.size):
        r = rows[a]
        if r < 0 or r > h - 1:
            continue
        r0 = int(np.floor(r))
        fr = r - r0
        r1 = min(r0 + 1, h - 1)
        for b in range(cols.size):
            c = cols[b]
            if c < 0 or c > w - 1:
                continue
            c0 = int(np.floor(c))
            fc = c - c0
            c1 = min(c0 + 1, w - 1)
            top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
            bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
            out[a, b] = top * (1 - fr) + bottom * fr
    return out


@njit(cache=True, nogil=True)
def _grey(image: np.ndarray, radius: int, erode: bool) -> np.ndarray:
    """Grey erosion (or dilation) with a disk of ``radius`` (scikit-image's ``disk``), window clipped at the border.

    Clipping equals scikit-image's default ``reflect`` padding for a footprint symmetric and
    convex along each axis: a reflected neighbour is nearer than the one it stands for.
    """
    h, w = image.shape
    out = np.empty_like(image)
    span = np.empty(2 * radius + 1, dtype=np.int64)
    for dy in range(-radius, radius + 1):
        span[dy + radius] = int(np.floor(np.sqrt(radius * radius - dy * dy)))
    for y in range(h):
        for x in range(w):
            best = image[y, x]
            for dy in range(-radius, radius + 1):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                s = span[dy + radius]
                for xx in range(max(x - s, 0), min(x + s, w - 1) + 1):
                    v = image[yy, xx]
                    if (v < best) if erode else (v > best):
                        best = v
            out[y, x] = best
    return out


@njit(cache=True, nogil=True)
def _erode_cross(image: np.ndarray) -> np.ndarray:
    """Grey erosion with the 3x3 cross (scikit-image ``disk(1)``), window clipped at the border."""
    h, w = image.shape
    out = np.empty_like(image)
    for y in range(h):
        for x in range(w):
            best = image[y, x]
            if y > 0:
                best = min(best, image[y - 1, x])
            if y < h - 1:
                best = min(best, image[y + 1, x])
            if x > 0:
                best = min(best, image[y, x - 1])
            if x < w - 1:
                best = min(best, image[y, x + 1])
            out[y, x] = best
    return out


@njit(cache=True, nogil=True)
def reconstruct(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey reconstruction by dilation of ``seed`` under ``mask`` (4-connected; ``seed <= mask``).

    Vincent's (1993) hybrid algorithm: a raster scan, an anti-raster scan that queues pixels
    that can still raise a neighbour, then a FIFO propagation. Exact (equals scikit-image's
    ``reconstruction(seed, mask, footprint=disk(1))``).
    """
    h, w = seed.shape
    out = np.minimum(seed, mask)
    for y in range(h):
        for x in range(w):
            v = out[y, x]
            if y > 0:
                v = max(v, out[y - 1, x])
            if x > 0:
                v = max(v, out[y, x - 1])
            out[y, x] = min(v, mask[y, x])
    size = 4 * h * w
    queue = np.empty(size, dtype=np.int64)
    head, tail = 0, 0
    for y in range(h - 1, -1, -1):
        for x in range(w - 1, -1, -1):
            v = out[y, x]
            if y < h - 1:
                v = max(v, out[y + 1, x])
            if x < w - 1:
                v = max(v, out[y, x + 1])
            v = min(v, mask[y, x])
            out[y, x] = v
            if (y < h - 1 and out[y + 1, x] < v and out[y + 1, x] < mask[y + 1, x]) or (
                x < w - 1 and out[y, x + 1] < v and out[y, x + 1] < mask[y, x + 1]
            ):
                queue[tail % size] = y * w + x
                tail += 1
    while head < tail:
        p = queue[head % size]
        head += 1
        y, x = p // w, p % w
        v = out[y, x]
        for k in range(4):
            yy, xx = y + (k == 0) - (k == 1), x + (k == 2) - (k == 3)
            if yy < 0 or yy >= h or xx < 0 or xx >= w:
                continue
            if out[yy, xx] < v and out[yy, xx] != mask[yy, xx]:
                out[yy, xx] = min(v, mask[yy, xx])
                queue[tail % size] = yy * w + xx
                tail += 1
    return out


def _grid(length: int, step: float) -> np.ndarray:
    """Coordinates ``numpy.mgrid[0:length].astype(float) * step`` (CellProfiler's sample positions)."""
    return np.arange(length, dtype=np.float64) * step


def _prepared(plane: np.ndarray, subsample: float, background_sample: float, element_size: int) -> np.ndarray:
    """Steps 1-2: the subsampled, background-subtracted image (float64)."""
    image = np.asarray(plane, dtype=np.float64)
    shape = np.array(image.shape)
    if subsample < 1:
        small_shape = (shape * subsample).astype(int)
        pixels = _resample(image, _grid(small_shape[0], 1.0) / subsample, _grid(small_shape[1], 1.0) / subsample)
    else:
        small_shape, pixels = shape, image.copy()
    if background_sample < 1:
        back_shape = small_shape * background_sample
        rows = _grid(ceil(back_shape[0]), 1.0) / background_sample
        cols = _grid(ceil(back_shape[1]), 1.0) / background_sample
        back = _resample(pixels, rows, cols)
    else:
        back_shape, back = small_shape, pixels
    back = _grey(_grey(back, element_size, True), element_size, False)
    if background_sample < 1:
        rows = _grid(small_shape[0], float(back_shape[0] - 1) / float(small_shape[0] - 1))
        cols = _grid(small_shape[1], float(back_shape[1] - 1) / float(small_shape[1] - 1))
        back = _resample(back, rows, cols)
    return np.maximum(pixels - back, 0)


@njit(cache=True, nogil=True)
def _object_weights(
    labels: np.ndarray, n: int, rows: np.ndarray, cols: np.ndarray, small_h: int, small_w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each object's bilinear weights on the subsampled grid: ``(object, grid index, weight)`` rows and pixel counts.

    ``rows``/``cols``: every full-size row's and column's coordinate on the small grid. The
    weights of an object, summed per grid pixel, turn a small image into the sum of its
    full-size bilinear resampling over the object; a pixel whose coordinate lies past the
    grid gets no weight (it samples 0) but still counts.
    """
    h, w = labels.shape
    count = np.zeros(n + 1, dtype=np.int64)
    top = np.full(n + 1, small_h, dtype=np.int64)
    bottom = np.full(n + 1, -1, dtype=np.int64)
    left = np.full(n + 1, small_w, dtype=np.int64)
    right = np.full(n + 1, -1, dtype=np.int64)
    for y in range(h):
        r0 = min(int(np.floor(rows[y])), small_h - 1)
        for x in range(w):
            lab = labels[y, x]
            if lab > 0:
                count[lab] += 1
                c0 = min(int(np.floor(cols[x])), small_w - 1)
                top[lab] = min(top[lab], r0)
                bottom[lab] = max(bottom[lab], min(r0 + 1, small_h - 1))
                left[lab] = min(left[lab], c0)
                right[lab] = max(right[lab], min(c0 + 1, small_w - 1))
    offset = np.zeros(n + 2, dtype=np.int64)
    for lab in range(1, n + 1):
        size = (bottom[lab] - top[lab] + 1) * (right[lab] - left[lab] + 1) if bottom[lab] >= 0 else 0
        offset[lab + 1] = offset[lab] + size
    dense = np.zeros(offset[n + 1])
    for y in range(h):
        r = rows[y]
        if r < 0 or r > small_h - 1:
            continue
        r0 = int(np.floor(r))
        fr = r - r0
        r1 = min(r0 + 1, small_h - 1)
        for x in range(w):
            lab = labels[y, x]
            c = cols[x]
            if lab <= 0 or c < 0 or c > small_w - 1:
                continue
            c0 = int(np.floor(c))
            fc = c - c0
            c1 = min(c0 + 1, small_w - 1)
            bw = right[lab] - left[lab] + 1
            base = offset[lab]
            dense[base + (r0 - top[lab]) * bw + c0 - left[lab]] += (1 - fr) * (1 - fc)
            dense[base + (r0 - top[lab]) * bw + c1 - left[lab]] += (1 - fr) * fc
            dense[base + (r1 - top[lab]) * bw + c0 - left[lab]] += fr * (1 - fc)
            dense[base + (r1 - top[lab]) * bw + c1 - left[lab]] += fr * fc
    nnz = 0
    for i in range(dense.size):
        nnz += dense[i] != 0
    obj = np.empty(nnz, dtype=np.int64)
    idx = np.empty(nnz, dtype=np.int64)
    weight = np.empty(nnz)
    k = 0
    for lab in range(1, n + 1):
        bw = right[lab] - left[lab] + 1
        for i in range(offset[lab], offset[lab + 1]):
            if dense[i] != 0:
                local = i - offset[lab]
                obj[k] = lab - 1
                idx[k] = (top[lab] + local // bw) * small_w + left[lab] + local % bw
                weight[k] = dense[i]
                k += 1
    return obj, idx, weight, count[1:]


@njit(cache=True, nogil=True)
def _label_sums(labels: np.ndarray, plane: np.ndarray, n: int) -> np.ndarray:
    """Per label 1..n, the sum of ``plane`` over its pixels, ``(n,)`` float64."""
    out = np.zeros(n + 1)
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            out[labels[y, x]] += plane[y, x]
    return out[1:]


@njit(cache=True, nogil=True)
def _table_sums(obj: np.ndarray, idx: np.ndarray, weight: np.ndarray, image: np.ndarray, n: int) -> np.ndarray:
    """Per object, the sum over its full-size pixels of the bilinear resampling of ``image`` (flat)."""
    out = np.zeros(n)
    for k in range(obj.size):
        out[obj[k]] += weight[k] * image[idx[k]]
    return out


class GranularityObjects:
    """Per-object bilinear weight tables for :func:`granularity` (see :func:`granularity_objects`).

    ``tables``: ``{part: (object, grid index, weight, pixel counts)}``; ``labels``: ``{part: labels}``;
    ``outputs``: ``{name: parts}`` (a measured object set is the union of its parts' objects
    with the same numbers); ``n``: objects per label image; ``shape``: the full-size shape.
    """

    def __init__(self, tables: dict, labels: dict, outputs: dict, n: int, shape: tuple[int, int]):
        self.tables, self.labels, self.outputs, self.n, self.shape = tables, labels, outputs, n, shape


def granularity_objects(
    labels: dict[str, np.ndarray],
    n: int,
    subsample: float = SUBSAMPLE,
    unions: dict[str, tuple[str, ...]] | None = None,
) -> GranularityObjects:
    """The per-object tables :func:`granularity` needs, built once per site for every channel.

    Parameters
    ----------
    labels : dict
        ``{name: (H, W) int labels 1..n}``, all one shape.
    n : int
        Number of objects.
    subsample : float
        CellProfiler's subsampling factor (as given to :func:`granularity`).
    unions : dict, optional
        Further object sets measured as unions of disjoint label images, e.g.
        ``{"Cells": ("Nuclei", "Rest")}`` with ``Rest`` the cells without their nuclei: their sums
        come from the parts' (no own table). The parts must not overlap (CellProfiler's
        cytoplasm keeps the nuclear rim, so it is not such a part).
    """
    shapes = {np.shape(v) for v in labels.values()}
    if len(shapes) != 1:
        raise ValueError(f"label images must share one shape, got {sorted(shapes)}")
    unions = dict(unions or {})
    for name, parts in unions.items():
        missing = [p for p in parts if p not in labels]
        if missing:
            raise ValueError(f"union {name!r}: parts {missing} are not among the label images {list(labels)}")
    shape = shapes.pop()
    small = (np.array(shape) * subsample).astype(int) if subsample < 1 else np.array(shape)
    rows = _grid(shape[0], float(small[0] - 1) / float(shape[0] - 1))
    cols = _grid(shape[1], float(small[1] - 1) / float(shape[1] - 1))
    prepared = {name: np.ascontiguousarray(lab).astype(np.int32, copy=False) for name, lab in labels.items()}
    tables = {name: _object_weights(lab, n, rows, cols, small[0], small[1]) for name, lab in prepared.items()}
    outputs = {name: (name,) for name in labels} | unions
    return GranularityObjects(tables, prepared, outputs, n, shape)


def granularity(
    plane: np.ndarray,
    objects: GranularityObjects | None = None,
    spectrum_length: int = SPECTRUM_LENGTH,
    subsample: float = SUBSAMPLE,
    background_sample: float = BACKGROUND_SAMPLE,
    element_size: int = ELEMENT_SIZE,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """CellProfiler's granularity spectrum of one plane, for the image and (optionally) per object.

    Parameters
    ----------
    plane : (H, W) array
        Intensities (any real dtype; the spectra are percentages, so units cancel).
    objects : GranularityObjects, optional
        From :func:`granularity_objects` (built with the same ``subsample``).
    spectrum_length, subsample, background_sample, element_size
        CellProfiler's settings (defaults: 16, 0.25, 0.25, 10).

    Returns
    -------
    (image, per_object)
        ``image``: ``(spectrum_length,)`` float64 (percent); ``per_object``:
        ``{name: (n, spectrum_length)}`` for each label image and union of ``objects`` (empty
        without); NaN for an object without pixels.

    Examples
    --------
    >>> import numpy as np
    >>> plane = np.zeros((64, 64))
    >>> plane[::8, ::8] = 1.0  # isolated bright pixels: all signal gone at size 1
    >>> spectrum, _ = granularity(plane, subsample=1.0, background_sample=1.0, spectrum_length=3)
    >>> spectrum.round(3).tolist()
    [100.0, 0.0, 0.0]
    """
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"plane must be 2-D (H, W), got shape {plane.shape}")
    if objects is not None and objects.shape != plane.shape:
        raise ValueError(f"objects were prepared for shape {objects.shape}, plane has shape {plane.shape}")
    pixels = _prepared(plane, subsample, background_sample, element_size)
    start = float(pixels.mean())
    current, start = start, max(start, np.finfo(float).eps)
    per_object: dict[str, np.ndarray] = {}
    if objects is not None:
        values = np.asarray(plane, dtype=np.float64)
        sums = {name: _label_sums(lab, values, objects.n) for name, lab in objects.labels.items()}
        counts = {name: table[3].astype(np.float64) for name, table in objects.tables.items()}
        previous, first = {}, {}
        for name, parts in objects.outputs.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                previous[name] = sum(sums[p] for p in parts) / sum(counts[p] for p in parts)
            first[name] = np.maximum(previous[name], np.finfo(float).eps)
            per_object[name] = np.empty((objects.n, spectrum_length))
    spectrum = np.empty(spectrum_length)
    eroded = pixels
    for k in range(spectrum_length):
        eroded = _erode_cross(eroded)
        rec = reconstruct(eroded, pixels)
        mean = float(rec.mean())
        spectrum[k] = (current - mean) * 100 / start
        current = mean
        if objects is not None:
            flat_rec = rec.ravel()
            sums = {name: _table_sums(t[0], t[1], t[2], flat_rec, objects.n) for name, t in objects.tables.items()}
            for name, parts in objects.outputs.items():
                with np.errstate(invalid="ignore", divide="ignore"):
                    new = sum(sums[p] for p in parts) / sum(counts[p] for p in parts)
                per_object[name][:, k] = (previous[name] - new) * 100 / first[name]
                previous[name] = new
    return spectrum, per_object
