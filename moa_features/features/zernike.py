"""Zernike shape features of objects (CellProfiler ``MeasureObjectSizeShape``, ``AreaShape_Zernike_n_m``).

For each object (a label 1..n of an ``(H, W)`` label image), CellProfiler's definition:

1. the object's minimum enclosing circle (centre ``(cy, cx)``, radius ``r``) of its pixel
   centres (row, column coordinates);
2. each pixel's unit-disk coordinates ``y = (row - cy) / r``, ``x = (col - cx) / r``;
3. for every ``(n, m)`` with ``0 <= m <= n <= 9`` and ``n - m`` even (30 pairs),
   ``V_nm = sum over the object's pixels of P_nm(rho^2) (y + i x)^m``, where
   ``P_nm = R_nm / rho^m`` and ``R_nm(rho) = sum_k (-1)^k (n-k)! / (k! ((n+m)/2-k)! ((n-m)/2-k)!) rho^(n-2k)``
   is Zernike's radial polynomial (pixels with ``rho^2 > 1`` are left out, as centrosome does);
4. ``Zernike_n_m = |V_nm| / (pi r^2)``: dimensionless, rotation invariant.

The circle is found as CellProfiler's centrosome finds it: the strict convex hull of the
object's pixels (monotone chain over each column's top and bottom pixel, in centrosome's
vertex order), then Chrystal's algorithm with centrosome's choices and arithmetic, so that
pixels lying exactly on the circle are kept or dropped as CellProfiler does. A one-pixel object (``r = 0``) gives
NaN. All objects are measured in one compiled pass over the label image, which sums per object
the moments ``sum rho^(2j) (y + i x)^m`` and combines them with the polynomials' coefficients;
along each horizontal run of pixels (``y`` fixed) those moments are polynomials in ``x``, so a
run costs its power sums ``sum x^p`` (p <= 9) and one small expansion, not 30 terms a pixel.
"""

from __future__ import annotations

from math import factorial

import numpy as np
from numba import njit

ZERNIKE_DEGREE = 9

#: The conventions above, for the feature catalogue (docs/features.md).
CONVENTIONS = __doc__

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "<Cpt>_AreaShape_Zernike_<n>_<m>",
        "1 (dimensionless, >= 0)",
        "CellProfiler's Zernike shape moment of degree n, repetition m (0 <= m <= n <= 9, n - m even; 30 per "
        "object): |sum over the object's pixels of the Zernike polynomial V_nm in the coordinates of the object's "
        "minimum enclosing circle (radius r, unit disk)| / (pi r^2). Per object for Nuclei, Cells and Cytoplasm; per "
        "site as _Median/_Mean/_Std. NaN for a one-pixel object.",
    ),
]


def zernike_indexes(degree: int = ZERNIKE_DEGREE) -> np.ndarray:
    """The ``(n, m)`` pairs of CellProfiler's Zernike features, ``(K, 2)`` int64, in its order.

    Examples
    --------
    >>> zernike_indexes(2).tolist()
    [[0, 0], [1, 1], [2, 0], [2, 2]]
    >>> len(zernike_indexes())
    30
    """
    pairs = [(n, m) for n in range(degree + 1) for m in range(n % 2, n + 1, 2)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def radial_coefficients(indexes: np.ndarray) -> np.ndarray:
    """Coefficients of each ``P_nm(rho^2)`` (``R_nm / rho^m``), highest power first, ``(K, n_max//2 + 1)``.

    Examples
    --------
    >>> radial_coefficients(np.array([[2, 0]])).tolist()  # R_20 = 2 rho^2 - 1
    [[2.0, -1.0]]
    """
    width = int(indexes[:, 0].max()) // 2 + 1 if len(indexes) else 1
    out = np.zeros((len(indexes), width))
    for row, (n, m) in enumerate(indexes):
        for k in range((n - m) // 2 + 1):
            out[row, k] = (
                (-1) ** k
                * factorial(n - k)
                / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k))
            )
    return out


@njit(cache=True, nogil=True)
def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Cross product of ``a - o`` and ``b - o`` in (x = column, y = row) coordinates."""
    return (a[1] - o[1]) * (b[0] - o[0]) - (a[0] - o[0]) * (b[1] - o[1])


@njit(cache=True, nogil=True)
def _hull(points: np.ndarray, out: np.ndarray) -> int:
    """Strict convex hull (monotone chain) of ``(k, 2)`` (row, col) points sorted by (col, row).

    Vertices go into ``out`` in centrosome's order: from the leftmost (then topmost) point
    along the top (smaller rows) to the right and back; collinear points are dropped.
    Returns the vertex count.
    """
    count = points.shape[0]
    if count <= 2:
        out[:count] = points
        return count if count < 2 or points[0, 0] != points[1, 0] or points[0, 1] != points[1, 1] else 1
    k = 0
    for i in range(count):
        while k >= 2 and _cross(out[k - 2], out[k - 1], points[i]) <= 0:
            k -= 1
        out[k] = points[i]
        k += 1
    lower = k + 1
    for i in range(count - 2, -1, -1):
        while k >= lower and _cross(out[k - 2], out[k - 1], points[i]) <= 0:
            k -= 1
        out[k] = points[i]
        k += 1
    return k - 1


@njit(cache=True, nogil=True)
def _circle3(s0: np.ndarray, s1: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """Circumcircle ``(row, col, radius)``, with centrosome's formula and operation order."""
    d = 2 * (s0[1] * (s1[0] - v[0]) + s1[1] * (v[0] - s0[0]) + v[1] * (s0[0] - s1[0]))
    q0 = s0[0] ** 2 + s0[1] ** 2
    q1 = s1[0] ** 2 + s1[1] ** 2
    q2 = v[0] ** 2 + v[1] ** 2
    x = (q0 * (s1[0] - v[0]) + q1 * (v[0] - s0[0]) + q2 * (s0[0] - s1[0])) / d
    y = (q0 * (v[1] - s1[1]) + q1 * (s0[1] - v[1]) + q2 * (s1[1] - s0[1])) / d
    return y, x, np.sqrt((s0[0] - y) ** 2 + (s0[1] - x) ** 2)


@njit(cache=True, nogil=True)
def _arccos_above(x: float) -> float:
    """An upper bound of ``arccos(x)`` (within 2e-4 of it; NaN outside [-1, 1]), without ``arccos``:
    Abramowitz and Stegun 4.4.45 (error <= 6.8e-5 on [0, 1]) plus a margin of 1e-4."""
    t = abs(x)
    approx = np.sqrt(1.0 - t) * (1.5707288 + t * (-0.2121144 + t * (0.0742610 - 0.0187293 * t)))
    return approx + 1e-4 if x >= 0 else np.pi - approx + 1e-4


@njit(cache=True, nogil=True)
def min_enclosing_circle(hull: np.ndarray) -> tuple[float, float, float]:
    """Minimum enclosing circle ``(centre row, centre col, radius)`` of convex-hull vertices ``(k, 2)``.

    Chrystal's algorithm as CellProfiler's centrosome runs it (same start, same choices, same
    arithmetic), so the centre and radius agree to the last bit and pixels on the circle are
    kept or dropped as CellProfiler does. ``k == 0`` gives NaN. A vertex whose angle is surely
    no smaller than the best so far (by a cheap upper bound of ``arccos``) is passed over
    without its exact angle: the same choice, fewer ``arccos``.
    """
    k = hull.shape[0]
    if k == 0:
        return np.nan, np.nan, np.nan
    if k == 1:
        return hull[0, 0], hull[0, 1], 0.0
    if k == 2:
        c0 = (hull[0, 0] + hull[1, 0]) / 2
        c1 = (hull[0, 1] + hull[1, 1]) / 2
        return c0, c1, np.sqrt((c0 - hull[0, 0]) ** 2 + (c1 - hull[0, 1]) ** 2)
    order = np.arange(k)  # centrosome's within-label indexes: 0 = S0, 1 = S1, >= 2 candidate vertices
    s0, s1 = 0, 1
    half = np.pi / 2
    while True:
        d01 = (hull[s0, 0] - hull[s1, 0]) ** 2 + (hull[s0, 1] - hull[s1, 1]) ** 2
        best, best_angle, best_a1, best_a0 = -1, np.inf, 0.0, 0.0
        for v in range(k):
            if order[v] < 2:
                continue
            a0 = hull[s0, 0] - hull[s1, 0]
            a1 = hull[s0, 1] - hull[s1, 1]
            v1_0, v1_1 = hull[v, 0] - hull[s1, 0], hull[v, 1] - hull[s1, 1]
            v0_0, v0_1 = hull[v, 0] - hull[s0, 0], hull[v, 1] - hull[s0, 1]
            cos_1 = (a0 * v1_0 + a1 * v1_1) / np.sqrt(d01 * (v1_0 * v1_0 + v1_1 * v1_1))
            cos_0 = (-a0 * v0_0 + -a1 * v0_1) / np.sqrt(d01 * (v0_0 * v0_0 + v0_1 * v0_1))
            if np.pi - _arccos_above(cos_1) - _arccos_above(cos_0) - 1e-9 >= best_angle:
                continue  # a lower bound of its angle is no smaller than the best: it cannot be chosen
            angle_1 = abs(np.arccos(cos_1))
            angle_0 = abs(np.arccos(cos_0))
            angle = np.pi - angle_1 - angle_0
            if angle < best_angle:
                best, best_angle, best_a1, best_a0 = v, angle, angle_1, angle_0
        if best < 0 or best_angle >= half:
            c0 = (hull[s0, 0] + hull[s1, 0]) / 2
            c1 = (hull[s0, 1] + hull[s1, 1]) / 2
            return c0, c1, np.sqrt((hull[s0, 0] - hull[s1, 0]) ** 2 + (hull[s0, 1] - hull[s1, 1]) ** 2) / 2
        if best_a1 <= half and best_a0 <= half and best_angle <= half:
            return _circle3(hull[s0], hull[s1], hull[best])
        if best_a0 > half:
            order[s0] = order[best]
            s0 = best
            order[best] = 0
        else:
            order[s1] = order[best]
            s1 = best
            order[best] = 1


@njit(cache=True, nogil=True)
def _zernike_kernel(
    labels: np.ndarray, n: int, indexes: np.ndarray, coeffs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per object: ``|V_nm| / (pi r^2)`` ``(n, K)`` and the circles ``(n, 3)`` (row, col, radius)."""
    h, w = labels.shape
    count = np.zeros(n + 1, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if 0 < lab <= n:  # other labels are background
                count[lab] += 1
    start = np.zeros(n + 2, dtype=np.int64)
    for i in range(1, n + 1):
        start[i + 1] = start[i] + count[i]
    fill = start.copy()
    total = start[n + 1]
    coords = np.empty((total, 2), dtype=np.float64)
    for y in range(h):  # raster order: each object's pixels sorted by (row, col)
        for x in range(w):
            lab = labels[y, x]
            if 0 < lab <= n:
                coords[fill[lab], 0] = y
                coords[fill[lab], 1] = x
                fill[lab] += 1
    nk = indexes.shape[0]
    m_max = 0
    for q in range(nk):
        m_max = max(m_max, indexes[q, 1])
    scores = np.full((n, nk), np.nan)
    circles = np.full((n, 3), np.nan)
    top = np.full(w, h, dtype=np.int64)
    bottom = np.full(w, -1, dtype=np.int64)
    candidates = np.empty((2 * w, 2), dtype=np.float64)
    hull = np.empty((2 * w + 1, 2), dtype=np.float64)
    powers = np.zeros(m_max + 1, dtype=np.int64)  # powers[m]: how many powers of rho^2 go with z^m
    for q in range(nk):
        powers[indexes[q, 1]] = max(powers[indexes[q, 1]], (indexes[q, 0] - indexes[q, 1]) // 2 + 1)
    acc_re = np.zeros((m_max + 1, max(powers.max(), 1)))
    acc_im = np.zeros((m_max + 1, max(powers.max(), 1)))
    top_degree = 0
    for q in range(nk):
        top_degree = max(top_degree, indexes[q, 0])
    sums = np.zeros(top_degree + 1)
    ypow = np.zeros(2 * top_degree + 1)
    binom = np.zeros((top_degree + 1, top_degree + 1))
    for m in range(top_degree + 1):
        binom[m, 0] = 1.0
        for k in range(1, m + 1):
            binom[m, k] = binom[m - 1, k - 1] + (binom[m - 1, k] if k < m else 0.0)
    # the expansion's terms, flattened: accumulator (2 * slot + imaginary), coefficient, powers of y and x
    slot = np.zeros((m_max + 1, max(powers.max(), 1)), dtype=np.int64)
    count_terms, count_slots = 0, 0
    for m in range(m_max + 1):
        for j in range(powers[m]):
            slot[m, j] = count_slots
            count_slots += 1
            count_terms += (m + 1) * (j + 1)
    acc = np.zeros(2 * count_slots)
    term_slot = np.empty(count_terms, dtype=np.int64)
    term_coef = np.empty(count_terms)
    term_y = np.empty(count_terms, dtype=np.int64)
    term_x = np.empty(count_terms, dtype=np.int64)
    e = 0
    for m in range(m_max + 1):
        for j in range(powers[m]):
            for k in range(m + 1):
                for el in range(j + 1):
                    quarter = k % 4  # i^k: 1, i, -1, -i
                    term_slot[e] = 2 * slot[m, j] + (quarter % 2)
                    term_coef[e] = binom[m, k] * binom[j, el] * (1.0 if quarter < 2 else -1.0)
                    term_y[e] = m - k + 2 * j - 2 * el
                    term_x[e] = k + 2 * el
                    e += 1
    # Interleave the accumulators: the terms in order of their rank within their own accumulator, so
    # consecutive additions go to different accumulators (no chain of dependent additions through one
    # memory cell) while each accumulator still adds its terms in the order above: the same sums.
    rank = np.zeros(count_terms, dtype=np.int64)
    seen = np.zeros(2 * count_slots, dtype=np.int64)
    for e in range(count_terms):
        rank[e] = seen[term_slot[e]]
        seen[term_slot[e]] += 1
    order = np.empty(count_terms, dtype=np.int64)
    e = 0
    for position in range(seen.max() if count_terms else 0):
        for t in range(count_terms):
            if rank[t] == position:
                order[e] = t
                e += 1
    term_coef = term_coef[order]
    # one load for three indices, unsigned (no negative-index handling in the loop)
    term_code = (term_slot[order] | term_y[order] << 16 | term_x[order] << 32).astype(np.uint64)
    low16, shift16, shift32 = np.uint64(0xFFFF), np.uint64(16), np.uint64(32)
    for lab in range(1, n + 1):
        a, b = start[lab], start[lab + 1]
        if b == a:
            continue
        left, right = w, -1
        for p in range(a, b):  # each column's top and bottom pixel: the hull's candidates
            y, x = int(coords[p, 0]), int(coords[p, 1])
            top[x] = min(top[x], y)
            bottom[x] = max(bottom[x], y)
            left, right = min(left, x), max(right, x)
        nc = 0
        for x in range(left, right + 1):
            if bottom[x] >= 0:
                candidates[nc, 0], candidates[nc, 1] = top[x], x
                nc += 1
                if bottom[x] != top[x]:
                    candidates[nc, 0], candidates[nc, 1] = bottom[x], x
                    nc += 1
            top[x], bottom[x] = h, -1
        nh = _hull(candidates[:nc], hull)
        c0, c1, r = min_enclosing_circle(hull[:nh])
        circles[lab - 1, 0], circles[lab - 1, 1], circles[lab - 1, 2] = c0, c1, r
        if r == 0:
            continue
        acc[:] = 0
        p = a
        while p < b:  # one horizontal run of the object at a time
            q = p + 1
            while q < b and coords[q, 0] == coords[p, 0] and coords[q, 1] == coords[q - 1, 1] + 1:
                q += 1
            ym = (coords[p, 0] - c0) / r
            sums[:] = 0  # power sums of x over the run's pixels inside the circle (centrosome's cut)
            for k in range(p, q):
                xm = (coords[k, 1] - c1) / r
                if xm * xm + ym * ym > 1:
                    continue
                t = 1.0
                for e in range(sums.size):
                    sums[e] += t
                    t *= xm
            p = q
            if sums[0] == 0:
                continue
            ypow[0] = 1.0
            for e in range(1, ypow.size):
                ypow[e] = ypow[e - 1] * ym
            # rho^(2j) (y + i x)^m = sum_l C(j,l) y^(2j-2l) x^(2l) * sum_k C(m,k) y^(m-k) (i x)^k
            for e in range(term_coef.size):
                code = term_code[e]
                acc[code & low16] += term_coef[e] * ypow[(code >> shift16) & low16] * sums[code >> shift32]
        for m in range(m_max + 1):
            for j in range(powers[m]):
                acc_re[m, j] = acc[2 * slot[m, j]]
                acc_im[m, j] = acc[2 * slot[m, j] + 1]
        area = np.pi * r * r
        for q in range(nk):
            zn, zm = indexes[q, 0], indexes[q, 1]
            top_power = (zn - zm) // 2
            real, imag = 0.0, 0.0
            for c in range(top_power + 1):
                real += coeffs[q, c] * acc_re[zm, top_power - c]
                imag += coeffs[q, c] * acc_im[zm, top_power - c]
            scores[lab - 1, q] = np.sqrt(real * real + imag * imag) / area
    return scores, circles


def zernike_shape(labels: np.ndarray, n: int | None = None, degree: int = ZERNIKE_DEGREE) -> dict[str, np.ndarray]:
    """CellProfiler's Zernike shape features of objects ``1..n``.

    Parameters
    ----------
    labels : (H, W) int array
        Non-negative object labels.
    n : int, optional
        Number of objects (default ``labels.max()``); absent labels give NaN.
    degree : int
        Highest Zernike degree (CellProfiler: 9, giving 30 features).

    Returns
    -------
    dict
        ``{"Zernike_<n>_<m>": (n,) float64}`` (dimensionless), in CellProfiler's order.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:41, :41]
    >>> disk = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 400).astype(np.int32)
    >>> z = zernike_shape(disk)
    >>> round(float(z["Zernike_0_0"][0]), 2), round(float(z["Zernike_1_1"][0]), 6)
    (1.0, 0.0)
    """
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    n = int(labels.max(initial=0)) if n is None else int(n)
    indexes = zernike_indexes(degree)
    scores, _ = _zernike_kernel(labels.astype(np.int32, copy=False), n, indexes, radial_coefficients(indexes))
    return {f"Zernike_{zn}_{zm}": scores[:, q] for q, (zn, zm) in enumerate(indexes)}
