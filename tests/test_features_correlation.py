"""Correlation family: Pearson vs scipy, Manders/overlap vs CellProfiler's formulas, known answers."""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pytest
import scipy.stats

from moa_features.features import correlation
from moa_features.features.catalog import pattern_regex
from moa_features.features.correlation import FEATURE_DOCS, correlation_features, manders_overlap, pearson_matrix

from _helpers import load_rxrx1_site

CHANNELS = [f"w{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def real_site() -> np.ndarray:
    return load_rxrx1_site("U2OS-01")


def _cellprofiler(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Image-level M1, M2, overlap as CellProfiler's MeasureColocalization computes them."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    above_a, above_b = a >= 0.15 * a.max(), b >= 0.15 * b.max()
    both = above_a & above_b
    m1 = a[both].sum() / a[above_a].sum()
    m2 = b[both].sum() / b[above_b].sum()
    overlap = (a[both] * b[both]).sum() / np.sqrt((a[both] ** 2).sum() * (b[both] ** 2).sum())
    return m1, m2, overlap


def test_pearson_agrees_with_scipy(real_site):
    r = pearson_matrix(real_site)
    for i, j in combinations(range(6), 2):
        expected = scipy.stats.pearsonr(real_site[i].ravel().astype(float), real_site[j].ravel().astype(float))[0]
        assert r[i, j] == pytest.approx(expected, abs=1e-12)
        assert r[i, j] == r[j, i]
    np.testing.assert_allclose(np.diag(r), 1.0)


def test_manders_and_overlap_agree_with_cellprofiler_formulas(real_site):
    feats = correlation_features(real_site, CHANNELS)
    for i, j in combinations(range(6), 2):
        m1, m2, overlap = _cellprofiler(real_site[i], real_site[j])
        a, b = CHANNELS[i], CHANNELS[j]
        assert feats[f"Image_Correlation_Manders_{a}_{b}"] == pytest.approx(m1, rel=1e-12)
        assert feats[f"Image_Correlation_Manders_{b}_{a}"] == pytest.approx(m2, rel=1e-12)
        assert feats[f"Image_Correlation_Overlap_{a}_{b}"] == pytest.approx(overlap, rel=1e-12)


def test_uint16_agrees_with_cellprofiler_formulas_and_scipy():
    rng = np.random.default_rng(4)
    image = rng.gamma(2.0, 3000.0, size=(3, 64, 80)).clip(0, 65535).astype(np.uint16)
    image[1] = (image[0] // 2 + rng.integers(0, 500, size=(64, 80))).astype(np.uint16)
    image[2, :5] = 65535  # saturated rows: the largest 16-bit products
    manders, overlap = manders_overlap(image)
    r = pearson_matrix(image)
    for i, j in combinations(range(3), 2):
        m1, m2, expected_overlap = _cellprofiler(image[i], image[j])
        assert manders[i, j] == pytest.approx(m1, rel=1e-12)
        assert manders[j, i] == pytest.approx(m2, rel=1e-12)
        assert overlap[i, j] == pytest.approx(expected_overlap, rel=1e-12)
        expected_r = scipy.stats.pearsonr(image[i].ravel().astype(float), image[j].ravel().astype(float))[0]
        assert r[i, j] == pytest.approx(expected_r, abs=1e-12)


def test_blockwise_sums_do_not_depend_on_block_size(monkeypatch, real_site):
    x = real_site.reshape(6, -1)
    thresholds = correlation._thresholds(x, correlation.THRESHOLD_FRACTION)
    whole = correlation._block_products(x, thresholds)
    monkeypatch.setattr(correlation, "_BLOCK_PIXELS", 1000)  # many blocks and a ragged last one
    for blocked, total in zip(correlation._block_products(x, thresholds), whole):
        np.testing.assert_array_equal(blocked, total)


def _saturated_site() -> np.ndarray:
    """A constructed 8-bit site: random planes, one constant, one saturated, one nearly empty."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(5, 61, 77)).astype(np.uint8)
    image[1] = np.clip(image[0].astype(int) // 2 + rng.integers(0, 40, size=(61, 77)), 0, 255)
    image[2] = 255
    image[3] = 0
    image[3, 5, 5] = 9
    return image


@pytest.mark.parametrize("which", ["real", "constructed"])
def test_sums_from_joint_histograms_equal_the_pixel_sums(real_site, which):
    image = real_site if which == "real" else _saturated_site()
    x = image.reshape(image.shape[0], -1)
    hists = correlation.joint_histograms(image)
    for k, (i, j) in enumerate(combinations(range(image.shape[0]), 2)):  # the histograms themselves
        expected = np.bincount(x[i].astype(np.int64) * 256 + x[j], minlength=65536)
        np.testing.assert_array_equal(hists[k], expected)
    thresholds = correlation._thresholds(x, correlation.THRESHOLD_FRACTION)
    from_pixels = correlation._block_products(x, thresholds)
    from_histograms = correlation._histogram_products(hists, image.shape[0], thresholds)
    for ours, expected in zip(from_histograms, from_pixels):
        np.testing.assert_array_equal(ours, expected)
    channels = CHANNELS[: image.shape[0]]
    shared = correlation_features(image, channels, hists)
    np.testing.assert_equal(shared, correlation_features(image, channels))  # NaN where undefined, in both
    assert correlation.joint_histograms(image.astype(np.uint16)) is None


def test_pearson_is_exact_for_nearly_constant_channels():
    # A large offset and a tiny spread: a centred float computation loses digits, exact sums do not.
    base = np.full((2, 300, 300), 60000, dtype=np.uint16)
    base[0, ::2] += 1
    base[1, ::2] += 1
    base[1, 1, :2] += 1
    x, y = base[0].ravel().astype(object), base[1].ravel().astype(object)
    n = x.size
    cov = n * int((x * y).sum()) - int(x.sum()) * int(y.sum())
    var_x = n * int((x * x).sum()) - int(x.sum()) ** 2
    var_y = n * int((y * y).sum()) - int(y.sum()) ** 2
    assert pearson_matrix(base)[0, 1] == pytest.approx(cov / np.sqrt(float(var_x) * float(var_y)), rel=1e-15)


def test_rejects_float_images():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        pearson_matrix(np.zeros((2, 4, 4), dtype=np.float32))


def test_known_answers():
    rng = np.random.default_rng(0)
    a = np.zeros((50, 60), dtype=np.uint8)
    a[:, :30] = rng.integers(100, 200, size=(50, 30))  # signal on the left half only
    disjoint = np.zeros_like(a)
    disjoint[:, 30:] = 200  # signal on the right half only
    image = np.stack([a, a, 255 - a, disjoint])
    f = correlation_features(image, ["a", "same", "inverse", "apart"])
    assert f["Image_Correlation_Pearson_a_same"] == pytest.approx(1.0)
    assert f["Image_Correlation_Pearson_a_inverse"] == pytest.approx(-1.0)
    assert f["Image_Correlation_Manders_a_same"] == 1.0 and f["Image_Correlation_Manders_same_a"] == 1.0
    assert f["Image_Correlation_Overlap_a_same"] == pytest.approx(1.0)
    assert f["Image_Correlation_Manders_a_apart"] == 0.0 and f["Image_Correlation_Manders_apart_a"] == 0.0


def test_constant_channel_gives_nan_without_warnings(real_site):
    image = real_site.copy()
    image[2] = 17  # constant
    image[4] = 0  # all zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = correlation_features(image, CHANNELS)
    assert np.isnan(f["Image_Correlation_Pearson_w1_w3"]) and np.isnan(f["Image_Correlation_Pearson_w3_w6"])
    assert np.isnan(f["Image_Correlation_Pearson_w1_w5"])
    assert np.isnan(f["Image_Correlation_Manders_w5_w1"])
    assert np.isfinite(f["Image_Correlation_Pearson_w1_w2"])
    # a constant channel is above its own 15 % threshold everywhere: Manders stays defined
    assert f["Image_Correlation_Manders_w1_w3"] == 1.0


def test_names_documented(real_site):
    feats = correlation_features(real_site, CHANNELS)
    assert len(feats) == 15 * 4
    patterns = [pattern_regex(p) for p, _, _ in FEATURE_DOCS]
    for name in feats:
        assert sum(bool(p.match(name)) for p in patterns) == 1, name
    assert "Image_Correlation_Pearson_w1_w5" in feats and "Image_Correlation_Pearson_w5_w1" not in feats
