"""Compiled 2-D filters of the segmentation step, equal to SciPy's bit for bit.

- :func:`gaussian`: ``scipy.ndimage.gaussian_filter(plane.astype(np.float32), sigma)``
  (mode ``"reflect"``, ``truncate=4``): the same weights, the same float64 sums in the
  same order (centre first, then the symmetric pairs from the outside in), the same float32
  intermediate between the two axes, compiled (segmentation timings: ``benchmarks/README.md``).
- :func:`fill_holes`: ``scipy.ndimage.binary_fill_holes`` (4-connected background): the
  background reachable from the image border stays, the rest is filled; one scanline flood
  (a horizontal run at a time) instead of labelling the background.
- :func:`fill_label_holes`: the same holes in a label image, each filled with the label that
  encloses it alone (CellProfiler's ``fill_labeled_holes`` as IdentifySecondaryObjects uses it).
- :func:`squared_distance`: the squared Euclidean distance transform, exact in integers
  (``mahotas.distance``; scipy's ``distance_transform_edt`` nearest background pixels).
"""

from __future__ import annotations

import numba
import numpy as np


def gaussian(plane: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian-smoothed float32 copy of a 2-D plane, reflected borders.

    Identical to ``scipy.ndimage.gaussian_filter(plane.astype(np.float32), sigma, truncate=truncate)``.

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        Any real dtype.
    sigma : float
        Standard deviation of the kernel in pixels; ``sigma <= 0`` returns the float32 plane
        unsmoothed.
    truncate : float, default 4.0
        Kernel radius in standard deviations.

    Returns
    -------
    ndarray of float32, shape (H, W)
        The smoothed plane (a new array).

    Examples
    --------
    >>> import numpy as np
    >>> plane = np.zeros((5, 5), np.uint8)
    >>> plane[2, 2] = 100
    >>> round(float(gaussian(plane, 1.0).sum()), 3)  # reflected borders keep the mass
    100.0
    """
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) plane, got shape {plane.shape}")
    if plane.dtype not in (np.uint8, np.uint16, np.int8, np.int16) or sigma <= 0:
        plane = plane.astype(np.float32)  # exact for these four: no need to copy them
    if sigma <= 0:
        return plane
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)
    weights = weights / weights.sum()
    rows = np.empty(plane.shape, np.float32)
    _along_rows(np.ascontiguousarray(plane), weights, rows)
    out = np.empty(plane.shape, np.float32)
    _along_columns(rows, weights, out)
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background not 4-connected to the border becomes foreground.

    Equal to ``scipy.ndimage.binary_fill_holes(mask)``.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        Foreground.

    Returns
    -------
    ndarray of bool, shape (H, W)
        A new array, ``mask`` with its holes filled.

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.ones((5, 5), bool)
    >>> ring[2, 2] = False
    >>> bool(fill_holes(ring)[2, 2])
    True
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {mask.shape}")
    return _fill(np.ascontiguousarray(mask))


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill each hole of a label image with the label around it.

    A hole is a 4-connected background region not reaching the image border; it is filled
    when every object pixel 4-adjacent to it carries one and the same label (a hole between
    two objects stays).

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Non-negative labels.

    Returns
    -------
    ndarray of int32, shape (H, W)
        A new label image with the holes filled.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 7), np.int32)
    >>> labels[1:4, 1:4] = 1
    >>> labels[1:4, 4:7] = 2
    >>> labels[2, 2] = 0  # a hole inside object 1
    >>> labels[2, 4] = 0  # on the border between 1 and 2: both enclose it
    >>> out = fill_label_holes(labels)
    >>> int(out[2, 2]), int(out[2, 4])
    (1, 0)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) label image, got shape {labels.shape}")
    out = np.ascontiguousarray(labels, dtype=np.int32).copy()
    holes = fill_holes(out > 0) & (out == 0)
    if holes.any():
        _fill_label_holes(out, holes)
    return out


@numba.njit(cache=True, nogil=True)
def _fill_label_holes(labels, holes):  # pragma: no cover - compiled
    """Flood each hole component once, note the labels around it, fill it if they are one."""
    h, w = labels.shape
    seen = np.zeros((h, w), np.bool_)
    stack = np.empty(h * w, np.int64)
    members = np.empty(h * w, np.int64)
    for i0 in range(h):
        for j0 in range(w):
            if not holes[i0, j0] or seen[i0, j0]:
                continue
            seen[i0, j0] = True
            stack[0] = i0 * w + j0
            top, count, around = 1, 0, 0  # around: 0 none yet, -1 several, else the one label
            while top > 0:
                top -= 1
                p = stack[top]
                members[count] = p
                count += 1
                i, j = divmod(p, w)
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    y, x = i + di, j + dj
                    if y < 0 or y >= h or x < 0 or x >= w:
                        continue
                    if holes[y, x]:
                        if not seen[y, x]:
                            seen[y, x] = True
                            stack[top] = y * w + x
                            top += 1
                    elif labels[y, x] > 0 and around != -1 and labels[y, x] != around:
                        around = labels[y, x] if around == 0 else -1
            if around > 0:
                for k in range(count):
                    i, j = divmod(members[k], w)
                    labels[i, j] = around


@numba.njit(cache=True, nogil=True)
def _reflect(i, n):  # pragma: no cover - compiled
    """Index ``i`` mirrored into ``[0, n)`` as scipy's ``"reflect"`` (d c b a | a b c d | d c b a)."""
    period = 2 * n
    i = i % period if i >= 0 else (-i - 1) % period
    return i if i < n else period - 1 - i


@numba.njit(cache=True, nogil=True)
def _along_rows(src, weights, out):  # pragma: no cover - compiled
    """Correlate along axis 0 (symmetric weights), float64 sums, written to float32 ``out``."""
    h, w = src.shape
    r = (weights.size - 1) // 2
    line = np.empty(w, np.float64)
    for i in range(h):
        centre = weights[r]
        for j in range(w):
            line[j] = src[i, j] * centre
        for k in range(r, 0, -1):
            wk = weights[r - k]
            above, below = src[_reflect(i - k, h)], src[_reflect(i + k, h)]
            for j in range(w):
                line[j] += (np.float64(above[j]) + np.float64(below[j])) * wk
        for j in range(w):
            out[i, j] = line[j]


@numba.njit(cache=True, nogil=True)
def _along_columns(src, weights, out):  # pragma: no cover - compiled
    """Correlate along axis 1 (symmetric weights), float64 sums, written to float32 ``out``."""
    h, w = src.shape
    r = (weights.size - 1) // 2
    line = np.empty(w + 2 * r, np.float64)
    acc = np.empty(w, np.float64)
    for i in range(h):
        for j in range(w):
            line[j + r] = src[i, j]
        for j in range(r):  # the reflected margins only
            line[j] = src[i, _reflect(j - r, w)]
            line[w + r + j] = src[i, _reflect(w + j, w)]
        centre = weights[r]
        for j in range(w):
            acc[j] = line[j + r] * centre
        for k in range(r, 0, -1):  # each pixel's sum in the same order, a whole row per term (vectorised)
            wk = weights[r - k]
            for j in range(w):
                acc[j] += (line[j + r - k] + line[j + r + k]) * wk
        for j in range(w):
            out[i, j] = acc[j]


@numba.njit(cache=True, nogil=True)
def _fill(mask):  # pragma: no cover - compiled
    """``mask`` with its holes filled: the background 4-connected to the border is flooded from each
    border pixel, a horizontal run at a time (scanline flood), and the rest is foreground."""
    h, w = mask.shape
    outside = np.zeros((h, w), np.bool_)
    # run starts to flood, (y, x) pairs: a pixel is pushed at most once from the row above and once
    # from the row below, each time as the start of a free run, so at most h * (w + 1) at once
    stack = np.empty(2 * (h * (w + 1) + 1), np.int32)
    for k in range(2 * (h + w)):  # the border, once round
        if k < w:
            i0, j0 = 0, k
        elif k < 2 * w:
            i0, j0 = h - 1, k - w
        elif k < 2 * w + h:
            i0, j0 = k - 2 * w, 0
        else:
            i0, j0 = k - 2 * w - h, w - 1
        if mask[i0, j0] or outside[i0, j0]:
            continue
        stack[0], stack[1] = i0, j0
        top = 2
        while top > 0:
            top -= 2
            y, x = stack[top], stack[top + 1]
            if outside[y, x]:
                continue
            left, right = x, x
            while left > 0 and not mask[y, left - 1] and not outside[y, left - 1]:
                left -= 1
            while right < w - 1 and not mask[y, right + 1] and not outside[y, right + 1]:
                right += 1
            for xx in range(left, right + 1):
                outside[y, xx] = True
            for yy in (y - 1, y + 1):  # each free run touching this one, above and below, is flooded next
                if 0 <= yy < h:
                    free_before = False
                    for xx in range(left, right + 1):
                        free = not mask[yy, xx] and not outside[yy, xx]
                        if free and not free_before:
                            stack[top], stack[top + 1] = yy, xx
                            top += 2
                        free_before = free
    return ~outside


def squared_distance(mask: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every pixel to the nearest background pixel of the image.

    Equal to ``mahotas.distance(mask)``, and to the squared distance to the nearest background
    pixel that ``scipy.ndimage.distance_transform_edt`` finds, wherever the image holds
    background (outside the image is not background): exact, in integers (Felzenszwalb and
    Huttenlocher's lower envelope of parabolas along rows, after the distances along columns).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        Foreground (``True``) and background.

    Returns
    -------
    ndarray of float64, shape (H, W)
        Squared distances in pixels²: 0 on the background; ``inf`` everywhere if there is no
        background.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((3, 5), bool)
    >>> mask[:, 0] = False
    >>> squared_distance(mask)[1].tolist()
    [0.0, 1.0, 4.0, 9.0, 16.0]
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {mask.shape}")
    out = np.empty(mask.shape, np.float64)
    if mask.size:
        small = max(mask.shape) < 30_000  # squared distances (< 2 * 30,000²) fit int32
        column = np.empty(mask.shape, np.int32 if small else np.int64)
        _squared_distance(np.ascontiguousarray(mask), column, out)
    return out


@numba.njit(cache=True, nogil=True)
def _squared_distance(mask, column, out):  # pragma: no cover - compiled
    """``column``: scratch, the squared distance to the nearest background pixel in the column."""
    h, w = mask.shape
    none = -1  # no background in the column
    last = np.full(w, none, np.int64)
    for i in range(h):  # downwards: distance to the background above
        for j in range(w):
            if not mask[i, j]:
                last[j] = i
            column[i, j] = none if last[j] == none else (i - last[j]) * (i - last[j])
    last[:] = none
    for i in range(h - 1, -1, -1):  # upwards: the background below, if nearer
        for j in range(w):
            if not mask[i, j]:
                last[j] = i
            if last[j] != none:
                d = (last[j] - i) * (last[j] - i)
                if column[i, j] == none or d < column[i, j]:
                    column[i, j] = d
    sites = np.empty(w, np.int64)  # the lower envelope's parabolas (their columns) and where each starts
    starts = np.empty(w + 1, np.float64)
    for i in range(h):
        f = column[i].astype(np.int64)
        k = -1
        for q in range(w):
            if f[q] == none:
                continue
            while k >= 0:
                v = sites[k]
                s = ((f[q] + q * q) - (f[v] + v * v)) / (2.0 * (q - v))
                if s <= starts[k]:
                    k -= 1
                else:
                    break
            k += 1
            sites[k] = q
            starts[k] = (
                -np.inf
                if k == 0
                else ((f[q] + q * q) - (f[sites[k - 1]] + sites[k - 1] ** 2)) / (2.0 * (q - sites[k - 1]))
            )
        if k < 0:
            for j in range(w):
                out[i, j] = np.inf
            continue
        starts[k + 1] = np.inf
        m = 0
        for j in range(w):
            while starts[m + 1] <= j:
                m += 1
            v = sites[m]
            out[i, j] = (j - v) * (j - v) + f[v]
