"""Metrics, aggregation, bootstrap, permutation null and chance (moa_features.models.evaluation),
and feature selection (moa_features.models.preprocessing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from moa_features.models import evaluation as ev
from moa_features.models.preprocessing import (
    FeatureSelector,
    correlation_excluded,
    frequency_excluded,
    make_preprocessor,
)


def test_metrics_agree_with_sklearn_and_keep_label_types():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
    m = ev.classification_metrics(y_true, y_pred, "well_")
    assert m["well_macro_recall"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert m["well_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["well_macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert ev.per_class_recall(y_true, y_pred, [0, 1, 2, 3, 9])["9"] is None
    acc, macro = ev._fast_scores(*ev._encode(y_true, y_pred))
    assert acc == pytest.approx(m["well_accuracy"]) and macro == pytest.approx(m["well_macro_recall"])
    # an ignored (unscored) class leaves the macro average; predicting it is still an error
    kept = ev.classification_metrics(y_true, y_pred, ignore=[3])
    assert kept["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, labels=[0, 1, 2], average="macro"))
    assert kept["accuracy"] == m["well_accuracy"]
    assert ev._fast_scores(*ev._encode(y_true, y_pred, [3]))[1] == pytest.approx(kept["macro_recall"])


def test_macro_figures_ignore_classes_without_held_out_truth():
    # 8 true classes, each recalled perfectly except that two rows go to a class never held out
    # ("Negative control"): the macro recall is over the 8 classes with truth, not 9.
    y_true = np.repeat([f"moa{i}" for i in range(8)], 4)
    y_pred = y_true.copy()
    y_pred[[0, 4]] = "Negative control"
    m = ev.classification_metrics(y_true, y_pred)
    assert m["macro_recall"] == pytest.approx(np.mean([0.75, 0.75] + [1.0] * 6))
    assert m["balanced_accuracy"] == pytest.approx(m["macro_recall"])
    union = recall_score(y_true, y_pred, average="macro", zero_division=0)  # the old, ill-defined figure
    assert union < m["macro_recall"]
    assert m["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)
    )
    # the bootstrap's and the permutation null's fast scorer use the same class set
    assert ev._fast_scores(*ev._encode(y_true, y_pred))[1] == pytest.approx(m["macro_recall"])
    units = np.repeat(np.arange(16), 2)
    perm = ev.permutation_pvalues(y_true, y_pred, units, n_permutations=200)
    assert perm["macro_recall_null_mean"] < 0.3
    # chance over the same 8 classes; an ignored class leaves chance too
    assert ev.expected_chance(y_true)["macro_recall"] == pytest.approx(1 / 8)
    assert ev.expected_chance(y_true, ignore=["moa0"])["macro_recall"] == pytest.approx(1 / 7)
    assert ev.scored_labels(y_true, ["moa0"]) == [f"moa{i}" for i in range(1, 8)]


def test_aggregation_averages_probabilities_per_group():
    frame = pd.DataFrame(
        {
            "well": ["a", "a", "b"],
            "y_true": ["x", "x", "y"],
            "unit": ["t1", "t1", "t2"],
            "proba_x": [0.9, 0.2, 0.3],
            "proba_y": [0.1, 0.8, 0.7],
        }
    )
    out = ev.aggregate_proba(frame, ["well"], ["proba_x", "proba_y"], np.array(["x", "y"]), ["unit"])
    assert out["proba_x"].tolist() == pytest.approx([0.55, 0.3])
    assert out["y_pred"].tolist() == ["x", "y"] and out["unit"].tolist() == ["t1", "t2"]


def test_expected_chance_from_priors():
    chance = ev.expected_chance(["a"] * 6 + ["b"] * 2 + ["c"] * 2)
    assert chance["accuracy"] == pytest.approx(0.6**2 + 0.2**2 + 0.2**2)
    assert chance["macro_recall"] == pytest.approx(1 / 3)


def _treatment_table(n_treatments: int = 40, k: int = 4, wells: int = 3, accuracy: float = 1.0, seed: int = 0):
    """Per-well truth/prediction of ``n_treatments`` treatments; ``accuracy`` of them predicted right."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_treatments) % k
    right = rng.random(n_treatments) < accuracy
    pred = np.where(right, labels, rng.integers(0, k, n_treatments))
    units = np.repeat([f"t{i}" for i in range(n_treatments)], wells)
    return np.repeat(labels, wells), np.repeat(pred, wells), units


def test_permutation_null_of_a_label_shuffled_table_is_not_significant():
    y_true, y_pred, units = _treatment_table(accuracy=0.9)
    rng = np.random.default_rng(1)
    labels = y_true[::3]
    shuffled = np.repeat(rng.permutation(labels), 3)  # labels shuffled at treatment level
    p_shuffled = ev.permutation_pvalues(shuffled, y_pred, units, n_permutations=200, seed=0)
    assert p_shuffled["accuracy_p"] > 0.05 and p_shuffled["macro_recall_p"] > 0.05
    p_real = ev.permutation_pvalues(y_true, y_pred, units, n_permutations=200, seed=0)
    assert p_real["accuracy_p"] == pytest.approx(1 / 201) and p_real["macro_recall_p"] < 0.01
    assert abs(p_real["accuracy_null_mean"] - 0.25) < 0.05


def test_permutation_moves_whole_treatments():
    # one treatment with many wells: if rows were shuffled, its wells would get mixed labels.
    y_true = np.array([0] * 10 + [1, 1])
    y_pred = y_true.copy()
    units = np.array(["big"] * 10 + ["s1", "s2"])
    null = ev.permutation_pvalues(y_true, y_pred, units, n_permutations=300, seed=0)
    # 3 units, labels (0, 1, 1): the identity-like assignments (1 in 3) reproduce the observed score.
    assert null["accuracy_p"] == pytest.approx(1 / 3, abs=0.08)


def test_bootstrap_ci_brackets_the_estimate_and_shrinks_with_more_treatments():
    small = ev.bootstrap(*_treatment_table(20, accuracy=0.8), n_boot=400)
    large = ev.bootstrap(*_treatment_table(400, accuracy=0.8), n_boot=400)
    lo, hi = large["accuracy_ci95"]
    assert lo < 0.85 and hi > 0.8 - 0.1 and lo <= hi
    width = {name: r["accuracy_ci95"][1] - r["accuracy_ci95"][0] for name, r in (("small", small), ("large", large))}
    assert width["large"] < width["small"]


def test_frequency_and_correlation_selection_known_answers():
    # pycytominer's own test table for variance_threshold (freq_cut=0.1, unique_cut=0.1).
    df = pd.DataFrame(
        {
            "a": [1, 1, 1, 1, 1, 1],
            "b": [1, 1, 1, 1, 1, 2],
            "c": [1, 1, 1, 1, 2, 3],
            "x": [1, 3, 8, 5, 2, 2],
            "y": [1, 2, 8, 5, 2, 1],
            "z": [9, 3, 8, 9, 2, 9],
            "zz": [0, -3, 8, 9, 6, 9],
        }
    ).astype(float)
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


def test_summary_table_columns_line_up_with_long_model_names():
    from moa_features.training.metrics import summary_table

    figures = {c: 0.5 for c in ("macro_recall", "well_macro_recall", "treatment_macro_recall", "treatment_accuracy")}
    chance = {"treatment_expected_chance": {"accuracy": 0.1, "macro_recall": 0.1}, "treatment_accuracy_p": 0.001}
    result = {"models": {"knn": {**figures, **chance}, "ensemble_no_embedding": {**figures, **chance}}}
    header, *rows = summary_table(result).splitlines()[:3]
    # the first figure's cell ends where its header ends, on every row
    assert {line.index("]") + 1 for line in rows} == {header.index("macro_recall") + len("macro_recall")}
    assert rows[1].startswith("ensemble_no_embedding ")
