"""Splits, metrics, chance baselines and feature selection (moa_features.models.evaluation/preprocessing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from sklearn.linear_model import LogisticRegression

from moa_features.models import evaluation as ev
from moa_features.models.preprocessing import (
    FeatureSelector,
    correlation_excluded,
    frequency_excluded,
    make_preprocessor,
)


def _screen(n_plates=6, wells=8, sites=3, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_plates):
        for w in range(wells):
            for s in range(sites):
                rows.append({
                    "Metadata_Plate": f"P{p}",
                    "Metadata_Experiment": f"E{p // 2}",
                    "Metadata_Well": f"W{w}",
                    "Metadata_Treatment": f"T{w}",
                    "Metadata_Batch": f"B{w % 3}",
                    "x": rng.normal(),
                })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("split,col", [("plate", "Metadata_Plate"), ("experiment", "Metadata_Experiment")])
def test_group_splits_never_straddle(split, col):
    df = _screen()
    folds = ev.make_splits(df, split)
    assert len(folds) == min(5, df[col].nunique())
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen) == list(range(len(df)))  # every row held out exactly once
    for tr, te in folds:
        assert not set(df[col].iloc[tr]) & set(df[col].iloc[te])
        assert len(tr) + len(te) == len(df)


def test_group_splits_groupkfold_for_many_plates():
    df = _screen(n_plates=9)
    folds = ev.make_splits(df, "plate")
    assert len(folds) == 5
    for tr, te in folds:
        assert not set(df["Metadata_Plate"].iloc[tr]) & set(df["Metadata_Plate"].iloc[te])


def test_nsc_each_fold_holds_one_treatment():
    df = _screen()
    folds = ev.make_splits(df, "nsc", treatment_col="Metadata_Treatment")
    assert len(folds) == df["Metadata_Treatment"].nunique()
    for tr, te in folds:
        test_t = set(df["Metadata_Treatment"].iloc[te])
        assert len(test_t) == 1
        assert (df["Metadata_Treatment"] == next(iter(test_t))).sum() == len(te)  # all its rows
        assert not test_t & set(df["Metadata_Treatment"].iloc[tr])


def test_nscb_drops_training_rows_of_test_batches():
    df = _screen()
    folds = ev.make_splits(df, "nscb", treatment_col="Metadata_Treatment", batch_col="Metadata_Batch")
    for tr, te in folds:
        assert len(set(df["Metadata_Treatment"].iloc[te])) == 1
        assert not set(df["Metadata_Batch"].iloc[te]) & set(df["Metadata_Batch"].iloc[tr])
        assert len(tr) > 0


def test_split_errors_name_the_column():
    df = _screen()
    with pytest.raises(KeyError, match="Metadata_Compound"):
        ev.make_splits(df, "nsc", treatment_col="Metadata_Compound")
    with pytest.raises(ValueError, match="at least 2 groups"):
        ev.make_splits(df.assign(Metadata_Plate="P0"), "plate")
    with pytest.raises(ValueError, match="unknown split"):
        ev.make_splits(df, "random")


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(1)
    y = rng.choice(["a", "b", "c"], 200, p=[0.6, 0.3, 0.1])
    p = np.where(rng.random(200) < 0.6, y, rng.choice(["a", "b", "c"], 200))
    m = ev.classification_metrics(y, p, prefix="well_")
    assert m["well_macro_recall"] == pytest.approx(recall_score(y, p, average="macro"))
    assert m["well_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["well_macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["well_accuracy"] == pytest.approx(np.mean(y == p))
    rec = ev.per_class_recall(y, p, ["a", "b", "c", "d"])
    assert rec["b"] == pytest.approx(np.mean(p[y == "b"] == "b")) and rec["d"] is None
    cm = ev.confusion(y, p, ["a", "b", "c"])
    assert np.array(cm["matrix"]).sum() == 200 and np.trace(cm["matrix"]) == np.sum(y == p)


def test_aggregate_proba_mean_probability():
    frame = pd.DataFrame({
        "well": ["w1", "w1", "w2"], "y_true": ["a", "a", "b"],
        "proba_a": [0.9, 0.2, 0.3], "proba_b": [0.1, 0.8, 0.7],
    })
    out = ev.aggregate_proba(frame, ["well"], ["proba_a", "proba_b"], ["a", "b"])
    assert out["y_pred"].tolist() == ["a", "b"]  # w1: mean (0.55, 0.45)
    assert out.loc[0, "proba_a"] == pytest.approx(0.55)


def test_summarize_and_bootstrap():
    s = ev.summarize_folds([{"accuracy": 0.5}, {"accuracy": 0.7}])
    assert s == {"accuracy": pytest.approx(0.6), "accuracy_std": pytest.approx(0.1)}
    y = np.array(["a"] * 10 + ["b"] * 10)
    folds = np.repeat(np.arange(4), 5)
    assert ev.bootstrap_std(y, y, folds)["accuracy_std"] == 0.0
    noisy = ev.bootstrap_std(y, y[::-1], folds)
    assert noisy["macro_recall_std"] >= 0.0


def test_chance_baselines_near_chance():
    """On features that carry no label information, both baselines score near 1/k."""
    rng = np.random.default_rng(0)
    k, n = 4, 2000
    X = rng.normal(size=(n, 5))
    y = rng.choice([f"c{i}" for i in range(k)], n)
    tr, te = np.arange(n // 2), np.arange(n // 2, n)
    maj = ev.MajorityClassifier().fit(X[tr], y[tr])
    assert set(maj.predict(X[te])) == {maj.classes_[np.argmax(maj.class_prior_)]}
    assert ev.classification_metrics(y[te], maj.predict(X[te]))["macro_recall"] == pytest.approx(1 / k)
    assert maj.predict_proba(X[te]).sum(axis=1) == pytest.approx(np.ones(len(te)))
    # On informative features, the shuffled-label model scores at chance on average over
    # permutations (one permutation can map a class region to a wrong label wholesale).
    Xi = np.eye(k)[np.searchsorted(np.unique(y), y)] + 0.1 * rng.normal(size=(n, k))
    scores = [
        ev.classification_metrics(
            y[te], ev.ShuffledLabelClassifier(LogisticRegression(), random_state=s).fit(Xi[tr], y[tr]).predict(Xi[te])
        )["macro_recall"]
        for s in range(20)
    ]
    assert abs(np.mean(scores) - 1 / k) < 0.07
    real = LogisticRegression(max_iter=500).fit(Xi[tr], y[tr])
    assert ev.classification_metrics(y[te], real.predict(Xi[te]))["macro_recall"] > 0.95


def test_frequency_and_correlation_selection_known_answers():
    # pycytominer's own test table for variance_threshold (freq_cut=0.1, unique_cut=0.1).
    df = pd.DataFrame({
        "a": [1, 1, 1, 1, 1, 1], "b": [1, 1, 1, 1, 1, 2], "c": [1, 1, 1, 1, 2, 3],
        "x": [1, 3, 8, 5, 2, 2], "y": [1, 2, 8, 5, 2, 1], "z": [9, 3, 8, 9, 2, 9],
        "zz": [0, -3, 8, 9, 6, 9],
    }).astype(float)
    drop = frequency_excluded(df.to_numpy(), freq_cut=0.1, unique_cut=0.1)
    assert list(df.columns[drop]) == ["a"]
    drop = frequency_excluded(df.to_numpy(), freq_cut=0.4, unique_cut=0.1)
    assert list(df.columns[drop]) == ["a", "b", "c", "z"]  # b 1/5, c 1/4, z 1/3 < 0.4
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 3))
    X = np.column_stack([base[:, 0], base[:, 0] * 3 + 0.01 * rng.normal(size=50), base[:, 1], base[:, 2]])
    drop = correlation_excluded(X, 0.9)
    assert drop.sum() == 1 and (drop[0] or drop[1]) and not drop[2:].any()


def test_feature_selector_and_preprocessor():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(100, 5)), columns=list("abcde"))
    X["c"] = 1.0
    X.loc[:40, "d"] = np.nan
    X["e"] = X["a"] * 2 + 1e-3 * rng.normal(size=100)
    X.loc[3, "b"] = np.inf
    sel = FeatureSelector().fit(X)
    assert sel.get_feature_names_out().tolist() == ["a", "b"] or sel.get_feature_names_out().tolist() == ["b", "e"]
    assert sel.excluded_["na"] == ["d"] and sel.excluded_["variance"] == ["c"]
    out = make_preprocessor().fit(X).transform(X)
    assert out.shape == (100, 2) and np.isfinite(out).all()  # inf -> NaN -> training median
    with pytest.raises(ValueError, match="expected 5 feature columns"):
        sel.transform(X.iloc[:, :3])
