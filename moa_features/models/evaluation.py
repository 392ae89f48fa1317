"""Grouped splits, classification metrics and chance baselines for MoA models.

Sites of one well (and wells of one plate) are near-duplicates, so every split here holds out
whole groups, never random rows:

- ``plate`` / ``experiment``: leave-one-group-out when there are at most 5 groups, otherwise
  ``GroupKFold(5)``; a plate (experiment) never straddles train and test.
- ``nsc`` ("not same compound"): leave-one-treatment-out; each test fold holds exactly one
  treatment's rows (Ljosa et al. 2013).
- ``nscb`` ("not same compound or batch"): as ``nsc``, and training rows from any batch of
  the test treatment are dropped too.

Metrics follow scikit-learn: ``macro_recall`` averages the recall of every class present in
``y_true`` or ``y_pred`` (scikit-learn's ``recall_score(average="macro")``);
``balanced_accuracy`` is scikit-learn's (mean recall over classes present in ``y_true``).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from sklearn.utils.validation import check_is_fitted

SPLITS = ("plate", "experiment", "nsc", "nscb")
METRICS = ("macro_recall", "balanced_accuracy", "macro_f1", "accuracy")
MAX_FOLDS = 5

Split = tuple[np.ndarray, np.ndarray]


def group_splits(groups: Sequence, n_splits: int | None = None) -> list[Split]:
    """Train/test row indices holding out whole groups (plates, experiments).

    ``n_splits`` defaults to ``min(5, n_groups)``; with ``n_splits == n_groups`` this is
    leave-one-group-out (folds in sorted group order). Needs at least two groups.
    """
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise ValueError(
            f"a grouped split needs at least 2 groups, got {len(uniq)} ({uniq.tolist()}); "
            "a model evaluated on the plate it was trained on says nothing"
        )
    n_splits = min(MAX_FOLDS, len(uniq)) if n_splits is None else int(n_splits)
    if not 2 <= n_splits <= len(uniq):
        raise ValueError(f"n_splits must be in [2, {len(uniq)}] for {len(uniq)} groups, got {n_splits}")
    cv = LeaveOneGroupOut() if n_splits == len(uniq) else GroupKFold(n_splits=n_splits)
    dummy = np.zeros(len(groups))
    return [(np.sort(tr), np.sort(te)) for tr, te in cv.split(dummy, groups=groups)]


def treatment_splits(treatments: Sequence, batches: Sequence | None = None) -> list[Split]:
    """Leave-one-treatment-out folds (NSC), or NSCB when ``batches`` is given.

    Each fold's test rows are exactly one treatment's rows. With ``batches`` (one batch label
    per row), training rows whose batch is any batch of the test treatment are removed.
    Folds whose training set would be empty are skipped.
    """
    treatments = np.asarray(treatments)
    batch_arr = None if batches is None else np.asarray(batches)
    out: list[Split] = []
    for t in pd.unique(treatments):
        test = np.flatnonzero(treatments == t)
        train = treatments != t
        if batch_arr is not None:
            train &= ~np.isin(batch_arr, np.unique(batch_arr[test]))
        train_idx = np.flatnonzero(train)
        if len(train_idx):
            out.append((train_idx, test))
    if len(out) < 2:
        raise ValueError(f"NSC/NSCB splits need at least 2 treatments with training data, got {len(out)}")
    return out


def make_splits(
    df: pd.DataFrame,
    split: str = "plate",
    group_col: str = "Metadata_Plate",
    experiment_col: str = "Metadata_Experiment",
    treatment_col: str | None = None,
    batch_col: str | None = None,
) -> list[Split]:
    """Folds for a table by ``split`` (one of :data:`SPLITS`), naming missing columns clearly."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")

    def column(name: str | None, what: str) -> pd.Series:
        if name is None or name not in df.columns:
            raise KeyError(f"--split {split} needs the {what} column {name!r}, which the table lacks")
        if df[name].isna().any():
            raise ValueError(f"{what} column {name!r} has {int(df[name].isna().sum())} missing values")
        return df[name]

    if split == "plate":
        return group_splits(column(group_col, "group").astype(str))
    if split == "experiment":
        return group_splits(column(experiment_col, "experiment").astype(str))
    treatments = column(treatment_col, "treatment").astype(str)
    if split == "nsc":
        return treatment_splits(treatments)
    return treatment_splits(treatments, column(batch_col, "batch").astype(str))


def classification_metrics(y_true: Sequence, y_pred: Sequence, prefix: str = "") -> dict[str, float]:
    """``macro_recall``, ``balanced_accuracy``, ``macro_f1``, ``accuracy`` (each with ``prefix``)."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    with warnings.catch_warnings():
        # balanced_accuracy warns when a fold's predictions name classes absent from its truth
        # (always so for one-treatment NSC folds); the score is still the defined one.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        balanced = float(balanced_accuracy_score(y_true, y_pred))
    return {
        f"{prefix}macro_recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
        f"{prefix}balanced_accuracy": balanced,
        f"{prefix}macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        f"{prefix}accuracy": float(accuracy_score(y_true, y_pred)),
    }


def per_class_recall(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict[str, float | None]:
    """Recall of each class in ``labels``; ``None`` for a class absent from ``y_true``."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    out: dict[str, float | None] = {}
    for c in labels:
        mask = y_true == str(c)
        out[str(c)] = float(np.mean(y_pred[mask] == str(c))) if mask.any() else None
    return out


def confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict:
    """``{"labels": [...], "matrix": [[...]]}``: rows true class, columns predicted class."""
    labels = [str(c) for c in labels]
    m = confusion_matrix(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str), labels=labels)
    return {"labels": labels, "matrix": m.tolist()}


def aggregate_proba(
    frame: pd.DataFrame, keys: Sequence[str], proba_cols: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
    """One prediction per group of rows (well, treatment): the mean of their probabilities.

    ``frame`` holds ``keys``, ``y_true`` and ``proba_cols`` (in ``classes`` order). Returns one
    row per group with ``y_true`` (the group's most common label), the mean probabilities and
    ``y_pred`` (argmax of the mean).
    """
    keys = list(keys)
    grouped = frame.groupby(keys, sort=True, dropna=False)
    proba = grouped[list(proba_cols)].mean()
    truth = grouped["y_true"].agg(lambda s: s.value_counts().index[0])
    out = proba.copy()
    out["y_true"] = truth
    out["y_pred"] = np.asarray(classes, dtype=object)[np.argmax(proba.to_numpy(), axis=1)]
    return out.reset_index()


def summarize_folds(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds and its spread as ``<metric>_std`` (population SD)."""
    if not per_fold:
        return {}
    keys = per_fold[0].keys()
    out: dict[str, float] = {}
    for k in keys:
        vals = np.array([f[k] for f in per_fold], dtype=float)
        out[k] = float(np.mean(vals))
        out[f"{k}_std"] = float(np.std(vals))
    return out


def bootstrap_std(
    y_true: Sequence, y_pred: Sequence, folds: Sequence, prefix: str = "", n_boot: int = 200, seed: int = 0
) -> dict[str, float]:
    """Spread of pooled metrics by resampling whole folds with replacement.

    Used for NSC/NSCB, where each fold holds one treatment (one class) and per-fold macro
    metrics are undefined: the metric is computed on the pooled held-out rows, and its
    ``_std`` is the SD over ``n_boot`` fold-level bootstrap resamples.
    """
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    folds = np.asarray(folds)
    uniq = np.unique(folds)
    members = {f: np.flatnonzero(folds == f) for f in uniq}
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        pick = rng.choice(uniq, size=len(uniq), replace=True)
        idx = np.concatenate([members[f] for f in pick])
        samples.append(classification_metrics(y_true[idx], y_pred[idx], prefix))
    return {f"{k}_std": float(np.std([s[k] for s in samples])) for k in samples[0]}


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the most frequent training class for every row (chance baseline).

    ``predict_proba`` gives the training class frequencies for every row.
    """

    def fit(self, X, y, **fit_params) -> "MajorityClassifier":
        y = np.asarray(y).astype(str)
        self.classes_, counts = np.unique(y, return_counts=True)
        self.class_prior_ = counts / counts.sum()
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "class_prior_")
        return np.tile(self.class_prior_, (len(X), 1))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "class_prior_")
        return np.full(len(X), self.classes_[np.argmax(self.class_prior_)], dtype=object)


class ShuffledLabelClassifier(ClassifierMixin, BaseEstimator):
    """Fits ``estimator`` on randomly permuted training labels (label-shuffled baseline).

    The features keep all their structure but carry no information about the labels, so its
    held-out score estimates chance for the given class balance and pipeline. Extra fit
    arguments (``groups=...``) are passed to the wrapped estimator.
    """

    def __init__(self, estimator: BaseEstimator, random_state: int = 0) -> None:
        self.estimator = estimator
        self.random_state = random_state

    def fit(self, X, y, **fit_params) -> "ShuffledLabelClassifier":
        y = np.asarray(y).astype(str)
        rng = np.random.default_rng(self.random_state)
        self.estimator_ = clone(self.estimator).fit(X, rng.permutation(y), **fit_params)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

