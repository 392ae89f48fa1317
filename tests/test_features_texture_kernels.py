"""Compiled texture kernels against independent implementations: skimage's LBP, direct loops, numpy.

The kernels (moa_features/features/_texture_kernels.py) must give the very same integers as
the references, on constructed and random planes, tiny and constant ones, uint8 and uint16.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import graycomatrix, local_binary_pattern

from moa_features.features import _texture_kernels as kernels
from moa_features.features.texture import (
    ANGLES,
    _glcm_stack,
    _lbp_patterns,
    apply_lut,
    glcm,
    lbp_histogram,
    local_binary_pattern_uniform,
    offset,
    quantize,
    run_lut,
)

SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 3), (4, 9), (17, 13)]
SKIMAGE_ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]  # the same offsets as ANGLES at distance 1


def _planes(shape: tuple[int, int], seed: int):
    """Constant planes (both extremes), few grey levels (exact ties) and full-range noise, uint8 and uint16."""
    rng = np.random.default_rng(seed)
    for dtype in (np.uint8, np.uint16):
        top = int(np.iinfo(dtype).max)
        yield np.zeros(shape, dtype)
        yield np.full(shape, top, dtype)
        yield np.full(shape, 3, dtype)
        for levels in (2, 3, 17, top + 1):
            yield rng.integers(0, levels, size=shape).astype(dtype)


def _cooccurrence_loop(q: np.ndarray, levels: int, distance: int) -> np.ndarray:
    """Direct loop: for every pixel and direction, count the (pixel, partner) pair both ways."""
    h, w = q.shape
    out = np.zeros((len(ANGLES), levels, levels), dtype=np.int64)
    for k, angle in enumerate(ANGLES):
        dr, dc = offset(distance, angle)
        for r in range(h):
            for c in range(w):
                if 0 <= r + dr < h and 0 <= c + dc < w:
                    a, b = q[r, c], q[r + dr, c + dc]
                    out[k, a, b] += 1
                    out[k, b, a] += 1
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_lbp_patterns_equal_skimage_default_codes(shape):
    # skimage's "default" method is the raw pattern sum_k 2^k [sample k >= centre]: all 8 bits checked.
    for plane in _planes(shape, seed=sum(shape)):
        expected = local_binary_pattern(plane, 8, 1, "default")
        np.testing.assert_array_equal(_lbp_patterns(plane), expected, err_msg=f"{plane.dtype} {plane.max()}")
        uniform = local_binary_pattern(plane, 8, 1, "uniform")
        np.testing.assert_array_equal(local_binary_pattern_uniform(plane), uniform)
        counts = np.bincount(uniform.astype(int).ravel(), minlength=10)
        np.testing.assert_array_equal(lbp_histogram(plane), counts / plane.size)


@pytest.mark.parametrize("shape", [(3000, 3), (3, 3000)])
def test_lbp_ties_along_long_rows_and_columns(shape):
    # skimage's interpolation weights (k + 0.70711) - floor(k + 0.70711) change with the rounding
    # of k; far along an axis, ties (few grey levels, flat patches) are decided by those weights.
    rng = np.random.default_rng(5)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        plane = rng.integers(top - 2, top + 1, size=shape).astype(dtype)
        np.testing.assert_array_equal(_lbp_patterns(plane), local_binary_pattern(plane, 8, 1, "default"))


def test_lbp_constructed_patterns():
    # A bright centre sees no neighbour >= itself (pattern 0); a dark centre sees all eight (255).
    peak = np.zeros((3, 3), np.uint8)
    peak[1, 1] = 200
    assert _lbp_patterns(peak)[1, 1] == 0 and _lbp_patterns(200 - peak)[1, 1] == 255
    # A bright right column: its middle pixel sees 1000 up (bit 2) and down (bit 6) only; right is
    # the zero padding and each diagonal sample mixes in zeros. The centre (0) sees all >= itself.
    edge = np.zeros((3, 3), np.uint16)
    edge[:, 2] = 1000
    assert _lbp_patterns(edge)[1, 1] == 0b11111111
    assert _lbp_patterns(edge)[1, 2] == 0b01000100


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("distance", [1, 2, 5])
def test_cooccurrence_equals_direct_loop_and_numpy(shape, distance):
    rng = np.random.default_rng(distance)
    for levels in (2, 7, 300):
        q = rng.integers(0, levels, size=shape).astype(np.uint8 if levels <= 256 else np.uint16)
        stack = _glcm_stack(q, levels, distance)
        np.testing.assert_array_equal(stack, _cooccurrence_loop(q, levels, distance))
        np.testing.assert_array_equal(stack, [glcm(q, levels, distance, angle) for angle in ANGLES])
        assert stack.dtype == np.int64 and stack.shape == (4, levels, levels)


def test_cooccurrence_equals_skimage_at_distance_one():
    q = quantize(np.random.default_rng(3).integers(0, 256, size=(64, 80)).astype(np.uint8), 32)
    ref = graycomatrix(q, [1], SKIMAGE_ANGLES, levels=32, symmetric=True)[:, :, 0, :]
    np.testing.assert_array_equal(_glcm_stack(q, 32, 1), np.moveaxis(ref, -1, 0))


def test_cooccurrence_constant_plane_and_no_pairs():
    stack = _glcm_stack(np.full((5, 6), 4, np.uint8), 8, 1)
    # all pairs (4, 4): 2 * (5*5, 4*5, 4*6, 4*5) for 0, 45, 90, 135 degrees
    assert stack[:, 4, 4].tolist() == [50, 40, 48, 40] and stack.sum() == stack[:, 4, 4].sum()
    assert _glcm_stack(np.zeros((3, 3), np.uint8), 4, 3).sum() == 0  # the partner is always outside


def test_cooccurrence_rejects_levels_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        _glcm_stack(np.array([[0, 4]], np.uint8), 4, 1)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        _glcm_stack(np.array([[0, -1]], np.int16), 4, 1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lookup_equals_numpy_indexing(dtype):
    rng = np.random.default_rng(8)
    top = int(np.iinfo(dtype).max) + 1
    plane = rng.integers(0, top, size=(37, 41)).astype(dtype)
    for levels in (2, 32, 256):
        np.testing.assert_array_equal(quantize(plane, levels), (plane.astype(np.int64) * levels // top))
        assert quantize(plane, levels).dtype == np.uint8
    lut = run_lut(np.bincount(plane.ravel(), minlength=top), 32)
    for view in (plane, plane[:, ::3], plane[5], plane[:0]):  # 2-D, strided, 1-D, empty
        out = apply_lut(view, lut, 32)
        np.testing.assert_array_equal(out, lut[view])
        assert out.dtype == lut.dtype and out.shape == view.shape


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1001])
def test_byte_counts_equal_bincount(n):
    values = np.random.default_rng(n).integers(0, 256, size=n).astype(np.uint8)
    np.testing.assert_array_equal(kernels.byte_counts(values), np.bincount(values, minlength=256))
