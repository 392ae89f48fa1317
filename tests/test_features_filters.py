"""Compiled filters against SciPy, bit for bit, on real and constructed planes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from moa_features.features.filters import fill_holes, gaussian, squared_distance

from _helpers import load_rxrx1_site


@pytest.fixture(scope="module")
def huvec() -> np.ndarray:
    return load_rxrx1_site("HUVEC-01", 1)  # a real six-channel site, vendored in tests/data


def _planes(huvec):
    rng = np.random.default_rng(0)
    return [
        huvec[0],
        huvec[2],
        rng.integers(0, 65536, size=(37, 53)).astype(np.uint16),
        rng.integers(0, 256, size=(3, 2)).astype(np.uint8),  # shorter than the kernel: reflected many times
        rng.integers(-100, 100, size=(20, 9)).astype(np.int16),
        rng.standard_normal((17, 31)),  # float64: smoothed as its float32 copy, as scipy sees it
        np.zeros((1, 1), np.uint8),
    ]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.3])
def test_gaussian_equals_scipy_bit_for_bit(huvec, sigma):
    for plane in _planes(huvec):
        expected = ndi.gaussian_filter(plane.astype(np.float32), sigma)
        got = gaussian(plane, sigma)
        assert got.dtype == np.float32 and got.shape == plane.shape
        np.testing.assert_array_equal(got, expected)


def test_gaussian_without_smoothing_and_bad_shape():
    plane = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(gaussian(plane, 0), plane.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        gaussian(np.zeros((2, 3, 4)), 1.0)


def _rings(size: int) -> np.ndarray:
    """Concentric square rings, one pixel wide, one apart."""
    y, x = np.indices((size, size))
    return np.maximum(abs(y - size // 2), abs(x - size // 2)) % 2 == 1


def _spiral(size: int) -> np.ndarray:
    """A one-pixel wall winding inwards, leaving a corridor of background from the border to the middle."""
    wall = np.zeros((size, size), bool)
    top, left, bottom, right = 1, 0, size - 2, size - 2
    while top <= bottom and left <= right:
        wall[top, left : right + 1] = True
        wall[top : bottom + 1, right] = True
        wall[bottom, left + 2 : right + 1] = True
        wall[top + 2 : bottom + 1, left + 2] = True
        top, left, bottom, right = top + 4, left + 4, bottom - 4, right - 4
    return wall


def test_fill_holes_equals_scipy(huvec):
    rng = np.random.default_rng(3)
    masks = [
        rng.random((60, 70)) > 0.45,
        rng.random((1, 9)) > 0.5,
        np.ones((4, 4), bool),
        np.zeros((4, 4), bool),
        huvec[0] > 20,
        huvec[2] > 30,
        np.indices((31, 40)).sum(axis=0) % 2 == 0,  # a checkerboard: the most runs, the most pushes
        _rings(41),  # holes inside holes
        _spiral(33),  # background that winds to the middle
    ]
    for mask in masks:
        np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    with pytest.raises(ValueError, match="2-D"):
        fill_holes(np.zeros(5, bool))


def test_squared_distance_equals_scipy_and_mahotas(huvec):
    mahotas = pytest.importorskip("mahotas")
    rng = np.random.default_rng(4)
    masks = [
        rng.random((60, 70)) > 0.3,
        rng.random((1, 9)) > 0.5,
        rng.random((9, 1)) > 0.5,
        np.pad(np.ones((5, 40), bool), ((0, 1), (0, 0))),  # background only on the last row
        huvec[0] > 20,  # real nuclei
        ndi.binary_fill_holes(ndi.gaussian_filter(huvec[0], 1.0) > 12),
    ]
    for mask in masks:
        assert (~mask).any()
        got = squared_distance(mask)
        nearest = ndi.distance_transform_edt(mask, return_distances=False, return_indices=True)
        rows, cols = np.indices(mask.shape)
        np.testing.assert_array_equal(got, (nearest[0] - rows) ** 2 + (nearest[1] - cols) ** 2)  # scipy's, exact
        np.testing.assert_array_equal(got, mahotas.distance(mask))
    assert np.isinf(squared_distance(np.ones((3, 4), bool))).all()  # no background at all
    with pytest.raises(ValueError, match="2-D"):
        squared_distance(np.zeros(5, bool))
