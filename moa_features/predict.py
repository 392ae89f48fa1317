"""Predict MoAs for a feature table with a trained run: ``moa-features predict RUN TABLE``.

Loads the models that ``moa-features train`` refitted on all rows (``RUN/preprocess.joblib``,
``xgboost.json``, ``knn.joblib``, ``ensemble.joblib``, ``cnn.keras``, ``cnn_embedding.keras``),
normalises the new table per plate exactly as the run did (``config.normalize`` in
``RUN/metrics.json``: each plate against its own negative controls; the embedding CNN's
thumbnails likewise, by each plate's control intensity per channel), and writes one row per
(model, table row): ``model``, the row's metadata, ``y_pred``, ``proba_<class>`` (and
``y_true`` when the table has the run's label column).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from moa_features import profiling, schema
from moa_features.columns import Columns, metadata_parent
from moa_features.io import (
    check_writable_file,
    format_warnings,
    read_json,
    read_table,
    read_thumbs,
    refuse_overwriting_inputs,
    write_table,
)
from moa_features.models import registry
from moa_features.models.cnn import thumbnail_reference
from moa_features.models.ensemble import MoAEnsemble, align_proba
from moa_features.runs import MANIFEST, RunFolderError, read_manifest, verify_run_files

# What a run saves, from the model registry: the model file, plus the CNNs' JSON side file.
FEATURE_MODELS = registry.names(input="features", chance=False)
IMAGE_MODELS = registry.names(input="thumbnails")
ALL_MODELS = tuple(m for m in registry.names(chance=False) if registry.get(m).file)
MODEL_FILES = {
    m: (registry.get(m).file,) + ((f"{registry.get(m).file}.json",) if m in IMAGE_MODELS else ()) for m in ALL_MODELS
}


def saved_models(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """The models the run saved: those its manifest lists, else those its config names."""
    manifest = read_manifest(run_dir)
    if manifest is not None:
        return [m for m in ALL_MODELS if MODEL_FILES[m][0] in manifest["files"]]
    return [m for m in ALL_MODELS if m in config.get("models", [])]


def _load_joblib(path: Path, what: str) -> Any:
    try:
        return joblib.load(path)
    except Exception as exc:  # truncated or foreign pickles raise many types
        raise RunFolderError(
            f"{path}: cannot load the {what} ({type(exc).__name__}: {exc}); "
            "the file is truncated or not written by moa-features train"
        ) from None


def _load_model(path: Path, name: str) -> Any:
    if name == "xgboost":
        from moa_features.models.gbm import XGBoostClassifier

        read_json(path, "XGBoost model")  # a truncated file gives a clear message, not a C++ backtrace
        try:
            return XGBoostClassifier.load(path)
        except Exception as exc:
            raise RunFolderError(
                f"{path}: cannot load the XGBoost model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
    if name in IMAGE_MODELS:
        from moa_features.models.cnn import CNNClassifier

        read_json(path.with_name(path.name + ".json"), f"{name} model description")
        try:
            return CNNClassifier.load(path)
        except Exception as exc:
            raise RunFolderError(f"{path}: cannot load the {name} model ({type(exc).__name__}: {exc})") from None
    return _load_joblib(path, f"{name} model")


def load_run(run_dir: str | Path, models: Sequence[str] | None = None, images: bool = True) -> dict[str, Any]:
    """The fitted objects of a training run.

    Every file loaded must belong to the run (``manifest.json``: same run id, unchanged).

    Parameters
    ----------
    run_dir : str or Path
        The run folder written by ``moa-features train``.
    models : sequence of str, optional
        Models to load (an ensemble brings its members); ``None``: every saved model.
    images : bool, default True
        With ``models=None``, ``False`` leaves out the CNNs and an ensemble that has a CNN
        member (for tables without thumbnails).

    Returns
    -------
    dict
        ``config`` (of ``metrics.json``), ``run_id`` (``None`` for a run without manifest),
        ``preprocess`` (pipeline, feature names, classes) and each loaded model by name.

    Raises
    ------
    FileNotFoundError
        If the run's metrics or preprocessing, or a requested or saved model file, is missing.
    ValueError
        If a model name is unknown, or a file is corrupt, truncated or not of this run (the
        message names the file).
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    pre_path = run_dir / "preprocess.joblib"
    for p in (metrics, pre_path):
        if not p.exists():
            raise FileNotFoundError(
                f"{p}: not found; is {run_dir} a run folder written by moa-features train (without --no-save-models)?"
            )
    metrics_json = read_json(metrics, "run metrics")
    if not isinstance(metrics_json, dict) or not isinstance(metrics_json.get("config"), dict):
        raise RunFolderError(f"{metrics}: has no 'config' object; expected the metrics.json of moa-features train")
    config = metrics_json["config"]
    saved = saved_models(run_dir, config)
    wanted = list(saved) if models is None else list(models)
    unknown = sorted(set(wanted) - set(ALL_MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(ALL_MODELS)}")
    files = {m: run_dir / MODEL_FILES[m][0] for m in ALL_MODELS}
    if "ensemble" in wanted and files["ensemble"].exists():
        members = list(_ensemble_members(files["ensemble"]))
        if models is None and not images and set(members) & set(IMAGE_MODELS):
            wanted.remove("ensemble")
        else:
            wanted = list(dict.fromkeys(members + wanted))
    if models is None and not images:
        wanted = [m for m in wanted if m not in IMAGE_MODELS]
    missing = [m for m in wanted if not files[m].exists()]
    if missing:
        which = "saved by this run but missing" if set(missing) <= set(saved) else "not saved in this run"
        raise FileNotFoundError(
            f"{run_dir}: model file(s) {', '.join(files[m].name for m in missing)} "
            f"{which}; predict would silently leave out {', '.join(missing)}"
        )
    names = ["metrics.json", "preprocess.joblib", *(f for m in wanted for f in MODEL_FILES[m])]
    run_id = verify_run_files(run_dir, names)
    if run_id is None:
        print(
            f"moa-features predict: warning: {run_dir} has no {MANIFEST} (written before run manifests); "
            "cannot check that its files belong to one run",
            file=sys.stderr,
        )
    run: dict[str, Any] = {
        "config": config,
        "run_id": run_id,
        "preprocess": _load_joblib(pre_path, "preprocessing pipeline"),
    }
    for name in wanted:
        if name != "ensemble":
            run[name] = _load_model(files[name], name)
    if "ensemble" in wanted:
        try:
            run["ensemble"] = MoAEnsemble.load(files["ensemble"], run)
        except Exception as exc:
            raise RunFolderError(
                f"{files['ensemble']}: cannot load the ensemble ({type(exc).__name__}: {exc})"
            ) from None
    return run


def _ensemble_members(path: Path) -> list[str]:
    """The member names an ``ensemble.joblib`` (:meth:`MoAEnsemble.save`) needs."""
    state = _load_joblib(path, "ensemble model")
    if not isinstance(state, dict) or "member_names_" not in state:
        raise RunFolderError(f"{path}: not an ensemble written by moa-features train (MoAEnsemble.save)")
    return list(state["member_names_"])


def predict_table(run: dict[str, Any], table: pd.DataFrame, thumbs: np.ndarray | None = None) -> pd.DataFrame:
    """Predictions of every model of a loaded run for every row of a table.

    The table is normalised per plate as the run was (its recorded method, ``auto``
    resolved), against its own controls.

    Parameters
    ----------
    run : dict
        From :func:`load_run`.
    table : DataFrame
        Feature table with the run's feature columns.
    thumbs : ndarray of uint8, shape (n, S, S, C), optional
        Thumbnails row-aligned with ``table``; needed by the CNNs.

    Returns
    -------
    DataFrame
        One block of rows per model (``model``), each row the table's metadata, ``y_true``
        (when the label column exists), ``y_pred`` and ``proba_<class>`` (0-1).

    Raises
    ------
    KeyError
        If the table lacks feature columns of the run.
    ValueError
        If a CNN has no or misaligned thumbnails.
    """
    cfg, pre = run["config"], run["preprocess"]
    classes = list(pre["classes"])
    names = pre["feature_names"]
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise KeyError(f"the table lacks {len(missing)} feature column(s) the run was trained on, e.g. {missing[:5]}")
    df = table.reset_index(drop=True)
    columns = Columns.from_config(cfg)
    label = columns.label
    method = cfg.get("normalize_applied", cfg["normalize"])  # the run's method, ``auto`` resolved
    done = profiling.normalize_table(df, method, plate=columns.plate, control=columns.controls(df), features=names)
    df, control = done.table, done.control
    X = pre["pipeline"].transform(df[names].to_numpy(dtype=np.float64))
    proba: dict[str, np.ndarray] = {}
    for name in FEATURE_MODELS:
        if name in run:
            proba[name] = align_proba(run[name].predict_proba(X), run[name].classes_, classes)
    reference = None
    for name in IMAGE_MODELS:
        if name in run:
            if thumbs is None:
                raise ValueError(f"model {name!r} needs thumbnails: pass --thumbs NAME.thumbs.npy")
            if len(thumbs) != len(df):
                raise ValueError(f"thumbnails have {len(thumbs)} rows, the table {len(df)}")
            ref = None
            if run[name].uses_reference_:  # the embedding CNN: per-plate input normalisation, as in training
                if reference is None:
                    thumb_method = cfg.get("thumbnail_normalization", method)  # train's per-plate step of the CNN input
                    reference = thumbnail_reference(
                        thumbs, df[columns.plate].astype(str).to_numpy(), control, thumb_method
                    )
                ref = reference
            proba[name] = align_proba(run[name].predict_proba(thumbs, ref), run[name].classes_, classes)
    if "ensemble" in run:  # the run's MoAEnsemble blends its members' probabilities computed above
        ens = run["ensemble"]
        members = {n: align_proba(proba[n], classes, ens.classes_) for n in ens.names}
        proba["ensemble"] = align_proba(ens.blend(members), ens.classes_, classes)
    meta = df[schema.metadata_columns(df.columns)]
    frames = []
    for name, p in proba.items():
        f = meta.copy()
        f.insert(0, "model", name)
        if label in df.columns:
            f["y_true"] = df[label].to_numpy(dtype=object)
        f["y_pred"] = np.asarray(classes, dtype=object)[np.argmax(p, axis=1)]
        f[[f"proba_{c}" for c in classes]] = p
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- input checks, abstention, output

UNCERTAIN_BELOW = 0.5  # default --uncertain-below (benchmarks/bench_abstention.py measures its effect)
INACTIVE, UNCERTAIN, CONTROL, NO_PREDICTION = "inactive", "uncertain", "negative control", "no prediction"
CALL_COLUMNS = ["active", "call", "reason"]
TREATMENT_COLUMNS = ["model", "treatment", "n_wells", "y_pred", "probability", "active", "call", "reason"]


def check_config(config: dict[str, Any], run_dir: str | Path) -> None:
    """The run's ``config`` holds what predicting needs, or a message naming what is missing."""
    if not any(k in config for k in ("normalize_applied", "normalize")):
        raise RunFolderError(
            f"{Path(run_dir) / 'metrics.json'}: config has no 'normalize' entry (how training normalised each plate), "
            "so new data cannot be normalised the same way; was the run written by another program or an older "
            "moa-features? Retrain it with moa-features train"
        )


def check_features(table: pd.DataFrame, names: Sequence[str], source: str | Path) -> None:
    """Refuse a table without rows, without the run's features, or with text in a feature column."""
    if table.empty:
        raise ValueError(f"{source}: the table has no rows (only a header); nothing to predict")
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise KeyError(
            f"{source}: lacks {len(missing)} feature column(s) the run was trained on, e.g. {missing[:5]}; "
            "extract the table with the run's feature set"
        )
    for col in names:
        if pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & table[col].notna().to_numpy())
        if len(bad):
            raise ValueError(
                f"{source}: feature column {col!r} holds text, e.g. {table[col].iloc[bad[0]]!r} in data row "
                f"{bad[0] + 1} (first data row = 1); feature columns must be numbers (metadata columns start "
                f"with {schema.METADATA_PREFIX!r})"
            )


def finite_rows(table: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """(n,) bool: rows with at least one finite value among the features ``names``."""
    values = table[list(names)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return np.isfinite(values).any(axis=1)


def default_output(run_dir: str | Path, table: str | Path) -> Path:
    """``predictions/<run name>/<table name>.parquet``: outside the run folder, which train writes whole."""
    stem = schema.sidecar_paths(table)["thumbs"].name.removesuffix(".thumbs.npy")
    return Path("predictions") / Path(run_dir).resolve().name / f"{stem}.parquet"


def treatments_path(out: Path) -> Path:
    """The per-treatment table beside the per-row one: ``OUT-treatments.<same format>``."""
    for suffix in (".parquet", ".csv.gz", ".csv"):
        if out.name.endswith(suffix):
            return out.with_name(f"{out.name.removesuffix(suffix)}-treatments{suffix}")
    return out.with_name(out.name + "-treatments.csv")


def check_output(out: Path, run_dir: str | Path, inputs: Sequence[str | Path | None]) -> None:
    """Before any work: a table format, not an input, not inside a run folder, writable."""
    if not out.name.lower().endswith((".parquet", ".csv", ".csv.gz")):
        raise ValueError(f"-o {out}: unknown table format; expected a .parquet, .csv or .csv.gz file name")
    run = Path(run_dir).resolve()
    for folder in out.resolve().parents:
        if folder == run or (folder / MANIFEST).is_file() or (folder / "metrics.json").is_file():
            raise ValueError(
                f"-o {out} is inside the run folder {folder}, which moa-features train writes as a whole "
                f"(predictions.parquet there are the run's cross-validation predictions); write elsewhere, "
                f"e.g. -o {default_output(run_dir, out)}"
            )
    refuse_overwriting_inputs([out, treatments_path(out)], inputs, "-o")
    for path in (out, treatments_path(out)):
        check_writable_file(path, "predictions file (-o)")


def activity_calls(
    run: dict[str, Any], table: pd.DataFrame, columns: Columns, seed: int = 0
) -> tuple[pd.DataFrame | None, str]:
    """Phenotypic activity of each treatment of a table against its plate's controls, and a note.

    As ``moa-features activity`` computes it with its defaults
    (:func:`moa_features.activity.table_activity`: profiles centred on each plate's controls,
    the run's features).

    Parameters
    ----------
    run : dict
        From :func:`load_run` (its feature names are used).
    table : DataFrame
        Feature table.
    columns : Columns
        Metadata columns and controls.
    seed : int, default 0
        Seed of the permutation test.

    Returns
    -------
    activity : DataFrame or None
        One row per treatment (``treatment``, ``active``, ...); ``None`` when the table has
        no treatment column, or no or only negative controls.
    note : str
        One line: how many treatments are active, or why activity was not checked.
    """
    from moa_features.activity import table_activity

    if columns.treatment not in table.columns:
        return None, f"no treatment column {columns.treatment!r}: activity not checked (--treatment names it)"
    control = columns.controls(table)
    if not control.any() or control.all():
        return None, (
            f"{'no' if not control.any() else 'only'} negative-control rows ({columns.describe_control()}): activity "
            "not checked, only the probability threshold applies (--control names the controls)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        names = schema.metadata_columns(table.columns) + list(run["preprocess"]["feature_names"])
        act = table_activity(table[names], columns, seed=seed)[0]
    return act, f"{int(act['active'].sum())} of {len(act)} treatments active against their plate's controls"


def _reason_inactive(row: pd.Series) -> str:
    if pd.isna(row["mean_average_precision"]):
        return "activity unknown (a single well, or no controls on its plate)"
    return (
        f"not active against its plate's negative controls (mAP {row['mean_average_precision']:.2f}, "
        f"q {row['corrected_p_value']:.2g})"
    )


def _calls(proba: np.ndarray, active: pd.Series, control: np.ndarray, threshold: float) -> pd.DataFrame:
    """call/reason per row from the top probability, the treatment's activity (bool/NA) and the control mask."""
    top = proba.max(axis=1)
    call = np.full(len(top), "", dtype=object)
    reason = np.full(len(top), "", dtype=object)
    uncertain = top < threshold
    call[uncertain] = UNCERTAIN
    reason[uncertain] = [f"top probability {p:.2f} < {threshold:g} (--uncertain-below)" for p in top[uncertain]]
    inactive = active.eq(False).fillna(False).to_numpy(dtype=bool)  # NA (unknown) is not inactive
    call[inactive] = INACTIVE
    reason[inactive] = "not active against its plate's negative controls"
    call[control] = CONTROL
    reason[control] = "negative-control row (--control)"
    return pd.DataFrame({"call": call, "reason": reason})


def abstain(
    pred: pd.DataFrame,
    activity: pd.DataFrame | None,
    keys: pd.Series | None,
    control: np.ndarray,
    threshold: float = UNCERTAIN_BELOW,
) -> pd.DataFrame:
    """Add ``active``, ``call`` and ``reason`` to per-row predictions (one block of rows per model).

    ``call`` is the predicted class (``y_pred``), or ``inactive`` (the row's treatment is not
    active against its plate's controls), ``uncertain`` (top probability below ``threshold``)
    or ``negative control`` (a control row); ``reason`` says why.

    Parameters
    ----------
    pred : DataFrame
        From :func:`predict_table`: ``model``, ``y_pred``, ``proba_<class>``; n rows per model.
    activity : DataFrame, optional
        From :func:`activity_calls` (``treatment``, ``active``); ``None``: not checked.
    keys : Series, shape (n,), optional
        Treatment key of each table row (:func:`moa_features.activity.treatment_keys`).
    control : ndarray of bool, shape (n,)
        Negative-control rows of the table.
    threshold : float, default UNCERTAIN_BELOW
        Probability (0-1) below which a call is ``uncertain``.

    Returns
    -------
    DataFrame
        ``pred`` (fresh index) with ``active`` (nullable bool), ``call`` and ``reason``.
    """
    proba_cols = [c for c in pred.columns if c.startswith("proba_")]
    n_models = pred["model"].nunique()
    active = pd.Series(pd.NA, index=range(len(control)), dtype="boolean")
    if activity is not None and keys is not None:
        active = keys.reset_index(drop=True).map(activity.set_index("treatment")["active"]).astype("boolean")
    active = pd.concat([active] * n_models, ignore_index=True)
    out = pred.reset_index(drop=True)
    out["active"] = active
    calls = _calls(out[proba_cols].to_numpy(), active, np.tile(control, n_models), threshold)
    out["call"] = np.where(calls["call"] == "", out["y_pred"].astype(object), calls["call"])
    out["reason"] = calls["reason"].to_numpy()
    return out


def treatment_calls(
    pred: pd.DataFrame,
    activity: pd.DataFrame | None,
    keys: pd.Series,
    wells: pd.Series,
    control: np.ndarray,
    threshold: float = UNCERTAIN_BELOW,
) -> pd.DataFrame:
    """One row per (model, treatment): probabilities averaged site -> well -> treatment, then the call.

    Controls and rows without probabilities are left out.

    Parameters
    ----------
    pred : DataFrame
        From :func:`predict_table`; n rows per model.
    activity : DataFrame, optional
        From :func:`activity_calls`; ``None``: not checked.
    keys : Series, shape (n,)
        Treatment key of each table row.
    wells : Series, shape (n,)
        Well key of each table row.
    control : ndarray of bool, shape (n,)
        Negative-control rows.
    threshold : float, default UNCERTAIN_BELOW
        Probability (0-1) below which a call is ``uncertain``.

    Returns
    -------
    DataFrame
        Columns :data:`TREATMENT_COLUMNS` and ``proba_<class>``, sorted by model and treatment.
    """
    proba_cols = [c for c in pred.columns if c.startswith("proba_")]
    n_models = pred["model"].nunique()
    frame = pred[["model", *proba_cols]].reset_index(drop=True)
    frame["treatment"] = np.tile(keys.to_numpy(dtype=object), n_models)
    frame["well"] = np.tile(wells.to_numpy(dtype=object), n_models)
    frame = frame[~np.tile(control, n_models) & frame[proba_cols].notna().all(axis=1).to_numpy()]
    per_well = frame.groupby(["model", "treatment", "well"], sort=False)[proba_cols].mean()
    grouped = per_well.groupby(level=["model", "treatment"], sort=False)
    out = grouped.mean().reset_index()
    out["n_wells"] = grouped.size().to_numpy()
    proba = out[proba_cols].to_numpy()
    out["y_pred"] = np.asarray([c.removeprefix("proba_") for c in proba_cols], dtype=object)[proba.argmax(axis=1)]
    out["probability"] = proba.max(axis=1)
    active = pd.Series(pd.NA, index=out.index, dtype="boolean")
    if activity is not None:
        active = out["treatment"].map(activity.set_index("treatment")["active"]).astype("boolean")
        detail = out["treatment"].map(activity.set_index("treatment").apply(_reason_inactive, axis=1))
    out["active"] = active
    calls = _calls(proba, active, np.zeros(len(out), dtype=bool), threshold)
    out["call"] = np.where(calls["call"] == "", out["y_pred"], calls["call"])
    out["reason"] = np.where(calls["call"] == INACTIVE, detail if activity is not None else "", calls["reason"])
    return out[TREATMENT_COLUMNS + proba_cols].sort_values(["model", "treatment"]).reset_index(drop=True)


def _well_keys(table: pd.DataFrame, columns: Columns) -> pd.Series:
    for cols in ([schema.WELL_ID], [columns.plate, schema.WELL]):
        if set(cols) <= set(table.columns):
            return table[cols].astype(str).agg("@".join, axis=1)
    return pd.Series(np.arange(len(table)).astype(str), index=table.index)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features predict",
        description="Predict MoAs with the models of a training run. Each row (and each treatment, averaged "
        "site -> well -> treatment) gets a call: the predicted MoA, or 'inactive' (the treatment's replicate wells "
        "do not differ from their plate's negative controls, as `moa-features activity` decides), 'uncertain' "
        "(top probability below --uncertain-below) or 'negative control', with the reason in a column.",
        parents=[metadata_parent(("control", "treatment", "plate", "label"))],
        epilog="Metadata options default to the columns the run was trained with (RUN/metrics.json).",
    )
    p.add_argument("run", help="run folder written by moa-features train (models/RUN)")
    p.add_argument("table", help="feature table (.parquet, .csv, .csv.gz) with the run's feature columns")
    p.add_argument("--thumbs", help="thumbnails row-aligned with TABLE (needed by the CNN models)")
    p.add_argument(
        "-o",
        "--output",
        help="per-row predictions (.parquet, .csv or .csv.gz; default predictions/<run name>/<table name>.parquet); "
        "the per-treatment table is written beside it as OUT-treatments.<format>",
    )
    p.add_argument(
        "--models",
        help=f"comma-separated subset of {','.join(ALL_MODELS)} (default: every saved model "
        "whose inputs are available)",
    )
    p.add_argument(
        "--uncertain-below",
        type=float,
        default=UNCERTAIN_BELOW,
        metavar="P",
        help="call 'uncertain' when the top class probability is below P (default %(default)s; 0 never)",
    )
    p.add_argument(
        "--no-activity",
        action="store_true",
        help="do not call inactive treatments 'inactive' (skip the activity check against the plate's controls)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the activity permutation null (default %(default)s)")
    return p


def _columns(args: argparse.Namespace, config: dict[str, Any]) -> Columns:
    """The run's recorded columns, with the options the user gave on top."""
    given = {k: v for k, v in vars(args).items() if k in Columns.__dataclass_fields__ and v is not None}
    return Columns.from_config(config).with_(**given)


def run_predict(args: argparse.Namespace, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Load, check, predict, abstain: the work of ``moa-features predict``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by :func:`build_parser`.
    out : Path
        The output table.

    Returns
    -------
    rows : DataFrame
        Per-row predictions and calls (:func:`abstain`), rows with unusable features kept and
        marked.
    per_treatment : DataFrame
        :func:`treatment_calls` (empty without a treatment column).
    note : str
        The activity note.

    Raises
    ------
    FileNotFoundError, KeyError, ValueError, TypeError
        On unusable input; the message names the file, column or option.
    """
    if not 0 <= args.uncertain_below <= 1:
        raise ValueError(f"--uncertain-below must be a probability in [0, 1], got {args.uncertain_below}")
    models = None if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    table = read_table(args.table).reset_index(drop=True)
    run = load_run(args.run, models, images=args.thumbs is not None)
    check_config(run["config"], args.run)
    columns = _columns(args, run["config"])
    run["config"] = {**run["config"], "columns": columns.as_config()}
    names = list(run["preprocess"]["feature_names"])
    check_features(table, names, args.table)
    thumbs = None if args.thumbs is None else read_thumbs(args.thumbs, table)
    usable = finite_rows(table, names)
    if not usable.any():
        raise ValueError(f"{args.table}: every row's features are missing or infinite; nothing to predict")
    kept = table[usable].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", profiling.AlreadyNormalizedWarning)
        pred = predict_table(run, kept, None if thumbs is None else np.asarray(thumbs[usable]))
    act, note = (None, "activity not checked (--no-activity)")
    if not args.no_activity:
        act, note = activity_calls(run, kept, columns, args.seed)
    keys = None
    if columns.treatment in kept.columns:
        from moa_features.activity import treatment_keys

        keys = treatment_keys(kept, columns.treatment)
    control = columns.controls(kept)
    rows = abstain(pred, act, keys, control, args.uncertain_below)
    per_treatment = (
        treatment_calls(pred, act, keys, _well_keys(kept, columns), control, args.uncertain_below)
        if keys is not None
        else pd.DataFrame(columns=TREATMENT_COLUMNS)
    )
    return _with_unusable(rows, table, usable), per_treatment, note


def _with_unusable(rows: pd.DataFrame, table: pd.DataFrame, usable: np.ndarray) -> pd.DataFrame:
    """Per-row predictions with the rows that had no finite feature back in, as NA with their reason."""
    if usable.all():
        return rows
    meta = table.loc[~usable, schema.metadata_columns(table.columns)].reset_index(drop=True)
    blocks = [rows]
    for model in rows["model"].unique():
        block = meta.copy()
        block.insert(0, "model", model)
        block["call"], block["reason"] = NO_PREDICTION, "no finite feature value (all NaN or infinite)"
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def _summary(rows: pd.DataFrame, per_treatment: pd.DataFrame, note: str, out: Path) -> None:
    n_models = rows["model"].nunique()
    n_rows = len(rows) // max(1, n_models)
    lines = [f"{n_models} model(s), {n_rows} rows -> {out}"]
    unusable = int((rows["call"] == NO_PREDICTION).sum()) // max(1, n_models)
    if unusable:
        lines.append(f"{unusable} row(s) with no finite feature value: no prediction (call '{NO_PREDICTION}')")
    lines.append(note)
    for model, g in per_treatment.groupby("model", sort=False):
        counts = g["call"].value_counts()
        inactive, uncertain = int(counts.get(INACTIVE, 0)), int(counts.get(UNCERTAIN, 0))
        lines.append(
            f"{model}: {len(g)} treatments, {inactive} inactive, {uncertain} uncertain, "
            f"{len(g) - inactive - uncertain} with an MoA -> {treatments_path(out)}"
        )
    for line in lines:
        print(f"[predict] {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``moa-features predict``: apply a trained run to a feature table.

    Parameters
    ----------
    argv : list of str, optional
        ``RUN TABLE [-o OUT] [options]`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0: the per-row calls ``OUT`` and the per-treatment calls beside it written; 2: unusable
        input (run folder, table, thumbnails or an option), the reason on stderr.
    """
    args = build_parser().parse_args(argv)
    out = Path(args.output) if args.output else default_output(args.run, args.table)
    try:
        run_files = [Path(args.run) / n for n in ("metrics.json", "predictions.parquet", MANIFEST)]
        check_output(out, args.run, [args.table, args.thumbs, *run_files])
        rows, per_treatment, note = run_predict(args, out)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"moa-features predict: error: {message}", file=sys.stderr)
        return 2
    write_table(rows, out)
    write_table(per_treatment, treatments_path(out))
    _summary(rows, per_treatment, note, out)
    return 0


if __name__ == "__main__":
    format_warnings("predict")
    raise SystemExit(main())
