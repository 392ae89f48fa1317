"""Zernike shape features: CellProfiler's definition, against cp-measure and CellProfiler's own output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _parity import EXAMPLEHUMAN, assert_close, examplehuman, synthetic_labels

from moa_features.features.zernike import min_enclosing_circle, zernike_indexes, zernike_shape

from _helpers import match_by_centre

needs_examplehuman = pytest.mark.skipif(
    not (EXAMPLEHUMAN / "Nuclei.csv").exists(), reason=f"ExampleHuman data not found at {EXAMPLEHUMAN}"
)


def test_thirty_features_in_cellprofilers_order():
    names = list(zernike_shape(np.ones((5, 5), np.int32)))
    assert len(names) == 30
    assert names[:5] == ["Zernike_0_0", "Zernike_1_1", "Zernike_2_0", "Zernike_2_2", "Zernike_3_1"]
    assert zernike_indexes()[-1].tolist() == [9, 9]


def test_a_disk_fills_its_circle_and_has_no_odd_moments():
    yy, xx = np.mgrid[:61, :61]
    disk = ((yy - 30) ** 2 + (xx - 30) ** 2 <= 30**2).astype(np.int32)
    z = zernike_shape(disk)
    assert z["Zernike_0_0"][0] == pytest.approx(disk.sum() / (np.pi * 30**2))
    for name in ("Zernike_1_1", "Zernike_3_1", "Zernike_5_3", "Zernike_9_9"):
        assert abs(z[name][0]) < 1e-12


def test_minimum_enclosing_circle_of_a_square_and_degenerate_objects():
    square = np.array([[0.0, 0.0], [0.0, 4.0], [4.0, 4.0], [4.0, 0.0]])
    c0, c1, r = min_enclosing_circle(square)
    assert (c0, c1) == (2.0, 2.0) and r == pytest.approx(np.sqrt(8))
    labels = np.zeros((6, 6), np.int32)
    labels[2, 2] = 1
    z = zernike_shape(labels, 2)  # label 2 absent, label 1 a single pixel (radius 0)
    assert np.isnan(z["Zernike_0_0"]).all()


def test_equals_cp_measure_on_synthetic_objects():
    cp = pytest.importorskip("cp_measure.core.measureobjectsizeshape")
    labels = synthetic_labels(0)
    ours, theirs = zernike_shape(labels), cp.get_zernike(labels, None)
    assert len(theirs) == 30
    for name, values in theirs.items():
        # atol: moments that vanish by symmetry are round-off (1e-17) on both sides
        assert_close(ours[name], values, name, rtol=1e-6, atol=1e-12)


@needs_examplehuman
@pytest.mark.parametrize("compartment", ["nuclei", "cells", "cytoplasm"])
def test_equals_cp_measure_on_examplehuman_masks(compartment):
    """Equal to 1e-6, except where cp-measure's own value depends on the other objects.

    centrosome finds all circles at once, and where two hull vertices tie in Chrystal's angle
    test, scipy's ``minimum_position`` over all labels may pick the other one (scipy gh-25279):
    the circle's radius then differs in the last bit and a pixel on the circle flips. For those
    objects ours must equal cp-measure on the object alone.
    """
    cp = pytest.importorskip("cp_measure.core.measureobjectsizeshape")
    from _parity import contiguous

    _, masks, _ = examplehuman()
    labels = contiguous(getattr(masks, compartment))
    ours, theirs = zernike_shape(labels), cp.get_zernike(labels, None)
    off = np.zeros(int(labels.max()), bool)
    for name, values in theirs.items():
        off |= ~np.isclose(ours[name], values, rtol=1e-6, atol=1e-12)
    assert off.sum() <= 2
    for k in np.flatnonzero(off):
        alone = cp.get_zernike((labels == k + 1).astype(np.int32), None)
        for name, values in alone.items():
            assert_close(ours[name][k], values[0], f"{name} of object {k + 1}", rtol=1e-6, atol=1e-12)


@needs_examplehuman
def test_nuclear_zernike_matches_cellprofilers_own_output():
    """Issue 21: matched nuclei within a median absolute difference of 0.005 of CellProfiler 4.0.6."""
    _, masks, objects = examplehuman()
    theirs = pd.read_csv(EXAMPLEHUMAN / "Nuclei.csv")
    ours_xy = np.column_stack([objects["Location_Center_X"], objects["Location_Center_Y"]])
    i, j = match_by_centre(ours_xy, theirs[["Location_Center_X", "Location_Center_Y"]].to_numpy(), 5.0)
    z = zernike_shape(masks.nuclei, masks.n)
    same = objects["Nuclei_AreaShape_Area"][i] == theirs["AreaShape_Area"].to_numpy()[j]
    assert len(i) >= 250 and same.sum() >= 190
    for name, values in z.items():
        cp = theirs[f"AreaShape_{name}"].to_numpy()[j]
        assert np.median(np.abs(values[i] - cp)) <= 0.005, name
        # the same objects (same area): equal to round-off on all but a few pixel-different masks
        agree = np.isclose(values[i][same], cp[same], rtol=1e-6, atol=1e-12)
        assert agree.mean() >= 0.98, name


def _shapes(rng: np.random.Generator):
    """Single objects in 40x40 images: random blobs, and symmetric ones whose hull vertices tie."""
    yy, xx = np.mgrid[:40, :40]
    for _ in range(120):  # unions of two or three disks
        shape = np.zeros((40, 40), bool)
        for _ in range(rng.integers(2, 4)):
            cy, cx, r = rng.uniform(12, 28), rng.uniform(12, 28), rng.uniform(2, 10)
            shape |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        yield shape
    for r in range(2, 15):  # squares, diamonds, octagons, disks: equal angles everywhere
        yield (abs(yy - 20) <= r) & (abs(xx - 20) <= r)
        yield abs(yy - 20) + abs(xx - 20) <= r
        yield (abs(yy - 20) <= r) & (abs(xx - 20) <= r) & (abs(yy - 20) + abs(xx - 20) <= 3 * r // 2)
        yield (yy - 20) ** 2 + (xx - 20) ** 2 <= r * r


def test_enclosing_circles_equal_centrosomes_bit_for_bit():
    """Chrystal's choices are made on exact angles only where a cheap bound cannot rule a vertex out:
    centre and radius equal CellProfiler's (centrosome) on one object at a time."""
    cpmorphology = pytest.importorskip("centrosome.cpmorphology")
    from moa_features.features.zernike import _zernike_kernel, radial_coefficients

    indexes = zernike_indexes()
    coefficients = radial_coefficients(indexes)
    for shape in _shapes(np.random.default_rng(0)):
        labels = shape.astype(np.int32)
        _, circles = _zernike_kernel(labels, 1, indexes, coefficients)
        centres, radius = cpmorphology.minimum_enclosing_circle(labels, np.array([1]))
        assert circles[0].tolist() == [centres[0, 0], centres[0, 1], radius[0]]
