"""Feature selection, control sphering and the profiling recipe (moa_features.models.preprocessing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_features.models.preprocessing import (
    DEFAULT_OPERATIONS,
    ControlSphering,
    FeatureSelector,
    ProfilePreprocessor,
    frequency_excluded,
    make_preprocessor,
)


def table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Cells_AreaShape_Area": rng.normal(size=n),
            "Cells_AreaShape_Center_X": rng.normal(size=n),
            "Nuclei_Location_Center_Y": rng.normal(size=n),
            "Cells_AreaShape_Orientation": rng.normal(size=n),
            "Cells_Intensity_MeanIntensity_DNA": rng.normal(size=n),
        }
    )


def test_blocklist_drops_positional_measurements_by_name():
    X = table()
    sel = FeatureSelector().fit(X)
    assert sel.get_feature_names_out().tolist() == ["Cells_AreaShape_Area", "Cells_Intensity_MeanIntensity_DNA"]
    assert sorted(sel.excluded_["blocklist"]) == [
        "Cells_AreaShape_Center_X",
        "Cells_AreaShape_Orientation",
        "Nuclei_Location_Center_Y",
    ]
    # Without names (an array) the blocklist cannot apply; a refit forgets the old names.
    sel.fit(X.to_numpy())
    assert sel.support_.all() and not hasattr(sel, "feature_names_in_")
    kept = FeatureSelector(blocklist=r"_Area$").fit(X).get_feature_names_out().tolist()
    assert "Cells_AreaShape_Area" not in kept and "Cells_AreaShape_Center_X" in kept


def test_median_centred_features_survive_the_default_selection():
    # Per-plate median centring with an odd number of reference wells puts one exact 0 per plate
    # into every feature; pycytominer's frequency rule reads that as a dominant value.
    rng = np.random.default_rng(1)
    plates = [rng.normal(size=(5, 4)) for _ in range(30)]
    X = np.vstack([p - np.median(p, axis=0) for p in plates])
    assert frequency_excluded(X).all()
    assert "frequency" not in DEFAULT_OPERATIONS
    assert FeatureSelector().fit(X).support_.all()


def test_frequency_is_opt_in_and_unknown_operations_are_refused():
    X = np.column_stack([np.r_[np.zeros(58), 1.0, 2.0], np.arange(60.0)])
    assert FeatureSelector().fit(X).support_.tolist() == [True, True]
    opted = FeatureSelector(operations=("na", "variance", "frequency")).fit(X)
    assert opted.support_.tolist() == [False, True] and opted.excluded_["frequency"] == ["x0"]
    with pytest.raises(ValueError, match="unknown feature-selection operation"):
        FeatureSelector(operations=("variance", "lasso")).fit(X)


def test_preprocessor_keeps_column_names_through_the_pipeline():
    X = table()
    pre = make_preprocessor().fit(X)
    out = pre.transform(X)
    assert out.shape == (60, 2) and np.isfinite(out).all()
    assert pre.named_steps["select"].get_feature_names_out().tolist()[0] == "Cells_AreaShape_Area"


def _controls_and_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(200, 6) correlated control profiles (a plate effect along one direction) and (50, 6) treated rows."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(6, 6))
    controls = rng.normal(size=(200, 6)) @ mix + 3.0
    treated = rng.normal(size=(50, 6)) @ mix + 3.0 + 2.0 * np.eye(6)[0]
    return controls, treated


@pytest.mark.parametrize("method", ["ZCA", "PCA", "ZCA-cor", "PCA-cor"])
def test_control_sphering_agrees_with_pycytominer(method):
    transform = pytest.importorskip("pycytominer.operations.transform")
    controls, treated = _controls_and_rows()
    ours = ControlSphering(method, epsilon=0.0).fit(controls)
    theirs = transform.Spherize(epsilon=0.0, method=method, return_numpy=True).fit(pd.DataFrame(controls))
    assert np.allclose(ours.transform(treated), theirs.transform(pd.DataFrame(treated)), atol=1e-8)
    # the controls come out white: identity covariance
    assert np.allclose(np.cov(ours.transform(controls), rowvar=False), np.eye(6), atol=1e-8)


def test_control_sphering_is_regularised_and_truncated():
    controls, treated = _controls_and_rows()
    plain = ControlSphering(epsilon=0.0).fit(controls)
    reg = ControlSphering(epsilon=1.0).fit(controls)
    # epsilon shrinks every whitened direction: variance lambda / (lambda + epsilon) < 1
    var = np.var(reg.transform(controls) @ np.linalg.svd(controls - controls.mean(0))[2].T, axis=0, ddof=1)
    assert np.allclose(np.sort(var), np.sort(reg.eigenvalues_ / (reg.eigenvalues_ + 1.0)), atol=1e-8)
    assert np.all(np.linalg.norm(reg.transform(treated), axis=1) < np.linalg.norm(plain.transform(treated), axis=1))
    assert ControlSphering("PCA", 0.0, n_components=3).fit(controls).transform(treated).shape == (50, 3)
    # fewer controls than features: the directions the controls do not span are dropped, not blown up
    few = ControlSphering(epsilon=0.0).fit(controls[:4])
    assert len(few.eigenvalues_) == 3 and np.isfinite(few.transform(treated)).all()
    with pytest.raises(ValueError, match="sphering method"):
        ControlSphering("cholesky").fit(controls)
    with pytest.raises(ValueError, match="control rows"):
        ControlSphering().fit(controls[:1])


def test_profile_preprocessor_fits_on_controls_only_for_scale_and_sphering():
    controls, treated = _controls_and_rows()
    pre = ProfilePreprocessor(epsilon=0.0).fit(treated, controls=controls)
    assert pre.sphered_ and pre.reference_ == "controls"
    # robust z against the controls: the control median is the centre, whatever the treated rows are
    assert np.allclose(pre.center_, np.median(controls, axis=0))
    refit = ProfilePreprocessor(epsilon=0.0).fit(treated[:10] + 100.0, controls=controls)
    assert np.allclose(refit.center_, pre.center_)
    out = pre.transform(controls)
    kept = pre.support_.sum()
    assert out.shape == (200, kept) and np.allclose(np.cov(out, rowvar=False), np.eye(kept), atol=1e-6)
    # no controls: scaled against the training rows, not sphered
    alone = ProfilePreprocessor().fit(treated)
    assert not alone.sphered_ and alone.reference_ == "training rows"
    assert make_preprocessor("scale").fit(treated, controls=controls).sphered_ is False
    with pytest.raises(ValueError, match="recipe"):
        make_preprocessor("tvn")
