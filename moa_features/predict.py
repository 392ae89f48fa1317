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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from moa_features import profiling, schema
from moa_features.columns import Columns
from moa_features.io import read_json, read_table, read_thumbs, write_table
from moa_features.models import registry
from moa_features.models.cnn import thumbnail_reference
from moa_features.models.ensemble import align_proba
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
    """The fitted objects of a run: ``config``, ``preprocess``, ``run_id`` and every saved (requested) model.

    ``models=None`` loads every saved model; with ``images=False`` it leaves out the CNNs and
    an ensemble that has a CNN member (for tables without thumbnails). Every file loaded must
    belong to the run (``manifest.json``: same run id, unchanged); a model the run saved but
    whose file is missing, and corrupt or truncated files, raise errors naming the file.
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
        members = list(_load_joblib(files["ensemble"], "ensemble model").names)
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
        run[name] = _load_model(files[name], name)
    return run


def predict_table(run: dict[str, Any], table: pd.DataFrame, thumbs: np.ndarray | None = None) -> pd.DataFrame:
    """Predictions of every model in ``run`` (from :func:`load_run`) for every row of ``table``."""
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
                    reference = thumbnail_reference(thumbs, df[columns.plate].astype(str).to_numpy(), control, method)
                ref = reference
            proba[name] = align_proba(run[name].predict_proba(thumbs, ref), run[name].classes_, classes)
    if "ensemble" in run:
        ens = run["ensemble"]
        members = [align_proba(proba[n], classes, ens.classes_) for n in ens.names]
        proba["ensemble"] = align_proba(ens.predict_proba(members), ens.classes_, classes)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features predict", description="Predict MoAs with the models of a training run."
    )
    p.add_argument("run", help="run folder written by moa-features train (models/RUN)")
    p.add_argument("table", help="feature table (.parquet, .csv, .csv.gz) with the run's feature columns")
    p.add_argument("--thumbs", help="thumbnails row-aligned with TABLE (needed by the CNN models)")
    p.add_argument(
        "-o", "--output", help="predictions file (.parquet or .csv; default RUN/predictions_<table>.parquet)"
    )
    p.add_argument(
        "--models",
        help=f"comma-separated subset of {','.join(ALL_MODELS)} (default: every saved model "
        "whose inputs are available)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = None if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        table = read_table(args.table)
        thumbs = None if args.thumbs is None else read_thumbs(args.thumbs, table)
        run = load_run(args.run, models, images=args.thumbs is not None)
        pred = predict_table(run, table, thumbs)
    except (FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"moa-features predict: error: {message}", file=sys.stderr)
        return 2
    stem = schema.sidecar_paths(args.table)["thumbs"].name.removesuffix(".thumbs.npy")
    out = Path(args.output) if args.output else Path(args.run) / f"predictions_{stem}.parquet"
    write_table(pred, out)
    print(
        f"[predict] {pred['model'].nunique()} model(s), {len(pred) // max(1, pred['model'].nunique())} rows -> {out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
