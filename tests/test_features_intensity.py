"""Intensity family: exact histogram statistics against NumPy/SciPy, known answers, real images."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from moa_features.features.catalog import pattern_regex
from moa_features.features.intensity import (
    FEATURE_DOCS,
    PERCENTILES,
    channel_intensity,
    first_order_statistics,
    histogram,
    intensity_features,
    percentiles_from_histogram,
)

from _helpers import load_rxrx1_site

CHANNELS = [f"w{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def real_site() -> np.ndarray:
    """A real RxRx1 site, (6, 512, 512) uint8."""
    return load_rxrx1_site("HUVEC-01")


def _reference(plane: np.ndarray) -> dict[str, float]:
    x = plane.ravel()
    ref = {
        "Sum": float(x.sum(dtype=np.int64)),
        "Mean": float(x.mean()),
        "Std": float(x.std()),
        "Min": float(x.min()),
        "Max": float(x.max()),
        "Median": float(np.median(x)),
        "MAD": float(scipy.stats.median_abs_deviation(x)),
        "SaturatedFraction": float(np.mean(x == np.iinfo(plane.dtype).max)),
    }
    for q in PERCENTILES:
        ref[f"Percentile_{q}"] = float(np.percentile(x, q, method="linear"))
    return ref


def _assert_matches_reference(plane: np.ndarray) -> None:
    got, ref = channel_intensity(plane), _reference(plane)
    assert set(got) == set(ref)
    for key, value in ref.items():
        if key in ("Mean", "Std"):
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        else:  # order statistics, sums and fractions: exactly equal
            assert got[key] == value, (key, got[key], value)


def test_real_site_matches_numpy_exactly(real_site):
    for plane in real_site:
        _assert_matches_reference(plane)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_random_images_match_numpy_exactly(dtype):
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max
    for _ in range(40):
        shape = tuple(int(s) for s in rng.integers(1, 70, size=2))
        plane = np.clip(rng.gamma(1.5, rng.uniform(1, top / 8), size=shape), 0, top).astype(dtype)
        _assert_matches_reference(plane)


def test_percentiles_from_histogram_any_q():
    rng = np.random.default_rng(3)
    sample = rng.integers(0, 256, size=997).astype(np.uint8)
    q = np.linspace(0, 100, 201)
    np.testing.assert_array_equal(percentiles_from_histogram(histogram(sample), q), np.percentile(sample, q))


def test_constant_image():
    got = channel_intensity(np.full((37, 41), 9, dtype=np.uint8))
    assert got["Sum"] == 9 * 37 * 41
    for key in ["Mean", "Min", "Max", "Median", *[f"Percentile_{q}" for q in PERCENTILES]]:
        assert got[key] == 9.0, key
    assert got["Std"] == 0.0 and got["MAD"] == 0.0 and got["SaturatedFraction"] == 0.0


def test_ramp_known_values():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every grey value once
    got = channel_intensity(ramp)
    assert got["Sum"] == 255 * 256 / 2
    assert got["Median"] == 127.5
    assert got["Percentile_25"] == 63.75  # (n-1) * 0.25 = 63.75
    assert got["MAD"] == 64.0  # |x - 127.5| takes 0.5..127.5 twice each: median 64
    assert got["SaturatedFraction"] == 1 / 256


def test_saturated_fraction():
    plane = np.zeros((10, 10), dtype=np.uint16)
    plane[:3, :] = 65535
    plane[3, 0] = 65534
    assert channel_intensity(plane)["SaturatedFraction"] == 0.3


@pytest.mark.parametrize(("dtype", "total"), [(np.uint8, 255 * 1024 * 1024), (np.uint16, 65535 * 1024 * 1024)])
def test_full_size_sum_is_exact(dtype, total):
    plane = np.full((1024, 1024), np.iinfo(dtype).max, dtype=dtype)
    got = channel_intensity(plane)
    assert got["Sum"] == total and int(got["Sum"]) == total
    assert got["SaturatedFraction"] == 1.0


def test_intensity_features_names(real_site):
    feats = intensity_features(real_site, CHANNELS)
    per_channel = 8 + len(PERCENTILES)
    assert len(feats) == 6 * per_channel
    assert "Image_Intensity_Sum_w1" in feats and "Image_Intensity_Percentile_5_w1" in feats
    assert "Image_Intensity_MAD_w6" in feats and "Image_Intensity_SaturatedFraction_w3" in feats
    assert all(isinstance(v, float) for v in feats.values())
    patterns = [pattern_regex(pattern) for pattern, _, _ in FEATURE_DOCS]
    for name in feats:
        assert sum(bool(p.match(name)) for p in patterns) == 1, f"{name} is not documented exactly once"


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        channel_intensity(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="C=2"):
        intensity_features(np.zeros((3, 4, 4), dtype=np.uint8), ["w1", "w2"])


def test_first_order_statistics_known_sample():
    x = np.array([1, 2, 2, 3, 3, 3, 4, 4, 4, 4], dtype=float)
    got = first_order_statistics(x)
    assert got["mean"] == 3.0
    assert got["variance"] == pytest.approx(1.0)
    assert got["skewness"] == pytest.approx(scipy.stats.skew(x))
    assert got["kurtosis"] == pytest.approx(scipy.stats.kurtosis(x))  # excess, biased
    assert got["median"] == 3.0 and got["range"] == 3.0
    assert got["energy"] == float(np.sum(x**2))
    assert got["entropy"] == pytest.approx(-sum(p * np.log2(p) for p in (0.1, 0.2, 0.3, 0.4)))
    assert got["uniformity"] == pytest.approx(0.01 + 0.04 + 0.09 + 0.16)
    assert got["median_absolute_deviation"] == pytest.approx(np.mean(np.abs(x - 3.0)))


def test_first_order_statistics_constant_sample_is_nan_not_error():
    got = first_order_statistics(np.full(5, 2.0))
    assert np.isnan(got["skewness"]) and np.isnan(got["kurtosis"])
    assert got["coefficient_of_variation"] == 0.0 and got["entropy"] == 0.0
