"""Feature selection of the profiling recipe (moa_features.models.preprocessing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_features.models.preprocessing import (
    DEFAULT_OPERATIONS,
    FeatureSelector,
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
