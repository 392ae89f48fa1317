"""Scoring held-out predictions: one aggregation convention, bootstrap CIs, permutation null, chance.

Aggregation convention (the same for every model, recorded in ``metrics.json``): each model
gives class probabilities per row (site or well); a well's probabilities are the mean of its
rows', a treatment's the mean of its wells' (each well counts once); the prediction at each
level is the argmax. The 1-NN compares Ljosa consensus profiles (well medians, then the
treatment median) of each held-out treatment with those of the training treatments and gives
every row of a treatment that treatment's probabilities, so its rows are averaged like every
other model's and the ensemble is compared with each member like for like.

Metrics follow scikit-learn on the pooled held-out units of all folds: ``macro_recall``
(``recall_score(average="macro")``), ``balanced_accuracy``, ``macro_f1``, ``accuracy``.
Macro figures average over the *scored classes*: the classes with held-out truth at that level
(:func:`scored_labels`), minus unscored classes passed as ``ignore``. A class that is only
predicted (e.g. a negative control trained on but never held out) is an error of the true class
and has no recall of its own to average; the bootstrap, the permutation null and expected chance
use the same class set.

Uncertainty and chance:

- :func:`bootstrap` resamples the *treatments* (the independent units; all rows of a drawn
  treatment come along) with replacement: ``_std`` and a percentile ``_ci95``.
- :func:`permutation_pvalues` shuffles the labels at treatment level (every row of a
  treatment gets the label of another treatment) and re-scores the fixed predictions. Why
  this is a valid null without refitting: the null hypothesis is "a treatment's prediction
  is independent of its MoA"; under it, with treatments exchangeable, every assignment of
  the observed labels to treatments is equally likely given the predictions, so the
  permuted scores are the exact conditional null distribution (a permutation test of the
  association between prediction and truth, like Fisher's exact test on the confusion
  matrix). Shuffling whole treatments, not rows, keeps a treatment's replicates and
  concentrations together, so their correlation does not inflate significance. It tests the
  held-out predictions that were actually made, for every model (CNNs included) at the cost
  of re-scoring only. A refit-level null (re-training on shuffled labels) would additionally
  ask whether the training procedure could produce such a score from label-free structure;
  with test treatments never in training and no fitted step seeing test rows
  (``tests/test_leakage.py``), a held-out prediction can only agree with the held-out truth
  beyond chance through what was learnt from the training labels, which is what this null
  removes. p = (1 + #{null >= observed}) / (1 + n).
- :func:`expected_chance`: the expected score of a classifier guessing each class with its
  prior among the scored units (accuracy = sum of squared priors, macro metrics = 1 / k);
  it replaces the majority-class figure, which is degenerate under NSC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

METRICS = ("macro_recall", "balanced_accuracy", "macro_f1", "accuracy")
HEADLINE = ("macro_recall", "accuracy")  # the figures that get permutation p-values and CIs
LEVELS = ("", "well_", "treatment_")
AGGREGATION = (
    "probability averaging: site -> well (mean of its sites' probabilities) -> treatment (mean of its wells'); "
    "argmax at each level; the kNN compares each held-out treatment's Ljosa consensus profile (well medians -> "
    "treatment median) with the training treatments' and gives every row of the treatment its probabilities"
)


def classification_metrics(
    y_true: Sequence, y_pred: Sequence, prefix: str = "", ignore: Sequence = ()
) -> dict[str, float]:
    """``macro_recall``, ``balanced_accuracy``, ``macro_f1``, ``accuracy`` (each with ``prefix``).

    ``ignore``: classes left out of the macro averages (unscored classes: predicting one is
    still an error of the true class, but the class itself has no recall to average).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = scored_labels(y_true, ignore)
    recall = float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)) if labels else 0.0
    return {
        f"{prefix}macro_recall": recall,
        f"{prefix}balanced_accuracy": recall,  # balanced accuracy is the macro recall over the scored classes
        f"{prefix}macro_f1": (
            float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)) if labels else 0.0
        ),
        f"{prefix}accuracy": float(accuracy_score(y_true, y_pred)),
    }


def scored_labels(y_true: Sequence, ignore: Sequence = ()) -> list:
    """The classes macro figures average over: those with held-out truth (present in ``y_true``), minus ``ignore``.

    Returns the labels sorted, in ``y_true``'s type.
    """
    skip = {str(c) for c in ignore}
    return [c for c in np.unique(np.asarray(y_true)) if str(c) not in skip]


def per_class_recall(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict[str, float | None]:
    """Recall of each class in ``labels`` (keys as str); ``None`` for a class absent from ``y_true``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out: dict[str, float | None] = {}
    for c in labels:
        mask = y_true == c
        out[str(c)] = float(np.mean(y_pred[mask] == c)) if mask.any() else None
    return out


def confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict:
    """``{"labels": [...], "matrix": [[...]]}``: rows true class, columns predicted class."""
    m = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(labels))
    return {"labels": [str(c) for c in labels], "matrix": m.tolist()}


def aggregate_proba(
    frame: pd.DataFrame, keys: Sequence[str], proba_cols: Sequence[str], classes: Sequence, carry: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per group of ``keys`` (well, treatment): mean probabilities, ``y_true``, ``y_pred``.

    ``frame`` holds ``keys``, ``y_true``, ``proba_cols`` (in ``classes`` order) and the
    ``carry`` columns (their first value per group is kept). ``y_true`` is the group's most
    common label, ``y_pred`` the argmax of the mean probabilities.
    """
    keys = list(keys)
    grouped = frame.groupby(keys, sort=True, dropna=False)
    out = grouped[list(proba_cols)].mean()
    out["y_true"] = grouped["y_true"].agg(lambda s: s.value_counts().index[0])
    for c in carry:
        out[c] = grouped[c].first()
    out["y_pred"] = np.asarray(classes)[np.argmax(out[list(proba_cols)].to_numpy(), axis=1)]
    return out.reset_index()


def _encode(y_true: np.ndarray, y_pred: np.ndarray, ignore: Sequence = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes of ``y_true`` and ``y_pred`` and a mask (k,) of the codes that enter macro averages."""
    labels, codes = np.unique(np.concatenate([y_true, y_pred]).astype(str), return_inverse=True)
    return codes[: len(y_true)], codes[len(y_true) :], ~np.isin(labels, [str(c) for c in ignore])


def _fast_scores(t: np.ndarray, p: np.ndarray, averaged: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro recall over the ``averaged`` classes present in ``t``) of integer codes.

    The same as scikit-learn's ``recall_score(average="macro", labels=...)`` (zero_division=0).
    """
    k = len(averaged)
    hit = t == p
    n_true = np.bincount(t, minlength=k)
    present = (n_true > 0) & averaged
    recall = np.bincount(t[hit], minlength=k) / np.maximum(n_true, 1)
    return float(hit.mean()), float(recall[present].mean()) if present.any() else 0.0


def bootstrap(
    y_true: Sequence,
    y_pred: Sequence,
    units: Sequence,
    prefix: str = "",
    n_boot: int = 1000,
    seed: int = 0,
    ignore: Sequence = (),
) -> dict[str, float | list[float]]:
    """Bootstrap over ``units`` (treatments) of accuracy and macro recall: ``_std`` and ``_ci95`` [2.5, 97.5] %.

    ``ignore``: classes left out of the macro average (as in :func:`classification_metrics`).
    """
    t, p, k = _encode(np.asarray(y_true), np.asarray(y_pred), ignore)
    units = np.asarray(units).astype(str)
    names, inv = np.unique(units, return_inverse=True)
    members = [np.flatnonzero(inv == i) for i in range(len(names))]
    rng = np.random.default_rng(seed)
    samples = np.empty((n_boot, 2))
    for b in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        samples[b] = _fast_scores(t[idx], p[idx], k)
    out: dict[str, float | list[float]] = {}
    for j, name in enumerate(("accuracy", "macro_recall")):
        out[f"{prefix}{name}_std"] = float(samples[:, j].std())
        out[f"{prefix}{name}_ci95"] = [float(v) for v in np.percentile(samples[:, j], [2.5, 97.5])]
    return out


def permutation_pvalues(
    y_true: Sequence,
    y_pred: Sequence,
    units: Sequence,
    prefix: str = "",
    n_permutations: int = 1000,
    seed: int = 0,
    ignore: Sequence = (),
) -> dict[str, float]:
    """Permutation p-values of accuracy and macro recall, labels shuffled at the level of ``units``.

    Each unit (treatment) takes its most common label; a permutation reassigns these labels
    among units and every row of a unit gets its unit's new label. Returns
    ``{prefix}accuracy_p``, ``{prefix}macro_recall_p`` and the null means ``..._null_mean``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    t, p, k = _encode(y_true, y_pred, ignore)
    units = np.asarray(units).astype(str)
    names, inv = np.unique(units, return_inverse=True)
    unit_label = pd.Series(t).groupby(inv).agg(lambda s: s.value_counts().index[0]).to_numpy()
    observed = _fast_scores(unit_label[inv], p, k)
    rng = np.random.default_rng(seed)
    null = np.array([_fast_scores(rng.permutation(unit_label)[inv], p, k) for _ in range(n_permutations)])
    out: dict[str, float] = {}
    for j, name in enumerate(("accuracy", "macro_recall")):
        out[f"{prefix}{name}_p"] = float((1 + np.sum(null[:, j] >= observed[j] - 1e-12)) / (1 + n_permutations))
        out[f"{prefix}{name}_null_mean"] = float(null[:, j].mean())
    return out


def expected_chance(y_true: Sequence, prefix: str = "", ignore: Sequence = ()) -> dict[str, float]:
    """Expected scores of guessing each scored class with its prior among ``y_true``'s units.

    The classes are those the macro figures average over (:func:`scored_labels`: present in
    ``y_true``, minus ``ignore``); accuracy = sum of squared priors, macro recall, balanced
    accuracy and macro F1 = 1 / k.
    """
    y = np.asarray(y_true).astype(str)
    y = y[~np.isin(y, [str(c) for c in ignore])]
    _, counts = np.unique(y, return_counts=True)
    if not len(counts):
        raise ValueError("expected chance needs at least one scored class in y_true")
    prior = counts / counts.sum()
    macro = 1.0 / len(counts)
    return {
        f"{prefix}macro_recall": macro,
        f"{prefix}balanced_accuracy": macro,
        f"{prefix}macro_f1": macro,
        f"{prefix}accuracy": float(np.sum(prior**2)),
    }


def score_level(
    frame: pd.DataFrame, prefix: str, units: str, n_boot: int, n_permutations: int, seed: int, ignore: Sequence = ()
) -> dict:
    """All figures of one aggregation level: metrics, bootstrap, permutation p-values, chance, counts.

    ``frame``: ``y_true``, ``y_pred`` and the ``units`` column (the bootstrap/permutation unit);
    ``ignore``: unscored classes, left out of the macro averages.
    """
    y_true, y_pred, u = frame["y_true"], frame["y_pred"], frame[units]
    out: dict = classification_metrics(y_true, y_pred, prefix, ignore)
    out.update(bootstrap(y_true, y_pred, u, prefix, n_boot, seed, ignore))
    out.update(permutation_pvalues(y_true, y_pred, u, prefix, n_permutations, seed, ignore))
    out[f"{prefix}expected_chance"] = expected_chance(frame["y_true"], ignore=ignore)
    out[f"{prefix}scored_classes"] = [str(c) for c in scored_labels(y_true, ignore)]
    out[f"{prefix}n"] = int(len(frame))
    return out
