"""Propagation: CellProfiler's secondary segmentation (IdentifySecondaryObjects, method Propagation).

Jones, Carpenter and Golland (2005), "Voronoi-based segmentation of cells on image manifolds":
labels spread from seed objects (nuclei) over the foreground by Dijkstra's algorithm, each
pixel taking the label of the seed that is nearest in a metric mixing image and plane distance.
The step from a pixel ``p`` to an 8-neighbour ``q`` costs::

    sqrt(g(p, q)² + lambda² * (|dy| + |dx|)),   g(p, q) = sum over the 3x3 offsets d of |I(p + d) - I(q + d)|

(``I`` clamped at the image border; ``lambda``, the regularisation factor, weighs plane distance
against image differences: CellProfiler's default 0.05, for intensities on its 0..1 scale).
The definition, the order in which pixels are taken (a binary heap keyed by the distance with
its lowest mantissa bit dropped, then label, row, column, started from the seeds in raster
order) and so the final labels are those of CellProfiler's own implementation,
``centrosome.propagate.propagate`` (checked pixel for pixel in
``tests/test_features_propagation.py``); the kernel is compiled (numba).

The kernel is bound by memory latency, not arithmetic: consecutive pixels taken from the heap
lie far apart (every cell grows at once), so each one's neighbourhood is fetched from memory.
While a pixel is processed, the neighbourhood of the next one (the heap's new root) is
prefetched (:func:`prefetch`), which hides most of that latency without changing any result.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


def propagate(
    image: np.ndarray, seeds: np.ndarray, mask: np.ndarray, regularization: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Spread ``seeds`` over ``mask`` by the Propagation metric on ``image``.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Intensities (float; CellProfiler passes them on its 0..1 scale).
    seeds : ndarray of int, shape (H, W)
        Seed labels, 0 = none. Seeds outside ``mask`` keep their label but do not spread.
    mask : ndarray of bool, shape (H, W)
        Pixels that may be labelled.
    regularization : float
        lambda, the weight of plane distance (pixels) against image differences; >= 0.

    Returns
    -------
    labels : ndarray of int32, shape (H, W)
        Each reached pixel's label; 0 where no seed reaches.
    distances : ndarray of float64, shape (H, W)
        The Propagation distance to the nearest seed; -1 where no seed reaches.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((1, 7))
    >>> image[0, 3] = 1.0  # a bright ridge between two seeds
    >>> seeds = np.array([[1, 0, 0, 0, 0, 0, 2]])
    >>> propagate(image, seeds, np.ones((1, 7), bool))[0].tolist()
    [[1, 1, 1, 1, 2, 2, 2]]
    """
    image, seeds, mask = np.asarray(image), np.asarray(seeds), np.asarray(mask)
    if image.ndim != 2 or seeds.shape != image.shape or mask.shape != image.shape:
        raise ValueError(
            f"image {image.shape}, seeds {seeds.shape} and mask {mask.shape} must be 2-D arrays of one shape"
        )
    if not np.issubdtype(seeds.dtype, np.integer) or (seeds.size and seeds.min() < 0):
        raise ValueError(f"seeds must be non-negative integer labels, got dtype {seeds.dtype}")
    if not regularization >= 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}")
    labels = np.zeros(image.shape, np.int32)
    distances = np.full(image.shape, -1.0)
    seeds32 = seeds.astype(np.int32, copy=False)
    distances[seeds32 > 0] = 0.0
    if image.size:
        _propagate(
            np.ascontiguousarray(image, np.float64),
            np.ascontiguousarray(seeds32),
            np.ascontiguousarray(mask, np.bool_),
            labels,
            distances,
            float(regularization),
        )
    labels[seeds32 > 0] = seeds32[seeds32 > 0]
    return labels, distances


@intrinsic
def prefetch(typingctx, array, index):
    """Ask the CPU to fetch ``array[index]`` (flat, C-contiguous) into its caches; no effect on values.

    Compiled code only (LLVM's ``llvm.prefetch``: a read, kept in all cache levels); an index
    outside the array is harmless (a prefetch never faults).
    """
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # pragma: no cover - compiled
        array_type = signature.args[0]
        ary = context.make_array(array_type)(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        pointer = builder.gep(ary.data, [index])
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch.p0i8")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


# The 8 neighbours of a pixel in the order they are visited (rows, then columns, as centrosome).
_NEIGHBOUR_DI = np.array([-1, -1, -1, 0, 0, 1, 1, 1], np.int64)
_NEIGHBOUR_DJ = np.array([-1, 0, 1, -1, 1, -1, 0, 1], np.int64)


@numba.njit(cache=True, nogil=True)
def _less(heap, a, b):  # pragma: no cover - compiled
    """Whether heap entry a comes before entry b (distance key, then label-row-column)."""
    return heap[a, 0] < heap[b, 0] or (heap[a, 0] == heap[b, 0] and heap[a, 1] < heap[b, 1])


@numba.njit(cache=True, nogil=True)
def _propagate(image, seeds, mask, labels, distances, weight):  # pragma: no cover - compiled
    """Dijkstra from the seeds, in place on ``labels`` and ``distances``.

    Heap entries are ordered by (distance without its lowest mantissa bit, label, row,
    column), two int64 keys: the order of centrosome's heap of int32 quintuples. As there,
    the heap starts as the seed pixels in raster order (not heap-ordered by label), and
    pushes and pops move entries exactly as centrosome's binary heap does. Pixels are
    indexed flat in the image padded by one pixel (a border outside the mask, with the
    image's edge repeated: the clamping), so neighbours and 3x3 sums need no bounds checks;
    label-then-flat-index orders entries as label-row-column does. A neighbour already at
    most as far as the pixel (a seed, or one reached more cheaply) is skipped before its step
    is summed: the step costs >= 0, so it could not be shortened.
    """
    h, w = image.shape
    hp, wp = h + 2, w + 2
    size_p = hp * wp
    bits = 1  # second key: label << bits | flat index, ordered as label * size_p + flat index
    while (1 << bits) < size_p:
        bits += 1
    index_mask = (1 << bits) - 1
    open_ = np.zeros(size_p, np.bool_)  # in the mask and not yet labelled
    dist = np.full(size_p, -1.0)
    for i in range(h):
        for j in range(w):
            open_[(i + 1) * wp + j + 1] = mask[i, j]
            dist[(i + 1) * wp + j + 1] = distances[i, j]
    padded = np.empty((hp, wp), np.float64)
    padded[1:-1, 1:-1] = image
    padded[0, 1:-1], padded[-1, 1:-1] = image[0], image[-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    flat = padded.ravel()
    offset = np.empty(8, np.int64)
    plane = np.empty(8, np.float64)  # lambda² (|dy| + |dx|) of neighbour k
    for k in range(8):
        offset[k] = _NEIGHBOUR_DI[k] * wp + _NEIGHBOUR_DJ[k]
        plane[k] = (abs(_NEIGHBOUR_DI[k]) + abs(_NEIGHBOUR_DJ[k])) * weight * weight
    flat_labels = np.zeros(size_p, np.int32)
    capacity = 1024
    for i in range(h):
        for j in range(w):
            capacity += seeds[i, j] > 0
    heap = np.empty((capacity, 2), np.int64)  # rows: (the distance's bits >> 1, label << bits | flat index)
    size = 0
    as_float = np.empty(1, np.float64)
    as_bits = as_float.view(np.int64)  # the same 8 bytes
    for i in range(h):
        for j in range(w):
            if seeds[i, j] > 0 and mask[i, j]:  # in raster order, not heap-ordered: centrosome's start
                heap[size, 0] = 0
                heap[size, 1] = (np.int64(seeds[i, j]) << bits) | ((i + 1) * wp + j + 1)
                size += 1
    while size > 0:
        top_tie = heap[0, 1]
        size -= 1
        heap[0, 0], heap[0, 1] = heap[size, 0], heap[size, 1]
        _sift_down(heap, size)
        if size > 0:  # the next pixel's 3x3 (5x5 of the image) neighbourhood, while this one is processed
            _prefetch_around(heap[0, 1] & index_mask, wp, open_, dist, flat, flat_labels)
        label = top_tie >> bits  # a shift and a mask, no division
        p1 = top_tie & index_mask
        if not open_[p1]:
            continue
        open_[p1] = False
        flat_labels[p1] = label
        d0 = dist[p1]
        for k in range(8):
            p2 = p1 + offset[k]
            if not open_[p2] or (dist[p2] != -1 and dist[p2] <= d0):
                continue  # (a step costs >= 0, so d0 + step >= d0: no shorter way, as for seeds)
            diff = 0.0
            for di in range(-wp, wp + 1, wp):  # the 3x3 offsets in raster order, I clamped by the padding
                for dj in range(-1, 2):
                    diff += abs(flat[p1 + di + dj] - flat[p2 + di + dj])
            d = np.sqrt(diff * diff + plane[k]) + d0  # centrosome's rounding
            if dist[p2] == -1 or dist[p2] > d:
                dist[p2] = d
                if size == heap.shape[0]:
                    grown = np.empty((2 * size, 2), np.int64)
                    grown[:size] = heap
                    heap = grown
                as_float[0] = d
                heap[size, 0] = as_bits[0] >> 1
                heap[size, 1] = (label << bits) | p2
                _sift_up(heap, size)
                size += 1
    for i in range(h):
        for j in range(w):
            labels[i, j] = flat_labels[(i + 1) * wp + j + 1]
            distances[i, j] = dist[(i + 1) * wp + j + 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_around(q, wp, open_, dist, flat, flat_labels):  # pragma: no cover - compiled
    """Prefetch what processing padded pixel ``q`` reads: its 3x3 of ``open_`` and ``dist``, the 5x5
    of the image its neighbours' step costs sum over, and its label."""
    for r in range(-1, 2):
        prefetch(open_, q + r * wp)
        prefetch(dist, q + r * wp - 1)
        prefetch(dist, q + r * wp + 1)
    for r in range(-2, 3):
        prefetch(flat, q + r * wp - 2)
        prefetch(flat, q + r * wp + 2)
    prefetch(flat_labels, q)


@numba.njit(cache=True, nogil=True)
def _sift_up(heap, child):  # pragma: no cover - compiled
    """Restore the heap after appending entry ``child``."""
    k, t = heap[child, 0], heap[child, 1]
    while child > 0:
        parent = (child - 1) >> 1
        pk, pt = heap[parent, 0], heap[parent, 1]
        if not (k < pk or (k == pk and t < pt)):
            break
        heap[child, 0], heap[child, 1] = pk, pt
        child = parent
    heap[child, 0], heap[child, 1] = k, t


@numba.njit(cache=True, nogil=True)
def _sift_down(heap, size):  # pragma: no cover - compiled
    """Restore the heap after moving the last entry to the root."""
    if size == 0:
        return
    k, t = heap[0, 0], heap[0, 1]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _less(heap, child + 1, child):
            child += 1
        ck, ct = heap[child, 0], heap[child, 1]
        if not (ck < k or (ck == k and ct < t)):
            break
        heap[i, 0], heap[i, 1] = ck, ct
        i = child
    heap[i, 0], heap[i, 1] = k, t
