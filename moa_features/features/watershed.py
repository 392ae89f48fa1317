"""Seeded watershed by flooding an integer landscape with a bucket queue (compiled).

The flooding is Meyer's, as :func:`skimage.segmentation.watershed` (0.26) runs it with
``connectivity=1``: pixels are taken in order of (priority, time of arrival), the markers
entering first with their own level as priority; a taken pixel gives its label to every
4-neighbour that is in the mask and still unlabelled, and those join the queue with
priority ``max(their level, the taken pixel's priority)``. scikit-image keeps the queue in a binary heap
(O(N log N)); on integer levels a bucket queue (one first-in-first-out list per level)
gives the same order in O(N + levels) (segmentation timings: ``benchmarks/README.md``).

The one difference is the order among marker pixels of equal level: raster order here,
the heap's order in scikit-image. Where no two marker pixels share a level the labels are
identical; on real cell planes, with nuclei as markers, they agree on > 99.9 % of the
pixels (tests/test_features_watershed.py).
"""

from __future__ import annotations

import numba
import numpy as np

# Levels are compressed to their ranks above this many buckets (bucket arrays stay small).
_MAX_BUCKETS = 1 << 20


def watershed(levels: np.ndarray, markers: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Flood ``markers`` over the integer landscape ``levels`` (4-connected).

    levels: ``(H, W)`` non-negative integers (e.g. a gradient quantised to uint16, or a
    negated squared distance transform shifted to start at 0); markers: ``(H, W)``
    non-negative int labels, 0 = to be flooded; mask: ``(H, W)`` bool, pixels that may be
    flooded (``None``: all). Returns ``(H, W)`` int32 labels; pixels outside the mask
    (markers there included, as in scikit-image) and pixels not reachable from a marker
    are 0.

    Examples
    --------
    >>> import numpy as np
    >>> levels = np.array([[0, 1, 5, 1, 0]], np.uint8)
    >>> markers = np.array([[1, 0, 0, 0, 2]], np.int32)
    >>> watershed(levels, markers).tolist()
    [[1, 1, 1, 2, 2]]
    """
    levels, markers = np.asarray(levels), np.asarray(markers)
    if levels.ndim != 2 or markers.shape != levels.shape:
        raise ValueError(f"levels {levels.shape} and markers {markers.shape} must be 2-D arrays of one shape")
    if not np.issubdtype(levels.dtype, np.integer) or (levels.size and levels.min() < 0):
        raise ValueError(f"levels must be non-negative integers, got dtype {levels.dtype}")
    if markers.size and markers.min() < 0:
        raise ValueError("markers must be non-negative integer labels")
    if mask is not None and np.shape(mask) != levels.shape:
        raise ValueError(f"mask shape {np.shape(mask)} differs from levels shape {levels.shape}")
    h, w = levels.shape
    top = int(levels.max(initial=0))
    if top >= _MAX_BUCKETS:
        levels = np.unique(levels, return_inverse=True)[1].reshape(h, w)
        top = int(levels.max(initial=0))
    # One padded frame of "never flood" pixels replaces bounds checks in the kernel.
    padded_levels = np.zeros((h + 2, w + 2), dtype=np.uint16 if top < 1 << 16 else np.int32)
    padded_levels[1:-1, 1:-1] = levels
    labels = np.full((h + 2, w + 2), -1, dtype=np.int32)
    inner = markers.astype(np.int32, copy=False)
    labels[1:-1, 1:-1] = inner if mask is None else np.where(np.asarray(mask, dtype=bool), inner, -1)
    _flood(padded_levels.ravel(), labels.ravel(), w + 2, top + 1)
    out = labels[1:-1, 1:-1]
    out[out < 0] = 0
    return np.ascontiguousarray(out)


@numba.njit(cache=True, nogil=True)
def _flood(levels, labels, width, n_levels):  # pragma: no cover - compiled
    """Flood in place. labels: > 0 markers, 0 to flood, -1 never (padding, outside mask).

    Bucket ``v`` is a FIFO linked list through ``after`` (each pixel enters at most once).
    Markers enter first, at their own level; a reached pixel enters at ``max(its level, the
    level being flooded)``, so the level never drops and one upward sweep suffices.
    """
    after = np.empty(labels.size, np.int32)
    head = np.full(n_levels, -1, np.int32)
    tail = np.full(n_levels, -1, np.int32)
    for p in range(labels.size):
        if labels[p] > 0:
            _enqueue(p, levels[p], after, head, tail)
    for current in range(n_levels):
        p = head[current]
        while p != -1:
            label = labels[p]
            q = p - width  # the four neighbours, unrolled, in scikit-image's order
            if labels[q] == 0:
                labels[q] = label
                _enqueue(q, max(levels[q], current), after, head, tail)
            q = p - 1
            if labels[q] == 0:
                labels[q] = label
                _enqueue(q, max(levels[q], current), after, head, tail)
            q = p + 1
            if labels[q] == 0:
                labels[q] = label
                _enqueue(q, max(levels[q], current), after, head, tail)
            q = p + width
            if labels[q] == 0:
                labels[q] = label
                _enqueue(q, max(levels[q], current), after, head, tail)
            p = after[p]


@numba.njit(inline="always")
def _enqueue(p, v, after, head, tail):  # pragma: no cover - compiled
    """Append pixel ``p`` to bucket ``v``."""
    after[p] = -1
    last = tail[v]
    if last == -1:
        head[v] = p
    else:
        after[last] = p
    tail[v] = p
