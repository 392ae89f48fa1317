"""Splitters (moa_features.models.splits): what each holds out, LOO, cross_validate, nested CV, inner split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate

from moa_features.models import splits


def _layout(n_plates: int = 12, n_treatments: int = 24, k: int = 4, reps: int = 3, seed: int = 0) -> pd.DataFrame:
    """BBBC021-like layout: each treatment (2 concentrations) on ``reps`` plates of its week;
    class = treatment index mod ``k``; a feature carrying the class."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_treatments):
        week = (t // k) % (n_plates // reps)
        for r in range(reps):
            for conc in (0.1, 1.0):
                rows.append(
                    {
                        "Metadata_Plate": f"W{week}_P{r}",
                        "Metadata_Treatment": f"T{t}",
                        "Metadata_Concentration": conc,
                        "Metadata_Batch": f"W{week}",
                        "Metadata_Experiment": f"E{week}",
                        "moa": t % k,
                        "x": t % k + rng.normal(0, 0.3),
                    }
                )
    return pd.DataFrame(rows)


COLUMNS = {
    "plate": "Metadata_Plate",
    "treatment": "Metadata_Treatment",
    "experiment": "Metadata_Experiment",
    "batch": "Metadata_Batch",
}


@pytest.mark.parametrize("n_splits", [None, 5, 24])
def test_nsc_folds_never_share_a_treatment(n_splits):
    df = _layout()
    cv, params = splits.make_splitter("nsc", df, n_splits=n_splits, **COLUMNS)
    groups = params["groups"]
    folds = list(cv.split(df[["x"]], df["moa"], **params))
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested) == list(range(len(df)))  # every row tested exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert len(folds) == (n_splits or splits.DEFAULT_NSC_FOLDS)


def test_nsc_stratifies_classes_across_folds():
    df = _layout()
    cv, params = splits.make_splitter("nsc", df, n_splits=6, **COLUMNS)
    for train, _ in cv.split(df[["x"]], df["moa"], **params):
        assert set(df["moa"].iloc[train]) == {0, 1, 2, 3}  # 6 treatments per class, 6 folds


def test_leave_one_treatment_out():
    df = _layout(n_treatments=8)
    cv = splits.NSCSplit(n_splits=None)
    groups = df["Metadata_Treatment"].to_numpy()
    folds = list(cv.split(df, df["moa"], groups))
    assert len(folds) == 8 == cv.get_n_splits(groups=groups)
    assert all(len(set(groups[te])) == 1 for _, te in folds)


def test_nsc_plate_test_plates_never_in_train():
    df = _layout()
    cv, params = splits.make_splitter("nsc-plate", df, n_splits=4, **COLUMNS)
    plates, groups = df["Metadata_Plate"].to_numpy(), params["groups"]
    folds = list(cv.split(df, df["moa"], **params))
    assert len(folds) == 4
    for train, test in folds:
        assert not set(plates[train]) & set(plates[test])
        assert not set(groups[train]) & set(groups[test])
        assert len(train) > 0


def test_nscb_drops_training_rows_of_test_batches():
    df = _layout()
    cv, params = splits.make_splitter("nscb", df, n_splits=4, **COLUMNS)
    batches = df["Metadata_Batch"].to_numpy()
    assert (params["batches"] == batches).all()
    for train, test in cv.split(df, df["moa"], **params):
        assert not set(batches[train]) & set(batches[test])


@pytest.mark.parametrize("kind,column", [("plate", "Metadata_Plate"), ("experiment", "Metadata_Experiment")])
def test_group_splits_never_straddle(kind, column):
    df = _layout()
    cv, params = splits.make_splitter(kind, df, **COLUMNS)
    groups = params["groups"]
    assert (groups == df[column].to_numpy()).all()
    for train, test in cv.split(df, df["moa"], groups):
        assert not set(groups[train]) & set(groups[test])


def test_nsc_plate_feasibility_depends_on_the_layout():
    df = _layout()
    assert splits.nsc_plate_feasible(df["moa"], df["Metadata_Treatment"], df["Metadata_Plate"], 4)
    # every treatment on every plate (the demo screen): holding out plates of test treatments leaves nothing
    full = pd.DataFrame([{"t": f"T{t}", "p": f"P{p}", "y": t % 2} for t in range(6) for p in range(3)])
    assert not splits.nsc_plate_feasible(full["y"], full["t"], full["p"], 3)


def test_splitters_work_in_cross_validate():
    df = _layout()
    cv, params = splits.make_splitter("nsc", df, n_splits=4, **COLUMNS)
    scores = cross_validate(LogisticRegression(), df[["x"]], df["moa"], groups=params["groups"], cv=cv)
    assert len(scores["test_score"]) == 4 and np.all(scores["test_score"] > 0.8)


@pytest.mark.parametrize("kind", splits.SPLITS)
def test_nested_cross_validation_works_with_every_splitter(kind):
    """Per-row data reach ``split`` as routed arguments only, so the same splitter works inside and outside."""
    df = _layout()
    outer, params = splits.make_splitter(kind, df, n_splits=3, **COLUMNS)
    inner, _ = splits.make_splitter(kind, df, n_splits=2, **COLUMNS)
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=inner)
        scores = cross_val_score(search, df[["x"]], df["moa"], cv=outer, params=params)
    assert len(scores) == outer.get_n_splits(df[["x"]], df["moa"], **params) and np.all(scores > 0.6)


@pytest.mark.parametrize("kind", splits.SPLITS)
def test_get_n_splits_counts_the_folds_split_yields(kind):
    df = _layout()
    cv, params = splits.make_splitter(kind, df, **COLUMNS)
    before = dict(vars(cv))
    assert cv.get_n_splits(df, df["moa"], **params) == len(list(cv.split(df, df["moa"], **params)))
    assert vars(cv) == before  # split() leaves no state behind


def test_a_split_with_no_training_rows_says_so():
    every_plate = pd.DataFrame({"t": np.repeat(["a", "b"], 2), "b": ["W1", "W2"] * 2})
    with pytest.raises(ValueError, match="no fold keeps any training row"):
        list(splits.NSCBSplit(None).split(every_plate, groups=every_plate["t"], batches=every_plate["b"]))


def test_inner_split_mirrors_the_outer_split():
    df = _layout()
    for kind in ("nsc", "nsc-plate", "plate"):
        tr, va = splits.inner_split(kind, df, df["moa"].to_numpy(), 0.25, 0, **COLUMNS)
        unit = {"nsc": "Metadata_Treatment", "nsc-plate": "Metadata_Treatment", "plate": "Metadata_Plate"}[kind]
        assert not set(df[unit].iloc[tr]) & set(df[unit].iloc[va])
        if kind == "nsc-plate":
            assert not set(df["Metadata_Plate"].iloc[tr]) & set(df["Metadata_Plate"].iloc[va])
        assert 0.1 < len(va) / len(df) < 0.4


def test_validation_split_holds_out_whole_groups_or_stratifies():
    y = np.repeat([0, 1, 2], 20)
    groups = np.tile(np.arange(10), 6)
    tr, va = splits.validation_split(y, groups, 0.2, 0)
    assert not set(groups[tr]) & set(groups[va])
    tr, va = splits.validation_split(y, None, 0.2, 0)
    assert np.bincount(y[va]).tolist() == [4, 4, 4]
    assert splits.validation_split(y[:3], None, 0.2, 0) is None


def test_clear_errors():
    df = _layout()
    with pytest.raises(KeyError, match="treatment column 'Metadata_Compound'"):
        splits.make_splitter("nsc", df, **{**COLUMNS, "treatment": "Metadata_Compound"})
    with pytest.raises(ValueError, match="unknown split 'random'"):
        splits.make_splitter("random", df, **COLUMNS)
    with pytest.raises(ValueError, match="at least 2 groups"):
        list(splits.PlateSplit().split(df, groups=np.zeros(len(df))))
    with pytest.raises(ValueError, match="needs groups"):
        list(splits.NSCSplit().split(df))
    with pytest.raises(ValueError, match="needs plates"):
        list(splits.NSCPlateSplit().split(df, groups=df["Metadata_Treatment"]))
    with pytest.raises(ValueError, match="batches must be 1-d with one entry per row"):
        list(splits.NSCBSplit().split(df, groups=df["Metadata_Treatment"], batches=df["Metadata_Batch"][:5]))
