"""A training run end to end: data, folds, fitting, metrics, the run folder (:func:`run_training`)."""

from __future__ import annotations

import re
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features import profiling, schema
from moa_features.columns import Columns
from moa_features.io import package_versions, read_table, read_thumbs
from moa_features.models import evaluation, splits
from moa_features.runs import check_run_folder, file_sha256, open_run
from moa_features.training.data import load_training_data
from moa_features.training.fitting import (
    DEFAULT_MODELS,
    Settings,
    _expand_models,
    _log,
    embedding_note,
    evaluate_folds,
    fit_final,
)
from moa_features.training.folds import INNER_FRACTION, default_folds, outer_folds, resolve_split
from moa_features.training.metrics import N_BOOTSTRAP, N_PERMUTATIONS, compute_metrics, ensemble_summary, summary_table
from moa_features.training.writing import save_run

# Treatment columns of common screens (JUMP / LINCS / BBBC021 / RxRx): named when the default is absent.
LIKELY_TREATMENT = re.compile(r"compound|broad_sample|pert_iname|pert_id|jcp2022|inchikey|treatment|drug|sirna", re.I)


def check_question(table: pd.DataFrame, columns: Columns, split: str, source: str | Path) -> None:
    """Refuse a silent change of question before any work.

    With ``--split auto`` and no ``columns.treatment`` column, ``auto`` would fall back to a plate
    split (treatment recognition, not the MoA of unseen treatments). When the table has a column
    that looks like a treatment column, stop and name it with the flags that ask either question.
    Also refuses tables without rows and plate columns with missing values (named rows).
    """
    if table.empty:
        raise ValueError(f"{source}: the table has no rows (only a header); nothing to train on")
    if columns.plate in table.columns and table[columns.plate].isna().any():
        rows = np.flatnonzero(table[columns.plate].isna().to_numpy())
        raise ValueError(
            f"{source}: the plate column {columns.plate!r} is empty in {len(rows)} row(s) (table rows "
            f"{', '.join(str(r + 1) for r in rows[:8])}{', ...' if len(rows) > 8 else ''}, first data row = 1); "
            "fill it or drop those rows (--plate names another column)"
        )
    if split != "auto" or columns.treatment in table.columns:
        return
    likely = [c for c in schema.metadata_columns(table.columns) if LIKELY_TREATMENT.search(c)]
    if likely:
        raise ValueError(
            f"{source}: no treatment column {columns.treatment!r}, but {likely[0]!r} looks like one. "
            f"Pass --treatment {likely[0]} to ask 'what is the MoA of a treatment never trained on?' (held-out "
            "treatments), or --split plate to measure treatment recognition on held-out plates instead"
        )


def run_activity(table: pd.DataFrame, columns: Columns, seed: int = 0) -> pd.DataFrame | None:
    """Phenotypic activity of every treatment (``RUN/activity.csv``), as ``moa-features activity`` computes it
    with its defaults.

    ``None`` (with a log line) when the table has no treatment column or no negative controls.
    """
    if columns.treatment not in table.columns:
        return None
    from moa_features.activity import table_activity

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            act = table_activity(table, columns, seed=seed)[0]
    except (ImportError, KeyError, ValueError) as exc:
        _log(f"phenotypic activity not computed: {exc.args[0] if exc.args else exc}")
        return None
    _log(f"phenotypic activity: {int(act['active'].sum())} of {len(act)} treatments active against their plate's "
         "controls (activity.csv)")  # fmt: skip
    return act


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
    check_question(df, columns, split, table_path)
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
    if data.activity is None:
        data.activity = run_activity(df, columns, seed)
    resolved = resolve_split(split, data, folds, seed)
    if split == "auto" and resolved in ("plate", "experiment"):
        _log(
            f"--split auto: no {columns.treatment!r} column with 2 or more treatments, so {resolved} split: "
            f"{splits.QUESTIONS[resolved]}; pass --treatment COLUMN to predict the MoA of unseen treatments"
        )
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
        result["embedding"] = result["ensemble"]["embedding"] = embedding_note(result["models"], results.ensemble)
    result["config"] = {
        "table": str(table_path),
        "table_sha256": file_sha256(table_path),
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
