"""Costes, RWC and K (CellProfiler MeasureColocalization, image level) against cp-measure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _parity import CHANNELS, EXAMPLEHUMAN, examplehuman, synthetic_image, synthetic_labels

from moa_features.features.colocalisation import colocalisation_features, pair_colocalisation

needs_examplehuman = pytest.mark.skipif(
    not (EXAMPLEHUMAN / "Nuclei.csv").exists(), reason=f"ExampleHuman data not found at {EXAMPLEHUMAN}"
)


def _compare(image: np.ndarray, channels) -> None:
    cp = pytest.importorskip("cp_measure.core.measurecolocalization")
    ours = colocalisation_features(image, channels)
    whole = np.ones(image.shape[1:], np.int32)  # one object covering the site: the image-level measurement
    scale = float(np.iinfo(image.dtype).max)
    for i in range(len(channels)):
        for j in range(i + 1, len(channels)):
            a, b = channels[i], channels[j]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                costes = cp.get_correlation_costes(image[i], image[j], whole)
            rwc = cp.get_correlation_rwc(image[i] / scale, image[j] / scale, whole)
            k = cp.get_correlation_overlap(image[i] / scale, image[j] / scale, whole)
            expected = {
                f"Costes_{a}_{b}": costes["Correlation_Costes_1"][0],
                f"Costes_{b}_{a}": costes["Correlation_Costes_2"][0],
                f"RWC_{a}_{b}": rwc["Correlation_RWC_1"][0],
                f"RWC_{b}_{a}": rwc["Correlation_RWC_2"][0],
                f"K_{a}_{b}": k["Correlation_K_1"][0],
                f"K_{b}_{a}": k["Correlation_K_2"][0],
            }
            for name, value in expected.items():
                assert ours[f"Image_Correlation_{name}"] == pytest.approx(value, rel=1e-6, nan_ok=True), name


def test_identical_channels_colocalise_completely():
    plane = np.random.default_rng(0).integers(0, 256, (1, 64, 64)).astype(np.uint8)
    f = colocalisation_features(np.concatenate([plane, plane]), ["a", "b"])
    for name in ("K_a_b", "K_b_a", "RWC_a_b", "RWC_b_a"):
        assert f[f"Image_Correlation_{name}"] == pytest.approx(1.0)


def test_no_pixel_above_both_thresholds_gives_cellprofilers_zero():
    u = np.array([0.0, 1.0, 0.0])
    v = np.array([1.0, 0.0, 0.0])
    out = pair_colocalisation(u, v, np.array([5.0, 5.0, 5.0]), 255)
    assert out["K_1"] == out["RWC_2"] == 0.0


def test_sixteen_bit_images_use_the_pixel_table():
    labels = synthetic_labels(2)
    image = synthetic_image(labels, 2, channels=2).astype(np.uint16) * 257
    _compare(image, ["a", "b"])


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_cp_measure_on_synthetic_images(seed):
    labels = synthetic_labels(seed)
    _compare(synthetic_image(labels, seed, channels=3), ["a", "b", "c"])


@needs_examplehuman
def test_equals_cp_measure_on_examplehuman():
    image, _, _ = examplehuman()
    _compare(image, CHANNELS)


def _compare_objects(image: np.ndarray, labels: np.ndarray) -> None:
    cp = pytest.importorskip("cp_measure.core.measurecolocalization")
    from moa_features.features.colocalisation import object_colocalisation

    n = int(labels.max())
    ours = object_colocalisation(image[:2], ["a", "b"], labels, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        costes = cp.get_correlation_costes(image[0], image[1], labels)
    scale = float(np.iinfo(image.dtype).max)
    rwc = cp.get_correlation_rwc(image[0] / scale, image[1] / scale, labels)
    k = cp.get_correlation_overlap(image[0] / scale, image[1] / scale, labels)
    for measure, table in (("Costes", costes), ("RWC", rwc), ("K", k)):
        for ours_name, key in ((f"{measure}_a_b", "1"), (f"{measure}_b_a", "2")):
            np.testing.assert_allclose(
                ours[f"Correlation_{ours_name}"],
                np.asarray(table[f"Correlation_{measure}_{key}"], float),
                rtol=1e-6,
                atol=1e-12,
                err_msg=ours_name,
            )


def test_per_object_equals_cp_measure_on_synthetic_objects():
    labels = synthetic_labels(0)
    _compare_objects(synthetic_image(labels, 0, channels=2), labels)


@needs_examplehuman
def test_per_object_equals_cp_measure_on_examplehuman_compartments():
    from _parity import contiguous

    image, masks, _ = examplehuman()
    for labels in (masks.nuclei, masks.cells, masks.cytoplasm):
        _compare_objects(image, contiguous(labels))


def test_per_object_sixteen_bit_equals_cp_measure():
    labels = synthetic_labels(5)
    _compare_objects(synthetic_image(labels, 5, channels=2).astype(np.uint16) * 257, labels)
