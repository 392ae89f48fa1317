"""A training run end to end: data, folds, fitting, metrics, the run folder (:func:`run_training`)."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moa_features import profiling
from moa_features.columns import Columns
from moa_features.io import package_versions, read_table, read_thumbs
from moa_features.models import evaluation, splits
from moa_features.runs import check_run_folder, open_run
from moa_features.training.data import load_training_data
from moa_features.training.fitting import DEFAULT_MODELS, Settings, _expand_models, _log, evaluate_folds, fit_final
from moa_features.training.folds import INNER_FRACTION, default_folds, outer_folds, resolve_split
from moa_features.training.metrics import N_BOOTSTRAP, N_PERMUTATIONS, compute_metrics, ensemble_summary, summary_table
from moa_features.training.writing import save_run


def run_training(
    table: str | Path,
    output: str | Path,
    thumbs: str | Path | None = None,
    *,
    columns: Columns | None = None,
    split: str = "auto",
    folds: int | None = None,
    exclude_labels: Sequence[str] = (),
    models: Sequence[str] | None = None,
    normalize: str = profiling.DEFAULT_NORMALIZATION,
    annotation: str | Path | None = None,
    active_only: bool = False,
    seed: int = 0,
    cnn_epochs: int = 100,
    cnn_patience: int = 5,
    n_permutations: int = N_PERMUTATIONS,
    scheduler: str | None = None,
    n_jobs: int = 1,
    save_models: bool = True,
    command: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate models on held-out folds, refit them on all rows, write ``output/``; return metrics.

    ``columns``: the table's plate, treatment, label, batch columns and controls (default
    :class:`~moa_features.columns.Columns`); ``models`` defaults to every model that applies
    (the CNNs only with ``thumbs``);
    ``folds``: outer folds (``None`` the split's default, ``0`` leave one group out).
    ``output`` is written whole (:func:`moa_features.runs.open_run`): a non-empty folder is
    refused before any work unless ``overwrite``, and is then replaced by a fresh one.
    """
    columns = columns or Columns()
    table_path, output = Path(table).resolve(), Path(output)
    check_run_folder(output, overwrite)
    thumbs_path = Path(thumbs).resolve() if thumbs is not None else None
    if models is None:
        models = (("cnn",) if thumbs_path else ()) + DEFAULT_MODELS
    if split not in ("auto",) + splits.SPLITS:
        raise ValueError(f"unknown split {split!r}; expected auto or one of {', '.join(splits.SPLITS)}")
    df = read_table(table_path)
    data = load_training_data(
        df,
        table_path=table_path,
        thumbs=None if thumbs_path is None else read_thumbs(thumbs_path, df),
        columns=columns,
        normalize=normalize,
        exclude_labels=exclude_labels,
        annotation=annotation,
        active_only=active_only,
        seed=seed,
    )
    resolved = resolve_split(split, data, folds, seed)
    folds_requested = folds
    if folds is None:
        folds = default_folds(resolved, data, tuple(models))
    settings = Settings(
        models=tuple(models),
        seed=seed,
        split=resolved,
        n_splits=folds,
        cnn_epochs=cnn_epochs,
        cnn_patience=cnn_patience,
        scheduler=scheduler,
        n_jobs=n_jobs,
    )
    expanded = _expand_models(settings.models, data.thumbs is not None)
    outer, params = outer_folds(data, settings.split, settings.n_splits, settings.seed)
    _log(
        f"{len(data.y)} rows, {len(data.feature_names)} features, {len(data.classes)} classes, {len(outer)} "
        f"{settings.split} folds ({splits.QUESTIONS[settings.split]}), models {', '.join(expanded)}"
    )
    results = evaluate_folds(data, outer, params, settings)
    result = compute_metrics(
        results.predictions, data.classes, results.untrained, n_permutations=n_permutations, seed=seed
    )
    result["classes"] = [str(c) for c in data.classes]
    if results.ensemble:
        result["ensemble"] = ensemble_summary(results.ensemble)
    result["config"] = {
        "table": str(table_path),
        "thumbs": str(thumbs_path) if thumbs_path else None,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "split": settings.split,
        "split_requested": split,
        "question": splits.QUESTIONS[settings.split],
        "label": columns.label,
        "group": columns.plate,
        "treatment": columns.treatment,
        "batch": columns.batch,
        "experiment": columns.experiment,
        "control": columns.describe_control(),
        "columns": columns.as_config(),
        "normalize": normalize,
        "normalize_applied": data.normalization,
        "exclude_labels": list(exclude_labels),
        "active_only": active_only,
        "inactive_treatments_dropped": data.inactive,
        "seed": seed,
        "models": list(expanded),
        "n_rows": int(len(data.y)),
        "n_features": len(data.feature_names),
        "n_features_selected": results.n_selected,
        "n_folds": len(outer),
        "folds": "leave-one-out" if folds == 0 else (folds or "default"),
        "folds_requested": "default" if folds_requested is None else folds_requested,
        "inner_split": f"one of {round(1 / INNER_FRACTION)} {settings.split} folds of the training rows",
        "cnn_epochs_max": cnn_epochs,
        "cnn_patience": cnn_patience,
        "cnn_embedding_epochs": results.cnn_epochs,
        "n_permutations": n_permutations,
        "n_bootstrap": N_BOOTSTRAP,
        "aggregation": evaluation.AGGREGATION,
        "scheduler": scheduler,
        "versions": package_versions(),
    }
    final = None
    if save_models:
        t0 = time.perf_counter()
        final = fit_final(data, settings, params)
        results.timings["final_fit"] = time.perf_counter() - t0
    result["timings"] = {k: round(v, 3) for k, v in results.timings.items()}
    with open_run(output, overwrite) as run:
        result["config"]["run_id"] = run.run_id
        save_run(run.path, result, results, data, final)
    _log(summary_table(result))
    return result
