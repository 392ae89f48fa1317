"""Compiled per-pixel loops of the texture family (numba): LBP sign patterns, co-occurrence counts, lookups.

Each kernel is one pass over a plane, in the plane's own integer type, without temporaries;
the callers in :mod:`moa_features.features.texture` check the inputs and give the conventions.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _at_least(tl, tr, bl, br, dr: float, dc: float, x: float) -> bool:
    """skimage's ``bilinear_interpolation`` of corners tl, tr (top row), bl, br at weights (dr, dc),
    compared as ``sample - x >= 0``: float64, the same operations in the same order."""
    top = (1 - dc) * np.float64(tl) + dc * np.float64(tr)
    bottom = (1 - dc) * np.float64(bl) + dc * np.float64(br)
    return (1 - dr) * top + dr * bottom - x >= 0


@njit(cache=True, nogil=True)
def lbp_patterns(z: np.ndarray, dr: np.ndarray, dc: np.ndarray, out: np.ndarray) -> None:
    """8-bit sign patterns of skimage's radius-1, 8-point LBP into ``out`` ``(H, W)`` uint8.

    z: ``(H + 2, W + 2)`` the plane padded by one zero pixel; dr ``(4, H)``, dc ``(4, W)``:
    skimage's interpolation weights of the diagonal samples k = 1, 3, 5, 7 (up-right, up-left,
    down-left, down-right) at each row and column. Bit k = (sample k >= centre); the axis
    samples k = 0, 2, 4, 6 (right, up, left, down) are pixels.
    """
    h, w = out.shape
    for r in range(h):
        up, mid, down = z[r], z[r + 1], z[r + 2]
        dr1, dr3, dr5, dr7 = dr[0, r], dr[1, r], dr[2, r], dr[3, r]
        for c in range(w):
            x = mid[c + 1]
            xf = np.float64(x)
            code = (
                np.uint8(mid[c + 2] >= x)
                | np.uint8(up[c + 1] >= x) << 2
                | np.uint8(mid[c] >= x) << 4
                | np.uint8(down[c + 1] >= x) << 6
                | np.uint8(_at_least(up[c + 1], up[c + 2], x, mid[c + 2], dr1, dc[0, c], xf)) << 1
                | np.uint8(_at_least(up[c], up[c + 1], mid[c], x, dr3, dc[1, c], xf)) << 3
                | np.uint8(_at_least(mid[c], x, down[c], down[c + 1], dr5, dc[2, c], xf)) << 5
                | np.uint8(_at_least(x, mid[c + 2], down[c + 1], down[c + 2], dr7, dc[3, c], xf)) << 7
            )
            out[r, c] = code


@njit(cache=True, nogil=True)
def cooccurrence_counts(q: np.ndarray, distance: int, out: np.ndarray) -> None:
    """Add the ordered pair counts of the four GLCM directions to ``out`` ``(4, L, L)`` int64.

    q: ``(H, W)`` levels in ``[0, L)``; direction k has the pixel offset ``(row, col)`` =
    ``(0, d), (d, d), (d, 0), (d, -d)``; ``out[k, q[p], q[p + offset]] += 1`` for every pixel p
    whose partner lies inside the plane.
    """
    h, w = q.shape
    d = distance
    for r in range(h):
        row = q[r]
        below = q[min(r + d, h - 1)]
        for c in range(w):
            a = row[c]
            if c + d < w:
                out[0, a, row[c + d]] += 1
            if r + d < h:
                out[2, a, below[c]] += 1
                if c + d < w:
                    out[1, a, below[c + d]] += 1
                if c >= d:
                    out[3, a, below[c - d]] += 1


@njit(cache=True, nogil=True)
def lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``table[values]`` of a 1-D array of integers (each below ``table.size``)."""
    out = np.empty(values.size, dtype=table.dtype)
    for i in range(values.size):
        out[i] = table[values[i]]
    return out


@njit(cache=True, nogil=True)
def byte_counts(values: np.ndarray) -> np.ndarray:
    """``(256,)`` int64 counts of a 1-D uint8 array, in four interleaved tallies (no store stalls on runs)."""
    tallies = np.zeros((4, 256), dtype=np.int64)
    n = values.size
    for i in range(0, n - n % 4, 4):
        tallies[0, values[i]] += 1
        tallies[1, values[i + 1]] += 1
        tallies[2, values[i + 2]] += 1
        tallies[3, values[i + 3]] += 1
    for i in range(n - n % 4, n):
        tallies[0, values[i]] += 1
    return tallies.sum(axis=0)
