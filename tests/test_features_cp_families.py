"""The CellProfiler families of issue 21 in the feature registry: names, defaults, switching off, timing."""

from __future__ import annotations

import numpy as np
import pytest

from moa_features.features import DEFAULT_FAMILIES, FAMILIES, FeatureParams, measure_site, timed_measure

CHANNELS = ["w1", "w2", "w3"]
NEW = ("zernike", "granularity", "radial", "colocalisation")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 30, (3, 128, 128)).astype(np.uint8)
    for cy, cx in ((30, 30), (30, 90), (90, 40), (95, 95)):
        yy, xx = np.mgrid[:128, :128]
        d = np.hypot(yy - cy, xx - cx)
        image[0][d < 8] = 200
        image[1][d < 14] += rng.integers(20, 90, (d < 14).sum()).astype(np.uint8)
        image[2][d < 18] = 90
    return image


def test_every_new_family_is_registered_and_the_slow_ones_are_opt_in():
    assert set(NEW) <= set(FAMILIES)
    assert "zernike" in DEFAULT_FAMILIES and "colocalisation" in DEFAULT_FAMILIES
    assert "granularity" not in DEFAULT_FAMILIES and "radial" not in DEFAULT_FAMILIES
    assert FeatureParams().families == DEFAULT_FAMILIES


def test_per_object_columns_and_site_aggregates_use_cellprofilers_names(image):
    params = FeatureParams(texture_scheme="full", objects=True, families=("morphology", *NEW))
    features, objects = measure_site(image, CHANNELS, params)
    n = len(objects["ObjectNumber"])
    assert n == 4
    for column in (
        "Nuclei_AreaShape_Zernike_0_0",
        "Cells_AreaShape_Zernike_3_1",
        "Cytoplasm_AreaShape_Zernike_9_9",
        "Cells_Granularity_1_w1",
        "Nuclei_Granularity_16_w3",
        "Cells_RadialDistribution_FracAtD_w1_1of4",
        "Cytoplasm_RadialDistribution_MeanFrac_w2_4of4",
        "Nuclei_RadialDistribution_RadialCV_w3_2of4",
    ):
        assert objects[column].shape == (n,), column
        assert np.isfinite(objects[column]).all(), column
        assert features[f"{column}_Median"] == pytest.approx(np.median(objects[column])), column
    for name in ("Image_Granularity_1_w2", "Image_Correlation_Costes_w1_w2", "Image_Correlation_RWC_w2_w1"):
        assert np.isfinite(features[name]), name
    assert features["Image_Correlation_K_w1_w3"] == pytest.approx(features["Image_Correlation_K_w1_w3"])
    assert len([c for c in objects if c.startswith("Cells_AreaShape_Zernike_")]) == 30
    assert len([c for c in objects if c.startswith("Cells_Granularity_")]) == 16 * 3
    assert len([c for c in objects if c.startswith("Cells_RadialDistribution_")]) == 12 * 3


@pytest.mark.parametrize("off", NEW)
def test_features_switches_each_family_off(image, off):
    families = tuple(f for f in ("morphology", *NEW) if f != off)
    features, objects = measure_site(
        image, CHANNELS, FeatureParams(texture_scheme="full", objects=True, families=families)
    )
    marker = {"zernike": "_Zernike_", "granularity": "_Granularity_", "radial": "_RadialDistribution_",
              "colocalisation": "_Costes_"}[off]  # fmt: skip
    assert not [c for c in [*features, *objects] if marker in c]
    assert [c for c in [*features, *objects] if "_Zernike_" in c or off == "zernike"]


def test_timed_measure_segments_once_and_times_each_family(image):
    params = FeatureParams(texture_scheme="full", families=("morphology", "zernike", "colocalisation"))
    features, seconds = timed_measure(image, CHANNELS, params)
    assert list(seconds) == ["segmentation", "morphology", "zernike", "colocalisation"]
    assert features == measure_site(image, CHANNELS, params)[0]


def test_every_new_column_is_documented_in_the_catalogue(image):
    from moa_features.features.catalog import family_docs, pattern_regex

    docs = family_docs()
    params = FeatureParams(texture_scheme="full", objects=True, families=NEW)
    features, objects = measure_site(image, CHANNELS, params)
    patterns = [pattern_regex(p.replace("<Cpt>", "<c>")) for f in NEW for p, _, _ in docs[f]]
    aggregates = {f"{c}_{s}" for c in objects for s in ("Median", "Mean", "Std")}
    keys = {"ObjectNumber", "Location_Center_X", "Location_Center_Y"}  # the object table's keys
    for name in [*(c for c in objects if c not in keys), *(f for f in features if f not in aggregates)]:
        assert any(p.match(name) for p in patterns), name


def test_per_object_costes_rwc_k_come_with_the_per_object_correlation_option(image):
    params = FeatureParams(texture_scheme="full", objects=True, families=("colocalisation",), object_correlation=True)
    features, objects = measure_site(image, CHANNELS, params)
    for name in ("Cells_Correlation_Costes_w1_w2", "Nuclei_Correlation_RWC_w3_w1", "Cytoplasm_Correlation_K_w2_w3"):
        assert objects[name].shape == (4,), name
        assert f"{name}_Median" in features
    plain = measure_site(
        image, CHANNELS, FeatureParams(texture_scheme="full", objects=True, families=("colocalisation",))
    )
    assert plain[1] is None and "Cells_Correlation_Costes_w1_w2_Median" not in plain[0]
