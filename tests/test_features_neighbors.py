"""The neighbors family (CellProfiler's MeasureObjectNeighbors): known answers, the registry and the
object table, and equality with cp-measure's ``measureobjectneighbors`` on the same masks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from moa_features.datasets import read_image
from moa_features.features import FeatureParams, masks_from_labels, measure_site, segment
from moa_features.features.catalog import pattern_regex
from moa_features.features.neighbors import FEATURE_DOCS, NEIGHBOR_MEASURES, neighbors_features, object_neighbors

EXAMPLEHUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cellprofiler_examplehuman"


def test_two_touching_squares_and_a_far_one():
    labels = np.zeros((12, 30), np.int32)
    labels[1:4, 1:4], labels[1:4, 4:7] = 1, 2  # side by side
    labels[8:11, 25:28] = 3  # alone
    m = object_neighbors(labels)
    np.testing.assert_array_equal(m["NumberOfNeighbors"], [1, 1, 0])
    # 8 outline pixels per 3x3 square; the 3 facing the other square touch it
    np.testing.assert_allclose(m["PercentTouching"], [37.5, 37.5, 0])
    np.testing.assert_allclose(m["FirstClosestDistance"], [3, 3, np.hypot(7, 21)])
    np.testing.assert_allclose(m["SecondClosestDistance"], [np.hypot(7, 24), np.hypot(7, 21), np.hypot(7, 24)])
    assert m["AngleBetweenNeighbors"][1] == pytest.approx(180 - np.degrees(np.arctan2(7, 21)))
    within_3 = object_neighbors(labels, distance=3)
    np.testing.assert_array_equal(within_3["NumberOfNeighbors"], [1, 1, 0])


def test_a_gap_counts_only_within_the_distance():
    labels = np.zeros((5, 12), np.int32)
    labels[1:4, 1:4], labels[1:4, 6:9] = 1, 2  # two background columns between them
    assert object_neighbors(labels, distance=1)["NumberOfNeighbors"].tolist() == [0, 0]
    assert object_neighbors(labels, distance=2)["NumberOfNeighbors"].tolist() == [0, 0]
    assert object_neighbors(labels, distance=3)["NumberOfNeighbors"].tolist() == [1, 1]


def test_one_or_two_objects_give_cellprofilers_zeros_and_absent_labels_nan():
    one = np.zeros((6, 6), np.int32)
    one[1:3, 1:3] = 1
    assert all(values.tolist() == [0.0] for values in object_neighbors(one).values())
    two = one.copy()
    two[4:6, 4:6] = 3  # label 2 absent
    m = object_neighbors(two)
    assert np.isnan(m["FirstClosestDistance"][1]) and m["FirstClosestDistance"][0] == pytest.approx(np.hypot(3, 3))
    assert m["SecondClosestDistance"][[0, 2]].tolist() == [0, 0] and m["AngleBetweenNeighbors"][0] == 0
    with pytest.raises(ValueError, match="distance"):
        object_neighbors(one, distance=0)
    with pytest.raises(ValueError, match="labels"):
        object_neighbors(one.astype(float))


def test_family_gives_cellprofilers_names_per_object_and_per_site():
    nuclei = np.zeros((40, 40), np.int32)
    cells = np.zeros_like(nuclei)
    for k, x in enumerate((2, 14, 26), start=1):
        nuclei[15:21, x + 2 : x + 8] = k
        cells[10:26, x : x + 12] = k  # touching cells in a row
    image = np.full((2, 40, 40), 9, np.uint8)
    params = FeatureParams(families=("neighbors",), objects=True)
    features, objects = measure_site(image, ["a", "b"], params, masks=masks_from_labels(nuclei, cells))
    assert list(objects)[:3] == ["ObjectNumber", "Location_Center_X", "Location_Center_Y"]
    np.testing.assert_array_equal(objects["Cells_Neighbors_NumberOfNeighbors_Adjacent"], [1, 2, 1])
    np.testing.assert_array_equal(objects["Nuclei_Neighbors_NumberOfNeighbors_1"], [0, 0, 0])
    assert features["Cells_Neighbors_NumberOfNeighbors_Adjacent_Mean"] == pytest.approx(4 / 3)
    assert features["Nuclei_Neighbors_FirstClosestDistance_1_Median"] == 12
    assert "Cells_Neighbors_FirstClosestObjectNumber_Adjacent" not in objects
    assert not any(name.startswith("Image_") or "Intensity" in name for name in features)
    without = measure_site(image, ["a", "b"], FeatureParams(families=("intensity",)), masks=None)[0]
    assert not any("Neighbors" in name for name in without)


def test_every_column_is_documented():
    masks = masks_from_labels(*(ndi.label(np.eye(8, dtype=bool) | np.eye(8, dtype=bool)[::-1])[0],) * 2)
    names = [f"{name}_Median" for name in neighbors_features(masks)]
    patterns = [pattern_regex(pattern) for pattern, _, _ in FEATURE_DOCS]
    assert len(names) == 2 * len(NEIGHBOR_MEASURES)
    assert all(any(p.match(name) for p in patterns) for name in names), names


# --- cp-measure: CellProfiler's algorithm, on the same masks ----------------------------------


@pytest.fixture(scope="module")
def cp_neighbors():
    module = pytest.importorskip("cp_measure.multimask.measureobjectneighbors", reason="cp-measure not installed")
    return module.measureobjectneighbors


def assert_equal_to_cp_measure(cp_neighbors, labels, distance, method, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = cp_neighbors(labels, labels, method, distance)
    ours = object_neighbors(labels, distance=distance)
    for measure in NEIGHBOR_MEASURES:
        np.testing.assert_allclose(
            ours[measure], np.asarray(theirs[f"Neighbors_{measure}_{scale}"], float), rtol=1e-6, err_msg=measure
        )


@pytest.mark.parametrize("distance", [1, 2, 5])
def test_equal_to_cp_measure_on_random_blobs(cp_neighbors, distance):
    rng = np.random.default_rng(distance)
    for _ in range(10):
        seeds = np.zeros((60, 80), np.int32)
        k = int(rng.integers(3, 15))
        seeds[rng.integers(0, 60, k), rng.integers(0, 80, k)] = np.arange(1, k + 1)
        labels = ndi.grey_dilation(seeds, size=int(rng.integers(3, 12))) * (rng.random((60, 80)) > 0.05)
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)  # 1..n, no gaps
        if labels.max() < 3:
            continue
        assert_equal_to_cp_measure(cp_neighbors, labels, distance, "Within a specified distance", str(distance))


def test_equal_to_cp_measure_on_examplehuman_nuclei_and_cells(cp_neighbors):
    if not (EXAMPLEHUMAN / "Nuclei.csv").exists():
        pytest.skip(f"ExampleHuman data not found at {EXAMPLEHUMAN}")
    image = np.stack([read_image(EXAMPLEHUMAN / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)])
    masks = segment(image, threshold="li", min_diameter=8, max_diameter=80)
    assert_equal_to_cp_measure(cp_neighbors, masks.cells, 1, "Adjacent", "Adjacent")
    assert_equal_to_cp_measure(cp_neighbors, masks.nuclei, 1, "Within a specified distance", "1")
    assert (object_neighbors(masks.cells)["NumberOfNeighbors"] > 0).mean() > 0.5  # a confluent field
