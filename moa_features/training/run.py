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
from moa_features.models.preprocessing import RECIPES
from moa_features.runs import check_run_folder, file_sha256, open_run
from moa_features.training.data import load_training_data
from moa_features.training.fitting import (
    DEFAULT_MODELS,
    EPSILONS,
    SecondProcess,
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


PREPROCESSING_CHOICE = (
    "The field's published profiling recipe, not tuned on the reported folds: robust z-score of every feature "
    "against negative controls, pycytominer-style feature selection (missing values, variance, correlation 0.9, "
    "blocklist) and sphering on negative controls (typical variation normalisation, Ando et al. 2017; ZCA), each "
    "fitted in every outer fold on its training rows and the controls of its training plates only. The one free "
    "parameter, the sphering's regularisation epsilon, is chosen inside each training fold on an inner split of the "
    "outer split's own kind (consensus kNN treatment accuracy on the inner-validation treatments)."
)


def preprocessing_record(settings: Settings, data, per_fold: list[dict], normalize: str) -> dict[str, Any]:
    """``metrics.json`` ``preprocessing``: the recipe, its steps, how its defaults were chosen, each fold's choice."""
    steps = {
        "sphere": ["robust z against the training plates' negative controls", "feature selection",
                   "median imputation", "ZCA sphering on the training plates' negative controls"],
        "scale": ["robust z against the training plates' negative controls", "feature selection",
                  "median imputation"],
        "select": ["feature selection", "median imputation"],
    }[settings.preprocess]  # fmt: skip
    eps = [f.get("epsilon") for f in per_fold]
    return {
        "recipe": settings.preprocess,
        "table_normalization": data.normalization,
        "normalize_requested": normalize,
        "steps": steps,
        "sphere_epsilon": settings.sphere_epsilon,
        "epsilon_candidates": list(EPSILONS) if settings.sphere_epsilon == "auto" else None,
        "epsilon_per_fold": eps,
        "sphered_folds": int(sum(bool(f.get("sphered")) for f in per_fold)),
        "how_chosen": PREPROCESSING_CHOICE
        if settings.preprocess == "sphere"
        else f"--preprocess {settings.preprocess} as requested (not the default recipe)",
        "folds": per_fold,
    }


def negative_control_note(data, result: dict[str, Any], exclude_labels: Sequence[str]) -> str:
    """How the negative controls entered the run, in words (``metrics.json`` ``negative_control``)."""
    try:
        kept = data.columns.controls(data.meta)
    except (KeyError, ValueError):
        kept = np.zeros(len(data.y), dtype=bool)
    labels = sorted({str(v) for v in np.asarray(data.y)[kept]})
    used = (
        "used to normalise and sphere the profiles (training plates only)"
        if data.controls is not None
        else ("absent (no negative-control rows): the profiles are scaled against the training rows and not sphered")
    )
    if not labels:
        how = (
            f"excluded from training and scoring (--exclude-label {', '.join(map(str, exclude_labels))})"
            if (exclude_labels)
            else "not a class"
        )
        return f"Negative controls: {used}; {how}."
    unscored = set(result.get("unscored_classes", []))
    state = "excluded from scoring (never held out)" if set(labels) <= unscored else "held out and scored"
    return f"Negative controls: {used}; their class {', '.join(labels)} is trained on and {state}."


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
    preprocess: str = "sphere",
    sphere_epsilon: float | str = "auto",
) -> dict[str, Any]:
    """Evaluate models on held-out folds, refit them on all rows, write ``output/``; return metrics.

    ``output`` is written whole (:func:`moa_features.runs.open_run`): a non-empty folder is
    refused before any work unless ``overwrite``, and is then replaced by a fresh one.

    Parameters
    ----------
    table : str or Path
        The feature table (Parquet or CSV) from ``extract``.
    output : str or Path
        The run folder.
    thumbs : str or Path, optional
        The table's thumbnail array (``.thumbs.npy``), for the CNNs.
    columns : Columns, optional
        The table's plate, treatment, label, batch columns and controls (default
        :class:`~moa_features.columns.Columns`).
    split : str, default "auto"
        ``auto`` or one of :data:`moa_features.models.splits.SPLITS` (:func:`resolve_split`).
    folds : int, optional
        Outer folds (``None``: the split's default, ``0``: leave one group out).
    exclude_labels : sequence of str, default ()
        Classes left out.
    models : sequence of str, optional
        Registry model names (default ``DEFAULT_MODELS``, and ``cnn`` with ``thumbs``); the
        ensemble's members and the chance baseline are added. A model that needs thumbnails
        without ``thumbs`` is a ``ValueError``.
    normalize : str, default profiling.DEFAULT_NORMALIZATION
        One of :data:`moa_features.profiling.NORMALIZATIONS`.
    annotation : str or Path, optional
        A treatment -> MoA table to label the rows with.
    active_only : bool, default False
        Train on phenotypically active treatments only.
    seed : int, default 0
        Seed of the splits and models.
    cnn_epochs, cnn_patience : int, default 100 and 5
        CNN epoch budget and early-stopping patience.
    n_permutations : int, default N_PERMUTATIONS
        Label permutations of the p-values.
    scheduler : str, optional
        A ``dask.distributed`` scheduler address for XGBoost.
    n_jobs : int, default 1
        CPU cores (``-1``: all). With 2 or more, a second process fits the Keras baseline of every
        fold and the final refit while this one fits the folds (:class:`~moa_features.training.fitting.SecondProcess`;
        same figures and models), and the folds' models get the other cores as threads.
    save_models : bool, default True
        Refit on all rows and save the models for ``moa-features predict``.
    command : str, optional
        The command line, recorded in the run.
    overwrite : bool, default False
        Replace a non-empty ``output``.
    preprocess : str, default "sphere"
        The per-fold recipe (:data:`moa_features.models.preprocessing.RECIPES`).
    sphere_epsilon : float or "auto", default "auto"
        The sphering's regularisation; ``"auto"``: chosen on each fold's inner split
        (:func:`moa_features.training.fitting.fit_preprocessor`).

    Returns
    -------
    dict
        The run's metrics, as written to ``output/metrics.json``.

    Raises
    ------
    ValueError, KeyError, TypeError, FileNotFoundError
        On unusable input (the message names the file, column or option), before anything
        is written.
    """
    if preprocess not in RECIPES:
        raise ValueError(f"unknown --preprocess {preprocess!r}; choose from {', '.join(RECIPES)}")
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
        plate_step=preprocess == "select",
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
        preprocess=preprocess,
        sphere_epsilon=sphere_epsilon,
    )
    expanded = _expand_models(settings.models, data.thumbs is not None)
    outer, params = outer_folds(data, settings.split, settings.n_splits, settings.seed)
    _log(
        f"{len(data.y)} rows, {len(data.feature_names)} features, {len(data.classes)} classes, {len(outer)} "
        f"{settings.split} folds ({splits.QUESTIONS[settings.split]}), models {', '.join(expanded)}"
    )
    background = None
    if SecondProcess.wanted(settings, data, save_models):
        background = SecondProcess(data, outer, params, settings, save_models)
        settings = SecondProcess.rest(settings)
        work = [w for w, on in (("the Keras baseline (cnn) of every fold", background.models), ("the final refit",
                save_models)) if on]  # fmt: skip
        _log(f"a second process fits {' and '.join(work)} meanwhile (--n-jobs; {settings.n_jobs} core(s) left for "
             "the folds)")  # fmt: skip
    try:
        results = evaluate_folds(data, outer, params, settings, background)
        result = compute_metrics(
            results.predictions, data.classes, results.untrained, n_permutations=n_permutations, seed=seed
        )
        result["classes"] = [str(c) for c in data.classes]
        result["preprocessing"] = preprocessing_record(settings, data, results.preprocessing, normalize)
        result["negative_control"] = negative_control_note(data, result, exclude_labels)
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
            "thumbnail_normalization": data.thumbnail_normalization,
            "preprocess": preprocess,
            "sphere_epsilon": sphere_epsilon,
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
        if save_models and background is not None:  # refitted meanwhile by the second process
            final, results.timings["final_fit"] = background.final()
        elif save_models:
            t0 = time.perf_counter()
            final = fit_final(data, settings, params)
            results.timings["final_fit"] = time.perf_counter() - t0
        result["timings"] = {k: round(v, 3) for k, v in results.timings.items()}
        with open_run(output, overwrite) as run:
            result["config"]["run_id"] = run.run_id
            save_run(run.path, result, results, data, final)
    finally:
        if background is not None:
            background.close()
    _log(summary_table(result))
    return result
