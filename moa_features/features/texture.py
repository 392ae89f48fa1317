"""Whole-image texture: Haralick/IBSI grey-level co-occurrence features and local binary patterns.

GLCM conventions (explicit, tested against the IBSI digital phantom, scikit-image and mahotas):

- Quantisation to ``levels`` grey levels, fixed for the whole run so values compare across
  images (never a per-image min/max rescaling). Levels are numbered ``0 .. levels-1`` as in
  scikit-image and mahotas. Two schemes, told apart by the feature names:

  - **run** (the default of ``extract``; names end ``_avg_run<levels>``): per channel, a
    monotone map learned once per run, in a first pass, from a sample of the screen's
    control sites (:func:`run_lut`), and recorded in the run's summary (level edges and
    robust range): half equal-frequency levels of the sample, half logarithmic levels over
    its robust range (0.1-99.9th percentile). The grey levels are actually used: over the
    full 8-bit range, 32 levels leave real fluorescence images with 4-8 used levels (RxRx1:
    85 % of a Hoechst channel's pixels in its 2 fullest levels), the run scheme 43 %.
  - **full** (CellProfiler-compatible; names end ``_avg_<levels>``): ``q = v * levels // 256``
    for uint8 and ``q = v * levels // 65536`` for uint16, the whole dtype range. With 256
    levels and 8-bit images this is CellProfiler's MeasureTexture: ``extract
    --texture-scheme full --texture-levels 256 --texture-distances 3`` reproduces its
    image-level texture (checked against mahotas, which CellProfiler calls).
- Symmetric matrix (each pair counted in both orders); distance ``d`` in pixels; directions
  0, 45, 90 and 135 degrees as pixel offsets ``(row, col)`` = ``(0, d), (d, d), (d, 0),
  (d, -d)`` (rows point down; the offsets of ``skimage.feature.graycomatrix`` and
  ``mahotas.features.haralick``); diagonal offsets are ``(d, d)`` as in IBSI, mahotas and
  CellProfiler (scikit-image rounds ``d*sin``, ``d*cos`` instead, so its diagonal matrices
  differ for ``d > 1``); with a mask, only pairs with both pixels inside count.
- One matrix per direction, features per matrix, then averaged over the four directions.
- IBSI feature definitions (Zwanenburg et al. 2020, section 3.6), entropies in bits (log 2).
  mahotas' (and so CellProfiler's) "difference variance" is the variance of the *values* of
  ``p_{x-y}``, not IBSI's variance of ``|i-j|`` under ``p_{x-y}``; scikit-image's entropy
  uses the natural log.
- Degenerate matrices: correlation is 1 when a marginal variance is 0 and information
  correlation 1 is 0 when both marginal entropies are 0 (a single grey level), as in
  mahotas/CellProfiler and scikit-image; a matrix without any pair gives NaN.

Local binary patterns: the rotation-invariant uniform LBP (Ojala et al. 2002) with 8
neighbours on the circle of radius 1, diagonal neighbours bilinearly interpolated, pixels
outside the image taken as 0 -- the same codes as
``skimage.feature.local_binary_pattern(plane, 8, 1, "uniform")``, in one compiled pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moa_features.features import _texture_kernels as kernels
from moa_features.features.segmentation import check_image

ANGLES: tuple[int, ...] = (0, 45, 90, 135)
SCHEMES: tuple[str, ...] = ("run", "full")

# Per-site subset: the 13 classic Haralick measures, CellProfiler names -> glcm_features keys.
HARALICK: dict[str, str] = {
    "AngularSecondMoment": "angular_second_moment",
    "Contrast": "contrast",
    "Correlation": "correlation",
    "Variance": "joint_variance",
    "InverseDifferenceMoment": "inverse_difference_moment",
    "SumAverage": "sum_average",
    "SumVariance": "sum_variance",
    "SumEntropy": "sum_entropy",
    "Entropy": "joint_entropy",
    "DifferenceVariance": "difference_variance",
    "DifferenceEntropy": "difference_entropy",
    "InfoMeas1": "information_correlation_1",
    "InfoMeas2": "information_correlation_2",
}

LBP_POINTS = 8
LBP_BINS = LBP_POINTS + 2  # 0..8 ones in a uniform pattern, 9 = non-uniform

_HARALICK_DOCS: dict[str, tuple[str, str]] = {
    "AngularSecondMoment": ("1", "Angular second moment (energy), sum_ij p_ij^2."),
    "Contrast": ("grey level^2", "sum_ij (i-j)^2 p_ij."),
    "Correlation": ("1", "sum_ij (i-mu_x)(j-mu_y) p_ij / (sigma_x sigma_y); 1 for a single grey level."),
    "Variance": ("grey level^2", "Joint variance (Haralick's sum of squares), sum_ij (i-mu_x)^2 p_ij."),
    "InverseDifferenceMoment": ("1", "sum_ij p_ij / (1 + (i-j)^2)."),
    "SumAverage": ("grey level", "sum_k k p_{x+y}(k), k = i+j with 0-based levels."),
    "SumVariance": ("grey level^2", "sum_k (k - SumAverage)^2 p_{x+y}(k)."),
    "SumEntropy": ("bit", "-sum_k p_{x+y}(k) log2 p_{x+y}(k)."),
    "Entropy": ("bit", "Joint entropy, -sum_ij p_ij log2 p_ij."),
    "DifferenceVariance": (
        "grey level^2",
        "IBSI difference variance, sum_k (k - mu_d)^2 p_{x-y}(k), k = |i-j| (not mahotas/CellProfiler's variance of "
        "the p_{x-y} values).",
    ),
    "DifferenceEntropy": ("bit", "-sum_k p_{x-y}(k) log2 p_{x-y}(k)."),
    "InfoMeas1": ("1", "Information correlation 1, (HXY - HXY1) / max(HX, HY); 0 for a single grey level."),
    "InfoMeas2": ("1", "Information correlation 2, sqrt(1 - exp(-2 (HXY2 - HXY)))."),
}

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        f"Image_Texture_{name}_<ch>_<d>_avg_<q>",
        unit,
        f"{definition} GLCM at distance d pixels, averaged over 0/45/90/135 degrees; <q> = run<levels>: run-fixed "
        "percentile quantisation (default), <q> = <levels>: full-range quantisation (CellProfiler-compatible).",
    )
    for name, (unit, definition) in _HARALICK_DOCS.items()
] + [
    (
        "Image_Texture_LBP<k>_<ch>",
        "fraction (0-1)",
        "Fraction of pixels whose rotation-invariant uniform local binary pattern (8 neighbours, radius 1, "
        "bilinear diagonals, as skimage 'uniform') has k neighbours >= the centre (k = 0..8); k = 9: non-uniform "
        "patterns.",
    ),
]

TEXTURE_CONVENTIONS = __doc__[__doc__.index("GLCM conventions") :].strip()  # for docs/features.md


def quantize(plane: np.ndarray, levels: int) -> np.ndarray:
    """Fixed quantisation of a uint8/uint16 plane to grey levels ``0 .. levels-1``.

    ``q = v * levels // 2**bits`` with bits = 8 or 16, whatever the image's own range.

    Parameters
    ----------
    plane : ndarray of uint8 or uint16, any shape
        Grey values.
    levels : int
        Number of grey levels, 2 to ``2**bits``.

    Returns
    -------
    ndarray of uint8 or uint16, shape of ``plane``
        Levels in ``[0, levels)`` (uint8 when ``levels <= 256``).

    Raises
    ------
    ValueError
        If the dtype is not uint8/uint16 or ``levels`` is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> quantize(np.array([0, 7, 8, 255], np.uint8), 32).tolist()
    [0, 0, 1, 31]
    """
    if plane.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got dtype {plane.dtype}")
    span = int(np.iinfo(plane.dtype).max) + 1
    if not 2 <= levels <= span:
        raise ValueError(f"levels must be between 2 and {span} for {plane.dtype}, got {levels}")
    out_dtype = np.uint8 if levels <= 256 else np.uint16
    lut = (np.arange(span, dtype=np.int64) * levels // span).astype(out_dtype)
    return _lookup(lut, plane)


def _lookup(table: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """``table[plane]`` (compiled; the values of ``plane`` are below ``table.size``)."""
    return kernels.lookup(table, np.ascontiguousarray(plane).reshape(-1)).reshape(plane.shape)


ROBUST_RANGE = (0.1, 99.9)  # percentiles of the sample that bound the logarithmic half of the run scheme


def run_lut(hist: np.ndarray, levels: int) -> np.ndarray:
    """Lookup table grey value -> level of the **run** scheme, from a pooled histogram.

    Grey value ``v`` goes to level ``min(levels-1, floor(levels * F(v)))`` with ``F`` the mean
    of two cumulative scales:

    - the sample's mid-rank cumulative fraction ``(count(< v) + count(== v) / 2) / total``
      (equal-frequency levels: the grey levels are actually used), and
    - ``log(1 + v - lo) / log(1 + hi - lo)`` clipped to [0, 1], over the sample's robust
      range ``lo, hi`` = its 0.1 and 99.9 percentiles (levels for every part of the range,
      so a bright cell type is not squashed by a dark majority, and the dark background's
      few grey values stay apart).

    ``F`` is monotone, so the map is too, and it is fixed for the whole run.

    Parameters
    ----------
    hist : ndarray of int, shape (256,) or (65536,)
        Pixel counts per grey value of a channel over a sample of sites (the run's control
        sites).
    levels : int
        Number of grey levels.

    Returns
    -------
    ndarray of uint8, shape of ``hist``
        ``lut[v]`` = level of grey value ``v``, non-decreasing in ``v``.

    Examples
    --------
    >>> import numpy as np
    >>> lut = run_lut(np.bincount(np.arange(256)), 8)
    >>> lut[[0, 1, 255]].tolist(), bool(np.all(np.diff(lut.astype(int)) >= 0))
    ([0, 0, 7], True)
    """
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 1 or hist.size not in (256, 65536):
        raise ValueError(f"expected a (256,) or (65536,) histogram, got shape {hist.shape}")
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, got {levels}")
    total = hist.sum()
    if total <= 0:
        raise ValueError("cannot learn quantisation levels from an empty histogram")
    cum = np.cumsum(hist)
    rank = (cum - hist / 2) / total
    lo, hi = robust_range(hist)
    grey = np.arange(hist.size, dtype=np.float64)
    log_scale = np.clip(np.log1p(np.maximum(grey - lo, 0)) / np.log1p(hi - lo + 1), 0, 1)
    return np.minimum(np.floor(levels * (rank + log_scale) / 2), levels - 1).astype(np.uint8)


def robust_range(hist: np.ndarray) -> tuple[int, int]:
    """The grey values at the :data:`ROBUST_RANGE` percentiles of a histogram's sample.

    Parameters
    ----------
    hist : ndarray of int, shape (L,)
        Pixel counts per grey value.

    Returns
    -------
    tuple of int
        ``(lo, hi)``, grey values.

    Examples
    --------
    >>> import numpy as np
    >>> robust_range(np.ones(256))
    (0, 255)
    """
    cum = np.cumsum(np.asarray(hist, dtype=np.float64))
    lo, hi = (int(np.searchsorted(cum, q / 100 * cum[-1])) for q in ROBUST_RANGE)
    return lo, hi


def texture_suffix(levels: int, scheme: str) -> str:
    """The name suffix of a quantisation scheme: ``run32`` (run) or ``32`` (full).

    Parameters
    ----------
    levels : int
        Number of grey levels.
    scheme : {"run", "full"}
        Quantisation scheme.

    Returns
    -------
    str
        The suffix of the ``..._avg_<suffix>`` feature names.

    Raises
    ------
    ValueError
        If ``scheme`` is not one of :data:`SCHEMES`.

    Examples
    --------
    >>> texture_suffix(32, "run"), texture_suffix(256, "full")
    ('run32', '256')
    """
    if scheme not in SCHEMES:
        raise ValueError(f"texture scheme must be one of {SCHEMES}, got {scheme!r}")
    return f"run{levels}" if scheme == "run" else str(levels)


def offset(distance: int, angle: int) -> tuple[int, int]:
    """Pixel offset of a GLCM direction (rows point down).

    Parameters
    ----------
    distance : int
        Offset length in pixels, >= 1.
    angle : {0, 45, 90, 135}
        Direction in degrees.

    Returns
    -------
    tuple of int
        ``(row, col)`` offset in pixels.

    Raises
    ------
    ValueError
        If the angle or distance is not allowed.

    Examples
    --------
    >>> offset(3, 135)
    (3, -3)
    """
    offsets = {0: (0, distance), 45: (distance, distance), 90: (distance, 0), 135: (distance, -distance)}
    if angle not in offsets:
        raise ValueError(f"angle must be one of {ANGLES} degrees, got {angle}")
    if distance < 1:
        raise ValueError(f"distance must be a positive number of pixels, got {distance}")
    return offsets[angle]


def _pair_views(a: np.ndarray, dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(first, second)`` of a 2-D array so that ``second`` is ``first`` moved by (dr, dc)
    (empty when the offset is as long as the array)."""
    h, w = a.shape
    r0, c0 = max(0, -dr), max(0, -dc)
    r1, c1 = max(r0, h - max(0, dr)), max(c0, w - max(0, dc))
    return a[r0:r1, c0:c1], a[r0 + dr : r1 + dr, c0 + dc : c1 + dc]


def glcm(
    image: np.ndarray, levels: int, distance: int = 1, angle: int = 0, mask: np.ndarray | None = None
) -> np.ndarray:
    """Symmetric grey-level co-occurrence counts of an integer image.

    Parameters
    ----------
    image : ndarray of int, shape (H, W)
        Grey levels in ``[0, levels)``.
    levels : int
        Number of grey levels (L).
    distance : int, default 1
        Offset in pixels.
    angle : {0, 45, 90, 135}, default 0
        Direction in degrees.
    mask : ndarray of bool, shape (H, W), optional
        A pair counts only when both its pixels are inside.

    Returns
    -------
    ndarray of int64, shape (L, L)
        Counts ``P`` with ``P == P.T``.

    Examples
    --------
    >>> import numpy as np
    >>> glcm(np.array([[0, 1], [1, 1]]), levels=2).tolist()
    [[0, 1], [1, 2]]
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if mask is not None and mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    dr, dc = offset(distance, angle)
    first, second = _pair_views(image.astype(np.intp, copy=False), dr, dc)
    if mask is not None:
        inside_first, inside_second = _pair_views(mask.astype(bool, copy=False), dr, dc)
        both = inside_first & inside_second
        first, second = first[both], second[both]
    if first.size and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= levels):
        raise ValueError(f"image values (inside the mask) must lie in [0, {levels}); quantize the image first")
    index = first * levels + second
    counts = np.bincount(index.ravel(), minlength=levels * levels).reshape(levels, levels)
    return counts + counts.T


def _glcm_stack(q: np.ndarray, levels: int, distance: int) -> np.ndarray:
    """The four directions' symmetric GLCMs of a quantised plane, ``(4, levels, levels)`` int64.

    One compiled pass over ``q`` counts the pairs of all four directions.
    """
    if q.size and (int(q.min()) < 0 or int(q.max()) >= levels):
        raise ValueError(f"quantised levels must lie in [0, {levels}), got {int(q.min())} .. {int(q.max())}")
    counts = np.zeros((len(ANGLES), levels, levels), dtype=np.int64)
    kernels.cooccurrence_counts(q, distance, counts)
    return counts + counts.transpose(0, 2, 1)


def _entropy(p: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``-sum p log2 p`` over ``axes`` with ``0 log 0 = 0``."""
    return -np.sum(p * np.log2(np.where(p > 0, p, 1.0)), axis=axes)


def glcm_features(P: np.ndarray, first_level: int = 0) -> dict[str, float] | dict[str, np.ndarray]:
    """IBSI co-occurrence features of one GLCM or a stack of them.

    Parameters
    ----------
    P : ndarray, shape (L, L) or (..., L, L)
        Counts or probabilities (normalised here); row/column ``k`` is grey level
        ``first_level + k`` and ``N_g = L``.
    first_level : int, default 0
        Grey level of the first row and column.

    Returns
    -------
    dict of str to float or ndarray
        Floats for one matrix, arrays of shape ``P.shape[:-2]`` for a stack. Keys (IBSI
        names): ``joint_maximum, joint_average, joint_variance, joint_entropy,
        difference_average, difference_variance, difference_entropy, sum_average,
        sum_variance, sum_entropy, angular_second_moment, contrast, dissimilarity,
        inverse_difference, normalised_inverse_difference, inverse_difference_moment,
        normalised_inverse_difference_moment, inverse_variance, correlation, autocorrelation,
        cluster_tendency, cluster_shade, cluster_prominence, information_correlation_1,
        information_correlation_2``, in grey levels (or their powers); entropies in bits.

    Examples
    --------
    >>> import numpy as np
    >>> f = glcm_features(np.array([[2, 0], [0, 2]]))
    >>> f["joint_entropy"], f["contrast"], f["correlation"]
    (1.0, 0.0, 1.0)
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim < 2 or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"expected a square (..., L, L) matrix, got shape {P.shape}")
    L = P.shape[-1]
    ij = (-2, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = P / P.sum(axis=ij, keepdims=True)
        g = np.arange(L, dtype=np.float64) + first_level
        gi, gj = g[:, None], g[None, :]
        px = p.sum(axis=-1)  # marginal over j: p_i
        py = p.sum(axis=-2)
        mu_x = px @ g
        mu_y = py @ g
        dx = g - mu_x[..., None]
        dy = g - mu_y[..., None]
        var_x = np.sum(dx * dx * px, axis=-1)
        var_y = np.sum(dy * dy * py, axis=-1)
        cov = np.sum(dx[..., :, None] * dy[..., None, :] * p, axis=ij)

        k_diff = np.abs(np.subtract.outer(np.arange(L), np.arange(L)))
        k_sum = np.add.outer(np.arange(L), np.arange(L))
        flat = p.reshape(*p.shape[:-2], L * L)
        p_diff = flat @ np.eye(L)[k_diff.ravel()]  # (..., L): k = |i-j|
        p_sum = flat @ np.eye(2 * L - 1)[k_sum.ravel()]  # (..., 2L-1): k = i+j-2*first_level
        kd = np.arange(L, dtype=np.float64)
        ks = np.arange(2 * L - 1, dtype=np.float64) + 2 * first_level
        diff_avg = p_diff @ kd
        sum_avg = p_sum @ ks
        d_abs = np.abs(gi - gj)
        d_sq = (gi - gj) ** 2
        cluster = gi + gj - (mu_x + mu_y)[..., None, None]

        hxy = _entropy(p, ij)
        hx = _entropy(px, (-1,))
        hy = _entropy(py, (-1,))
        pxpy = px[..., :, None] * py[..., None, :]
        log_pxpy = np.log2(np.where(pxpy > 0, pxpy, 1.0))
        hxy1 = -np.sum(p * log_pxpy, axis=ij)
        hxy2 = -np.sum(pxpy * log_pxpy, axis=ij)
        h_max = np.maximum(hx, hy)
        sd = np.sqrt(var_x * var_y)

        out = {
            "joint_maximum": p.max(axis=ij),
            "joint_average": mu_x,
            "joint_variance": var_x,
            "joint_entropy": hxy,
            "difference_average": diff_avg,
            "difference_variance": p_diff @ kd**2 - diff_avg**2,
            "difference_entropy": _entropy(p_diff, (-1,)),
            "sum_average": sum_avg,
            "sum_variance": np.sum((ks - sum_avg[..., None]) ** 2 * p_sum, axis=-1),
            "sum_entropy": _entropy(p_sum, (-1,)),
            "angular_second_moment": np.sum(p * p, axis=ij),
            "contrast": np.sum(d_sq * p, axis=ij),
            "dissimilarity": diff_avg,
            "inverse_difference": np.sum(p / (1 + d_abs), axis=ij),
            "normalised_inverse_difference": np.sum(p / (1 + d_abs / L), axis=ij),
            "inverse_difference_moment": np.sum(p / (1 + d_sq), axis=ij),
            "normalised_inverse_difference_moment": np.sum(p / (1 + d_sq / L**2), axis=ij),
            "inverse_variance": p_diff[..., 1:] @ (1 / kd[1:] ** 2),
            "correlation": np.where(sd > 0, cov / sd, np.where(np.isnan(sd), np.nan, 1.0)),
            "autocorrelation": np.sum(gi * gj * p, axis=ij),
            "cluster_tendency": np.sum(cluster**2 * p, axis=ij),
            "cluster_shade": np.sum(cluster**3 * p, axis=ij),
            "cluster_prominence": np.sum(cluster**4 * p, axis=ij),
            "information_correlation_1": np.where(
                h_max > 0, (hxy - hxy1) / h_max, np.where(np.isnan(h_max), np.nan, 0.0)
            ),
            "information_correlation_2": np.sqrt(
                np.maximum(0.0, 1 - np.exp(-2 * (hxy2 - hxy))), where=~np.isnan(hxy), out=np.full(np.shape(hxy), np.nan)
            ),
        }
    if P.ndim == 2:
        return {name: float(value) for name, value in out.items()}
    return out


# skimage's sample points: angle 2*pi*i/8 counter-clockwise from "right" (rows point down),
# offsets rounded to 5 decimals exactly as skimage.feature.local_binary_pattern does.
_LBP_ANGLES = 2 * np.pi * np.arange(LBP_POINTS, dtype=np.float64) / LBP_POINTS
_LBP_ROW_OFFSETS = np.round(-np.sin(_LBP_ANGLES), 5)
_LBP_COL_OFFSETS = np.round(np.cos(_LBP_ANGLES), 5)


def _uniform_lut() -> np.ndarray:
    """``(256,)`` uint8: 8-bit sign pattern -> uniform LBP code (number of ones; 9 if non-uniform)."""
    bits = (np.arange(256)[:, None] >> np.arange(LBP_POINTS)) & 1
    changes = np.sum(bits != np.roll(bits, -1, axis=1), axis=1)
    return np.where(changes <= 2, bits.sum(axis=1), LBP_POINTS + 1).astype(np.uint8)


_UNIFORM = _uniform_lut()
_DIAGONALS = (1, 3, 5, 7)  # up-right, up-left, down-left, down-right: the interpolated samples


def _interpolation_weights(n: int, offset: float) -> np.ndarray:
    """skimage's interpolation weight ``(k + offset) - floor(k + offset)`` for k = 0..n-1, ``(n,)`` float64."""
    coord = np.arange(n, dtype=np.float64) + offset
    return coord - np.floor(coord)


def _lbp_patterns(plane: np.ndarray) -> np.ndarray:
    """8-bit sign patterns of skimage's radius-1 LBP: ``(H, W)`` uint8, bit k = (sample k >= centre).

    Axis samples are pixels; a diagonal sample is skimage's float64 bilinear interpolation,
    replayed operation by operation at every pixel with skimage's weights at that row and
    column (they vary with the rounding of ``k + 0.70711``), so exact ties are decided as
    skimage decides them. One compiled pass over the zero-padded plane.
    """
    h, w = plane.shape
    z = np.zeros((h + 2, w + 2), dtype=plane.dtype)
    z[1:-1, 1:-1] = plane
    dr = np.stack([_interpolation_weights(h, _LBP_ROW_OFFSETS[k]) for k in _DIAGONALS])
    dc = np.stack([_interpolation_weights(w, _LBP_COL_OFFSETS[k]) for k in _DIAGONALS])
    out = np.empty((h, w), dtype=np.uint8)
    kernels.lbp_patterns(z, dr, dc, out)
    return out


def local_binary_pattern_uniform(plane: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP codes (8 points, radius 1) of a plane.

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        Grey values.

    Returns
    -------
    ndarray of uint8, shape (H, W)
        Codes 0..9, equal to ``skimage.feature.local_binary_pattern(plane, 8, 1, method="uniform")``.

    Examples
    --------
    >>> import numpy as np
    >>> int(local_binary_pattern_uniform(np.full((3, 3), 9, np.uint8))[1, 1])
    8
    """
    return _UNIFORM[_lbp_patterns(_check_lbp_plane(plane))]


def _check_lbp_plane(plane: np.ndarray) -> np.ndarray:
    if plane.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {plane.shape}")
    if plane.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got dtype {plane.dtype}")
    return plane


def lbp_histogram(plane: np.ndarray) -> np.ndarray:
    """Normalised histogram of the :func:`local_binary_pattern_uniform` codes of a plane.

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        Grey values.

    Returns
    -------
    ndarray of float64, shape (10,)
        Fraction of pixels per code 0..9 (sums to 1).

    Examples
    --------
    >>> import numpy as np
    >>> float(lbp_histogram(np.full((4, 4), 9, np.uint8)).sum())
    1.0
    """
    patterns = _lbp_patterns(_check_lbp_plane(plane))
    counts = kernels.byte_counts(patterns.reshape(-1))
    return np.bincount(_UNIFORM, weights=counts, minlength=LBP_BINS) / patterns.size


def texture_features(
    image: np.ndarray,
    channels: Sequence[str],
    levels: int = 32,
    distances: Sequence[int] = (1,),
    luts: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """Haralick (GLCM) and LBP texture of every channel.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site.
    channels : sequence of str
        The C channel names.
    levels : int, default 32
        Number of grey levels of the GLCM.
    distances : sequence of int, default (1,)
        GLCM offsets in pixels.
    luts : sequence of ndarray, optional
        One :func:`run_lut` per channel (the **run** scheme, names ``..._avg_run<levels>``);
        ``None``: the **full** scheme (names ``..._avg_<levels>``).

    Returns
    -------
    dict of str to float
        ``Image_Texture_<Measure>_<ch>_<d>_avg_<suffix>`` (13 Haralick measures, averaged over
        4 directions) and ``Image_Texture_LBP<k>_<ch>`` (k = 0..9, fractions).

    Examples
    --------
    >>> import numpy as np
    >>> board = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    >>> texture_features(board[None], ["w1"])["Image_Texture_Contrast_w1_1_avg_32"]
    480.5
    """
    image = check_image(image, channels)
    if luts is not None and len(luts) != len(channels):
        raise ValueError(f"expected one quantisation table per channel ({len(channels)}), got {len(luts)}")
    suffix = texture_suffix(levels, "full" if luts is None else "run")
    out: dict[str, float] = {}
    for c, (plane, ch) in enumerate(zip(image, channels)):
        q = quantize(plane, levels) if luts is None else apply_lut(plane, luts[c], levels)
        for d in distances:
            feats = glcm_features(_glcm_stack(q, levels, int(d)))
            for name, key in HARALICK.items():
                out[f"Image_Texture_{name}_{ch}_{d}_avg_{suffix}"] = float(np.mean(feats[key]))
        for k, fraction in enumerate(lbp_histogram(plane)):
            out[f"Image_Texture_LBP{k}_{ch}"] = float(fraction)
    return out


def apply_lut(plane: np.ndarray, lut: np.ndarray, levels: int) -> np.ndarray:
    """Quantise a uint8/uint16 plane with a :func:`run_lut` table.

    Parameters
    ----------
    plane : ndarray of uint8 or uint16, any shape
        Grey values.
    lut : ndarray of uint8, shape (256,) or (65536,)
        Grey value -> level table.
    levels : int
        Number of grey levels of the table.

    Returns
    -------
    ndarray of uint8, shape of ``plane``
        Levels in ``0 .. levels-1``.

    Examples
    --------
    >>> import numpy as np
    >>> lut = run_lut(np.bincount(np.arange(256)), 4)
    >>> apply_lut(np.array([0, 255], np.uint8), lut, 4).tolist()
    [0, 3]
    """
    if plane.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got dtype {plane.dtype}")
    if lut.size != int(np.iinfo(plane.dtype).max) + 1:
        raise ValueError(
            f"a {plane.dtype} plane needs a {int(np.iinfo(plane.dtype).max) + 1}-entry table, got {lut.size}"
        )
    if int(lut.max(initial=0)) >= levels:
        raise ValueError(f"quantisation table has levels up to {int(lut.max())}, expected fewer than {levels}")
    return _lookup(lut, plane)


def object_texture(q: np.ndarray, labels: np.ndarray, n: int, levels: int, distance: int = 1) -> dict[str, np.ndarray]:
    """Per-object Haralick features (CellProfiler names) of a quantised plane.

    A pair counts for an object when both its pixels belong to it.

    Parameters
    ----------
    q : ndarray of int, shape (H, W)
        Grey levels in ``[0, levels)``.
    labels : ndarray of int, shape (H, W)
        Object labels 1..n, 0 = background.
    n : int
        Number of objects.
    levels : int
        Number of grey levels.
    distance : int, default 1
        Offset in pixels.

    Returns
    -------
    dict of str to ndarray, each shape (n,)
        Feature name -> value per object, averaged over the 4 directions; NaN for objects
        without a pair.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.tile(np.array([0, 1], np.uint8), (4, 2))
    >>> labels = np.ones((4, 4), np.int32)
    >>> float(object_texture(q, labels, 1, 2)["Contrast"][0]) > 0
    True
    """
    L = levels
    total = np.zeros((n + 1, len(ANGLES), L, L), dtype=np.float64)
    for k, angle in enumerate(ANGLES):
        dr, dc = offset(distance, angle)
        a, b = _pair_views(q.astype(np.int64), dr, dc)
        la, lb = _pair_views(labels.astype(np.int64), dr, dc)
        same = (la == lb) & (la > 0)
        counts = np.bincount((la[same] * L + a[same]) * L + b[same], minlength=(n + 1) * L * L)
        counts = counts.reshape(n + 1, L, L)
        total[:, k] = counts + counts.transpose(0, 2, 1)
    feats = glcm_features(total[1:])
    return {name: np.mean(feats[key], axis=-1) for name, key in HARALICK.items()}
