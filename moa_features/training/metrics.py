"""Scoring a run's held-out predictions: one aggregation convention for every model, at three levels.

:func:`compute_metrics` averages each model's probabilities site -> well -> treatment and scores
each level with bootstrap CIs, permutation p-values and expected chance
(:mod:`moa_features.models.evaluation`); :func:`summary_table` prints the headline figures.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from moa_features.models import evaluation

N_PERMUTATIONS = 1000
N_BOOTSTRAP = 1000


def _log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def compute_metrics(
    pred: pd.DataFrame,
    classes: Sequence,
    unscored: Sequence = (),
    *,
    n_permutations: int = N_PERMUTATIONS,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Site-, well- and treatment-level figures of every model, all computed the same way.

    Probabilities are averaged site -> well -> treatment (:data:`evaluation.AGGREGATION`);
    figures are pooled over folds, with bootstrap CIs over treatments (``unit_key``),
    treatment-level permutation p-values and expected chance.

    Parameters
    ----------
    pred : DataFrame
        One row per (model, test row): :attr:`FoldResults.predictions`.
    classes : sequence
        The classes, in the order of the ``proba_<class>`` columns.
    unscored : sequence, default ()
        Classes tested in a fold whose training rows lack them (under a held-out-treatment
        split, every class with fewer than two treatments): left out of scoring and listed in
        ``unscored_classes``.
    n_permutations : int, default N_PERMUTATIONS
        Label permutations of the p-values.
    n_boot : int, default N_BOOTSTRAP
        Bootstrap resamples of the CIs.
    seed : int, default 0
        Seed of both.

    Returns
    -------
    dict
        ``models`` (figures per model, site/well/treatment level), ``per_class_recall``,
        ``confusion_matrices``, ``unscored_classes`` and ``aggregation``: the ``metrics.json``
        contract.

    Raises
    ------
    ValueError
        If no class can be scored.
    """
    proba_cols = [f"proba_{c}" for c in classes]
    unscored = list(unscored)
    if unscored:
        _log(
            f"warning: class(es) {[str(c) for c in unscored]} are tested in folds whose training has none of them "
            "(under nsc: fewer than 2 treatments, or all in one plate group), so they cannot be scored; they stay in "
            "training and are left out of the MoA figures"
        )
    if pred["y_true"].isin(unscored).all():
        raise ValueError(
            f"no class can be scored: every class ({', '.join(map(str, unscored))}) is tested only in folds whose "
            "training has none of it. Held-out-treatment splits need classes with at least 2 treatments; pass "
            "--split plate to measure treatment recognition instead"
        )
    tested = set(pred["y_true"].astype(str))
    never = [c for c in classes if str(c) not in tested]  # trained on, never held out (e.g. a control class)
    reasons = {str(c): "tested only in folds whose training has none of this class" for c in unscored}
    reasons.update({str(c): "no held-out truth: trained on but never held out" for c in never})
    scored = [str(c) for c in classes if str(c) in tested and str(c) not in reasons]
    out: dict[str, Any] = {
        "models": {},
        "per_class_recall": {},
        "confusion_matrices": {},
        "scored_classes": scored,
        "unscored_classes": [str(c) for c in unscored] + [str(c) for c in never],
        "unscored_reasons": reasons,
        "scoring": (
            f"accuracy over the held-out treatments of the {len(scored)} scored classes; macro recall, balanced "
            "accuracy and F1 average over the scored classes (those with held-out truth); bootstrap, permutation "
            "null and expected chance use the same class set. Predicting an unscored class is an error of the true "
            "class."
        ),
        "aggregation": evaluation.AGGREGATION,
    }
    carry = ["unit_key", "treatment_key"]
    for model, frame in pred.groupby("model", sort=False):
        frame = frame[~frame["y_true"].isin(unscored)]
        wells = evaluation.aggregate_proba(frame, ["fold", "well_key"], proba_cols, classes, carry)
        treatments = evaluation.aggregate_proba(wells, ["fold", "treatment_key"], proba_cols, classes, ["unit_key"])
        metrics: dict[str, Any] = {"aggregation": evaluation.AGGREGATION}
        for prefix, level in zip(evaluation.LEVELS, (frame, wells, treatments)):
            metrics.update(evaluation.score_level(level, prefix, "unit_key", n_boot, n_permutations, seed, unscored))
        metrics["n_rows"] = metrics["n"]
        metrics["n_treatments"] = metrics["treatment_n"]
        out["models"][model] = metrics
        out["per_class_recall"][model] = evaluation.per_class_recall(
            treatments["y_true"], treatments["y_pred"], classes
        )
        out["confusion_matrices"][model] = evaluation.confusion(treatments["y_true"], treatments["y_pred"], classes)
    return out


def ensemble_summary(per_fold: list[dict]) -> dict[str, Any]:
    """Per-fold weights and fallbacks, and a sentence saying how often the ensemble fell back."""
    fell = [f["fallback"] for f in per_fold if f["fallback"]]
    note = (
        f"the weight rule (the most even blend within one standard error of the best on the inner validation) "
        f"gave one member all the weight in {len(fell)} of {len(per_fold)} folds; there the ensemble is that "
        f"member ({', '.join(sorted(set(fell)))})"
        if fell
        else "the weight rule kept a blend of members in every fold"
    )
    return {"folds": per_fold, "n_fallback": len(fell), "note": note}


def summary_table(result: dict[str, Any]) -> str:
    """A plain-text table of the headline figures per model (with the treatment-level p-value).

    Parameters
    ----------
    result : dict
        From :func:`compute_metrics`.

    Returns
    -------
    str
        The table, one line per model.
    """
    cols = ["macro_recall", "well_macro_recall", "treatment_macro_recall", "treatment_accuracy"]
    width = max(len("model"), *(len(name) for name in result["models"])) + 2
    lines = ["model".ljust(width) + " ".join(f"{c:>24}" for c in cols) + "   p(treatment_acc)"]
    for name, m in result["models"].items():
        cells = []
        for c in cols:
            lo, hi = m.get(f"{c}_ci95", (np.nan, np.nan))
            cells.append(f"{m[c]:>8.3f} [{lo:5.3f}, {hi:5.3f}]".rjust(24) if c in m else " " * 24)
        lines.append(name.ljust(width) + " ".join(cells) + f"   {m.get('treatment_accuracy_p', np.nan):.4f}")
    chance = next(iter(result["models"].values()))["treatment_expected_chance"]
    lines.append(
        f"expected chance (treatment level, class priors): accuracy {chance['accuracy']:.3f}, "
        f"macro recall {chance['macro_recall']:.3f}"
    )
    return "\n".join(lines)
