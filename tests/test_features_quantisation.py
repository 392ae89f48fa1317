"""Texture quantisation: the run scheme uses the grey levels on real screens; full-range mode is CellProfiler's."""

from __future__ import annotations

from pathlib import Path

import mahotas
import numpy as np
import pytest

from moa_features.calibration import calibrate, load_calibration
from moa_features.datasets import SiteReadError, open_dataset
from moa_features.features import FeatureParams, measure
from moa_features.features.texture import (
    HARALICK,
    _glcm_stack,
    apply_lut,
    glcm_features,
    quantize,
    robust_range,
    run_lut,
    texture_features,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RXRX1 = DATA / "rxrx1"
CROPS = DATA / "bbbc021" / "crops_sample"
LEVELS = 32


def _top2_and_entropy(images, luts):
    """Medians over images, per channel: fraction of pixels in the 2 fullest levels, and the
    image-level GLCM entropy (bits; distance 1, the 4 directions averaged, as the feature).

    ``luts``: one table per channel (run scheme), or None (full range)."""
    top2, entropy = [], []
    for image in images:
        t, e = [], []
        for c, plane in enumerate(image):
            q = quantize(plane, LEVELS) if luts is None else apply_lut(plane, luts[c], LEVELS)
            t.append(np.sort(np.bincount(q.ravel(), minlength=LEVELS))[-2:].sum() / q.size)
            e.append(np.mean(glcm_features(_glcm_stack(q, LEVELS, 1))["joint_entropy"]))
        top2.append(t)
        entropy.append(e)
    return np.median(top2, axis=0), np.median(entropy, axis=0)


@pytest.mark.skipif(not RXRX1.is_dir(), reason=f"real RxRx1 sites not found at {RXRX1}")
def test_run_scheme_uses_the_grey_levels_on_rxrx1(tmp_path):
    ds = open_dataset(RXRX1)
    params = calibrate(ds.sites, tmp_path / "t.parquet", FeatureParams(illum="none"))
    cal = load_calibration(params.calibration)
    assert cal.info["texture"]["sample"] == "negative controls"
    images = []
    for site in ds.sites:
        try:
            images.append(site.load())
        except SiteReadError:  # the site-2 image sets miss w5/w6 on disk
            continue
    top2, entropy = _top2_and_entropy(images, cal.texture_luts)
    assert np.all(top2 <= 0.5), top2
    assert np.all(entropy >= 4.0), entropy
    # the full-range scheme (32 levels over 0-255) does not: most pixels in 2 levels
    top2_full, entropy_full = _top2_and_entropy(images, None)
    assert np.all(top2_full > 0.6) and np.all(entropy_full < 3.5), (top2_full, entropy_full)


@pytest.mark.skipif(not CROPS.is_dir(), reason=f"BBBC021 crops not found at {CROPS}")
def test_run_scheme_uses_the_grey_levels_on_bbbc021_crops():
    crops = {p: np.moveaxis(np.load(p), -1, 0) for p in sorted(CROPS.glob("*/*.npy"))}
    controls = [image for p, image in crops.items() if p.parent.name == "DMSO"]
    assert len(controls) == 40 and controls[0].dtype == np.uint16
    hist = sum(np.stack([np.bincount(plane.ravel(), minlength=65536) for plane in image]) for image in controls)
    luts = [run_lut(h, LEVELS) for h in hist]
    top2, entropy = _top2_and_entropy(list(crops.values()), luts)
    assert np.all(top2 <= 0.5), top2
    assert np.all(entropy >= 4.0), entropy


def test_run_lut_is_monotone_and_spreads_a_skewed_sample():
    rng = np.random.default_rng(0)
    sample = np.clip(rng.lognormal(2.0, 0.8, 200_000), 0, 255).astype(np.uint8)
    hist = np.bincount(sample, minlength=256)
    lut = run_lut(hist, LEVELS)
    assert lut.dtype == np.uint8 and lut.min() == 0 and lut.max() == LEVELS - 1
    assert np.all(np.diff(lut.astype(int)) >= 0)
    used = np.bincount(lut[sample], minlength=LEVELS)
    assert np.count_nonzero(used) >= 20 and used.max() / used.sum() < 0.15
    lo, hi = robust_range(hist)
    assert lo == int(np.percentile(sample, 0.1, method="inverted_cdf"))
    assert hi == int(np.percentile(sample, 99.9, method="inverted_cdf"))
    with pytest.raises(ValueError, match="empty"):
        run_lut(np.zeros(256), LEVELS)
    with pytest.raises(ValueError, match="levels"):
        run_lut(hist, 1)


def test_run_scheme_without_tables_is_refused_and_names_differ():
    image = np.random.default_rng(1).integers(0, 255, (2, 32, 32)).astype(np.uint8)
    with pytest.raises(ValueError, match="texture_luts"):
        measure(image, ["a", "b"], FeatureParams(families=("texture",)))
    luts = [run_lut(np.bincount(p.ravel(), minlength=256), 16) for p in image]
    run = measure(image, ["a", "b"], FeatureParams(families=("texture",), texture_levels=16), texture_luts=luts)
    full = measure(image, ["a", "b"], FeatureParams(families=("texture",), texture_levels=16, texture_scheme="full"))
    assert "Image_Texture_Contrast_a_1_avg_run16" in run and "Image_Texture_Contrast_a_1_avg_16" in full
    assert not set(run) - {k for k in run if "LBP" in k} & set(full)


@pytest.mark.skipif(not RXRX1.is_dir(), reason=f"real RxRx1 sites not found at {RXRX1}")
def test_cellprofiler_mode_equals_mahotas_at_256_levels_distance_3():
    """CellProfiler's MeasureTexture is mahotas' Haralick on the 8-bit image (256 levels), averaged here."""
    image = open_dataset(RXRX1).sites[0].load()[2:3]  # actin: the most textured channel
    ours = texture_features(image, ["w3"], levels=256, distances=(3,))
    for plane, ch in zip(image, ["w3"]):
        ref = mahotas.features.haralick(plane, distance=3).mean(axis=0)
        ibsi = mahotas.features.haralick(plane, distance=3, use_x_minus_y_variance=True).mean(axis=0)
        for column, name in enumerate(HARALICK):
            expected = ibsi[column] if name == "DifferenceVariance" else ref[column]
            assert ours[f"Image_Texture_{name}_{ch}_3_avg_256"] == pytest.approx(expected, rel=1e-9, abs=1e-12), name
