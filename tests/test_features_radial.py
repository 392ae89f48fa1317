"""RadialDistribution (CellProfiler MeasureObjectIntensityDistribution) against cp-measure."""

from __future__ import annotations

import numpy as np
import pytest
from _parity import EXAMPLEHUMAN, assert_close, contiguous, examplehuman, synthetic_image, synthetic_labels

from moa_features.features.radial import _edge_distance, radial_distribution, radial_geometry

needs_examplehuman = pytest.mark.skipif(
    not (EXAMPLEHUMAN / "Nuclei.csv").exists(), reason=f"ExampleHuman data not found at {EXAMPLEHUMAN}"
)


def _compare(labels: np.ndarray, plane: np.ndarray) -> None:
    cp = pytest.importorskip("cp_measure.core.measureobjectintensitydistribution")
    ours = radial_distribution(plane, radial_geometry(labels))
    theirs = cp.get_radial_distribution(labels, plane)
    assert len(theirs) == 12
    for name, values in theirs.items():
        assert_close(ours[name.removeprefix("RadialDistribution_")], values, name, rtol=1e-6, atol=1e-12)


def test_edge_distance_is_the_distance_to_the_nearest_other_pixel():
    from scipy.ndimage import distance_transform_edt

    labels = synthetic_labels(1)
    ours = _edge_distance(labels, int(labels.max()))
    for k in range(1, int(labels.max()) + 1):
        own = labels == k
        assert_close(ours[own], distance_transform_edt(own)[own], f"object {k}", rtol=0, atol=1e-12)


def test_uniform_object_has_mean_fraction_one_and_no_radial_variation():
    labels = np.zeros((40, 40), np.int32)
    labels[5:35, 8:30] = 1
    r = radial_distribution(np.full((40, 40), 7.0), radial_geometry(labels))
    assert sum(r[f"FracAtD_{k}of4"][0] for k in range(1, 5)) == pytest.approx(1.0)
    for k in range(1, 5):
        assert r[f"MeanFrac_{k}of4"][0] == pytest.approx(1.0)
        assert r[f"RadialCV_{k}of4"][0] == pytest.approx(0.0)


def test_a_bright_rim_puts_the_intensity_in_the_outer_ring():
    yy, xx = np.mgrid[:41, :41]
    d = np.hypot(yy - 20, xx - 20)
    labels = (d <= 18).astype(np.int32)
    plane = np.where(d > 14, 100.0, 1.0)
    r = radial_distribution(plane, radial_geometry(labels))
    assert r["FracAtD_4of4"][0] > 0.7 and r["MeanFrac_4of4"][0] > 1.5 and r["MeanFrac_1of4"][0] < 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_cp_measure_on_synthetic_objects(seed):
    labels = synthetic_labels(seed)
    _compare(labels, synthetic_image(labels, seed)[0].astype(np.float64) / 255)


@needs_examplehuman
@pytest.mark.parametrize("compartment", ["nuclei", "cells", "cytoplasm"])
def test_equals_cp_measure_on_examplehuman_masks(compartment):
    image, masks, _ = examplehuman()
    _compare(contiguous(getattr(masks, compartment)), image[1].astype(np.float64) / 255)
