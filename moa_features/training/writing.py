"""Writing a run folder (``models/RUN/``): the one place that writes it (``docs/architecture.md``)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd

from moa_features.io import write_json, write_table
from moa_features.models import evaluation, registry
from moa_features.training.data import TrainingData

if TYPE_CHECKING:  # fitting's second process writes through save_models: no import back at run time
    from moa_features.training.fitting import FoldResults

TREATMENT_PREDICTIONS = "treatment_predictions.csv"
TREATMENT_COLUMNS = [
    "model", "treatment", "fold", "n_wells", "true_moa", "predicted_moa", "probability", "true_moa_probability",
    "active", "correct", "scored",
]  # fmt: skip


def treatment_predictions(
    predictions: pd.DataFrame,
    classes: Sequence,
    activity: pd.DataFrame | None = None,
    unscored: Sequence = (),
) -> pd.DataFrame:
    """One row per (model, held-out treatment): the run's answer to "what is the MoA of this treatment?".

    Held-out probabilities are averaged site -> well -> treatment exactly as the metrics do
    (:data:`moa_features.models.evaluation.AGGREGATION`). ``true_moa``/``predicted_moa`` hold the
    run's label column (the MoA by default); ``probability`` is the predicted class's,
    ``true_moa_probability`` the true class's; ``active`` the treatment's phenotypic activity
    against its plate's controls (``activity.csv``; empty when unknown); ``scored`` is false for
    classes left out of the figures (``unscored_classes``). Columns :data:`TREATMENT_COLUMNS`,
    sorted by model, then mispredicted first, then treatment.
    """
    proba_cols = [f"proba_{c}" for c in classes]
    frames = []
    for model, frame in predictions.groupby("model", sort=False):
        wells = evaluation.aggregate_proba(frame, ["fold", "well_key"], proba_cols, classes, ["treatment_key"])
        wells["n_wells"] = 1
        grouped = wells.groupby(["fold", "treatment_key"], sort=True)
        out = evaluation.aggregate_proba(wells, ["fold", "treatment_key"], proba_cols, classes)
        out["n_wells"] = grouped["n_wells"].sum().to_numpy()
        proba = out[proba_cols].to_numpy()
        index = {str(c): i for i, c in enumerate(classes)}
        out["probability"] = proba.max(axis=1)
        out["true_moa_probability"] = [proba[i, index[str(t)]] for i, t in enumerate(out["y_true"])]
        out["model"] = model
        frames.append(out)
    out = pd.concat(frames, ignore_index=True).rename(
        columns={"treatment_key": "treatment", "y_true": "true_moa", "y_pred": "predicted_moa"}
    )
    out["correct"] = out["true_moa"].astype(str) == out["predicted_moa"].astype(str)
    out["scored"] = ~out["true_moa"].astype(str).isin([str(c) for c in unscored])
    out["active"] = pd.array([pd.NA] * len(out), dtype="boolean")
    if activity is not None and len(activity):
        out["active"] = out["treatment"].astype(str).map(activity.set_index("treatment")["active"]).astype("boolean")
    out = out.sort_values(["model", "correct", "treatment"], kind="stable")
    return out[TREATMENT_COLUMNS].reset_index(drop=True)


def save_models(output: Path, final: dict[str, Any], data: TrainingData) -> None:
    """Write the models refitted on all rows (:func:`~moa_features.training.fitting.fit_final`) for
    ``moa-features predict``: ``preprocess.joblib`` (pipeline, feature names, classes) and each model's
    registry file (``MODEL.save`` where it has one, else joblib)."""
    joblib.dump(
        {"pipeline": final["preprocess"], "feature_names": data.feature_names, "classes": list(data.classes)},
        output / "preprocess.joblib",
    )
    for name, spec in registry.MODELS.items():
        if name not in final or spec.file is None:
            continue
        if hasattr(final[name], "save"):
            final[name].save(output / spec.file)
        else:
            joblib.dump(final[name], output / spec.file)


def save_run(
    output: Path, result: dict[str, Any], folds: FoldResults, data: TrainingData, final: dict[str, Any] | None
) -> None:
    """Write the run folder (the one place that writes it): metrics, predictions, histories, models.

    Parameters
    ----------
    output : Path
        The run folder (``docs/architecture.md`` "Training run" is its contract).
    result : dict
        The metrics (:func:`compute_metrics`, with the run's settings).
    folds : FoldResults
        What the fold loop collected.
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    final : dict of str to object, or Path, optional
        The models refitted on all rows (:func:`fit_final`), or a folder where :func:`save_models`
        wrote them; ``None``: no models saved.
    """
    output.mkdir(parents=True, exist_ok=True)
    write_table(folds.predictions, output / "predictions.parquet")
    per_treatment = treatment_predictions(
        folds.predictions, data.classes, data.activity, result.get("unscored_classes", ())
    )
    write_table(per_treatment, output / TREATMENT_PREDICTIONS)
    if data.activity is not None:
        write_table(data.activity, output / "activity.csv")
    write_json({k: v for k, v in folds.histories.items() if v}, output / "history.json")
    if folds.importance.any():
        imp = pd.DataFrame({"feature": data.feature_names, "importance": folds.importance})
        write_table(imp.sort_values("importance", ascending=False), output / "feature_importance.csv")
    if isinstance(final, Path):  # written by the second process (:func:`save_models`)
        for path in sorted(final.iterdir()):
            shutil.copyfile(path, output / path.name)
    elif final is not None:
        save_models(output, final, data)
    write_json(result, output / "metrics.json")
