"""Train and evaluate MoA models on held-out plates: ``python -m moa_features.train``.

Every model is evaluated on the same folds in the same run, beside two chance baselines:

``cnn``            the original Keras CNN on 100x100x6 thumbnails (class weights), faithful;
``xgboost``        class-weighted XGBoost on selected, plate-normalised features;
``knn``            1-nearest-neighbour (cosine) on per-treatment median profiles;
``cnn_embedding``  a small batch-normalised CNN (flip/rotation augmentation) whose softmax
                   reads its 64-d penultimate embedding; its input is normalised per plate
                   (each channel divided by the plate's median control-site intensity,
                   :func:`moa_features.models.cnn.plate_reference`), the baseline's is not;
``ensemble``       a weighted soft vote of ``xgboost``, ``knn`` and (with thumbnails)
                   ``cnn_embedding``, weights chosen on an inner validation split of whole
                   training plates (see :mod:`moa_features.models.ensemble` for why);
``majority``       the most frequent training class;
``shuffled``       XGBoost trained on permuted labels (chance for this pipeline).

Labels: ``--label`` (default ``Metadata_moa``; filled from ``--annotation`` when missing); rows
without a label are dropped. Negative controls are always used for normalisation and are a
class like any other unless ``--exclude-label 'Negative control'`` removes them (the demo
excludes nothing: "looks like an untreated well" is a useful answer for a screen; the
original 3-class setting is ``--exclude-label`` of every other class).

What each fold sees: plate normalisation (robust z-score against the plate's own negative
controls; for the embedding CNN's thumbnails, division by the plate's control intensity per
channel) is a per-plate transform, so a test plate is normalised by its own controls only;
feature selection, imputation, XGBoost, kNN profiles, CNNs and ensemble weights are fitted
on the training rows of the fold only (``tests/test_leakage.py`` checks this). Finally every
model is refitted on all rows and saved for ``moa-features predict``.

Outputs in ``models/RUN/`` (``docs/architecture.md``): ``metrics.json``,
``predictions.parquet``, ``history.json``, ``feature_importance.csv``, ``preprocess.joblib``,
``xgboost.json``, ``knn.joblib``, ``ensemble.joblib``, ``cnn.keras``, ``cnn_embedding.keras``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np
import pandas as pd

from moa_features import profiling, schema
from moa_features.io import package_versions, read_table, write_json, write_table
from moa_features.models import evaluation
from moa_features.models.ensemble import SoftVoteEnsemble, align_proba
from moa_features.models.gbm import XGBoostClassifier, inner_validation_split
from moa_features.models.knn import ProfileKNNClassifier
from moa_features.models.preprocessing import make_preprocessor

TABLE_MODELS = ("xgboost", "knn", "ensemble")
IMAGE_MODELS = ("cnn", "cnn_embedding")
CHOOSABLE = ("cnn", "xgboost", "ensemble", "knn", "cnn_embedding")
BASELINES = ("majority", "shuffled")
ENSEMBLE_VALIDATION_FRACTION = 0.25


@dataclass
class Settings:
    """Model settings shared by every fold (the command line's options)."""

    models: tuple[str, ...] = ("cnn", "xgboost", "ensemble", "knn")
    seed: int = 0
    cnn_epochs: int = 20
    cnn_patience: int = 4
    cnn_batch_size: int = 32
    scheduler: str | None = None
    n_jobs: int = 1


@dataclass
class TrainingData:
    """Everything a fold needs, row-aligned: ``n`` labelled rows.

    X: (n, p) plate-normalised features; y: (n,) labels (str); groups: (n,) plate (or
    ``--group``) ids; profiles: (n,) treatment-profile keys (treatment x concentration) for
    the kNN; thumbs: (n, S, S, C) uint8 or ``None``; thumb_reference: (n, C) float32 per-plate
    channel reference of the embedding CNN's input in DN (``None`` without thumbnails or with
    ``normalize="none"``); meta: the rows' metadata columns.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    profiles: np.ndarray
    meta: pd.DataFrame
    feature_names: list[str]
    thumbs: np.ndarray | None = None
    thumb_reference: np.ndarray | None = None
    classes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.classes = np.unique(self.y)


def _log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def _profile_keys(df: pd.DataFrame, treatment: str | None) -> np.ndarray:
    """Treatment-profile key per row: ``treatment@concentration`` (rows themselves if no treatment)."""
    if treatment is None or treatment not in df.columns:
        return np.arange(len(df)).astype(str)
    key = df[treatment].astype(str)
    if schema.CONCENTRATION in df.columns:
        key = key + "@" + df[schema.CONCENTRATION].astype(str)
    return key.to_numpy()


def _fill_labels(df: pd.DataFrame, table_path: Path, label: str, annotation: str | Path | None) -> pd.DataFrame:
    """Fill a missing label column from a treatment -> MoA annotation table, or explain what is needed."""
    if label in df.columns:
        return df
    if schema.TREATMENT not in df.columns:
        raise KeyError(
            f"{table_path}: label column {label!r} is missing and there is no {schema.TREATMENT} "
            f"column to annotate from; pass --label with one of {schema.metadata_columns(df.columns)}"
        )
    if annotation is None:
        sidecar = schema.sidecar_paths(table_path)["annotation"]
        if not sidecar.exists():
            raise KeyError(
                f"{table_path}: label column {label!r} is missing; annotate the treatments first "
                f"(moa-features annotate) and pass --annotation treatment_moa.csv"
            )
        annotation = sidecar
    from moa_features.annotate import apply_annotation

    _log(f"filling {label} from the annotation {annotation}")
    out = apply_annotation(df, read_table(annotation))
    if label not in out.columns:
        raise KeyError(f"annotation {annotation} did not produce the label column {label!r}")
    return out


def load_training_data(
    table: pd.DataFrame,
    *,
    table_path: Path = Path("<table>"),
    thumbs: np.ndarray | None = None,
    label: str = schema.MOA,
    group: str = schema.PLATE,
    treatment: str | None = schema.TREATMENT,
    normalize: str = "controls",
    exclude_labels: Sequence[str] = (),
    annotation: str | Path | None = None,
) -> TrainingData:
    """Normalise per plate, drop unlabelled and excluded rows, and collect the arrays a fold needs.

    ``thumbs`` (N, S, S, C) must be row-aligned with ``table``. Controls are identified by
    :func:`moa_features.profiling.is_control` (label ``Negative control`` or a no-treatment
    name in the ``treatment`` column); they are used for normalisation whether or not they are
    a class (``exclude_labels`` removes classes after normalisation).
    """
    df = _fill_labels(table.reset_index(drop=True), table_path, label, annotation)
    if group not in df.columns:
        raise KeyError(f"{table_path}: group column {group!r} not found; pass --group with one of "
                       f"{schema.metadata_columns(df.columns)}")
    features = schema.feature_columns(df.columns)
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise TypeError(
            f"{table_path}: non-numeric feature column(s) {bad[:5]}; metadata columns must start with "
            f"{schema.METADATA_PREFIX!r}"
        )
    if not features:
        raise ValueError(f"{table_path}: no feature columns (every column starts with {schema.METADATA_PREFIX!r})")
    if thumbs is not None and len(thumbs) != len(df):
        raise ValueError(f"thumbnails have {len(thumbs)} rows but the table {table_path} has {len(df)}; "
                         "they must be row-aligned (written together by extract)")
    control = profiling.is_control(df, moa_col=label, treatment_col=treatment or schema.TREATMENT)
    df = profiling.normalize(df, normalize, plate_col=group, control=control, features=features)
    reference = None
    if thumbs is not None:
        reference = thumbnail_reference(thumbs, df[group].astype(str).to_numpy(), control, normalize)
    keep = df[label].notna().to_numpy().copy()
    if (~keep).any():
        _log(f"dropping {int((~keep).sum())} rows with no {label}")
    excluded = df[label].astype(str).isin([str(v) for v in exclude_labels]).to_numpy()
    if excluded.any():
        _log(f"excluding {int(excluded.sum())} rows labelled {sorted(set(exclude_labels))}")
    keep &= ~excluded
    rows = np.flatnonzero(keep)
    df = df.iloc[rows].reset_index(drop=True)
    y = df[label].astype(str).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(f"{table_path}: need at least 2 classes in {label!r} after exclusions, got {np.unique(y).tolist()}")
    return TrainingData(
        X=df[features].to_numpy(dtype=np.float64),
        y=y,
        groups=df[group].astype(str).to_numpy(),
        profiles=_profile_keys(df, treatment),
        meta=df[schema.metadata_columns(df.columns)],
        feature_names=list(features),
        thumbs=None if thumbs is None else np.asarray(thumbs[rows]),
        thumb_reference=None if reference is None else reference[rows],
    )


def thumbnail_reference(
    thumbs: np.ndarray, plates: np.ndarray, control: pd.Series | np.ndarray, normalize: str
) -> np.ndarray | None:
    """Per-row channel reference (N, C) of the embedding CNN's input, the analogue of ``normalize``.

    ``controls``: each plate's median control-site intensity per channel; ``plate``: the
    median over all the plate's sites; ``none``: ``None`` (input scaled to [0, 1]). Per plate,
    like :func:`moa_features.profiling.normalize`, so held-out plates leak nothing.
    """
    if normalize not in profiling.NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalize!r}; expected one of {', '.join(profiling.NORMALIZATIONS)}")
    if normalize == "none":
        return None
    from moa_features.models.cnn import plate_reference

    rows = np.asarray(control, dtype=bool) if normalize == "controls" else np.ones(len(plates), dtype=bool)
    return plate_reference(thumbs, plates, rows)


# ---- one fold -----------------------------------------------------------------------------
def _expand_models(models: Sequence[str], has_thumbs: bool) -> tuple[str, ...]:
    """Requested models plus what they need (the ensemble's members) and the baselines."""
    unknown = sorted(set(models) - set(CHOOSABLE))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(CHOOSABLE)}")
    wanted = set(models)
    if not has_thumbs and wanted & set(IMAGE_MODELS):
        raise ValueError(f"model(s) {sorted(wanted & set(IMAGE_MODELS))} need thumbnails: pass --thumbs NAME.thumbs.npy")
    if "ensemble" in wanted:
        wanted |= {"xgboost", "knn"} | ({"cnn_embedding"} if has_thumbs else set())
    order = ("cnn", "xgboost", "knn", "cnn_embedding", "ensemble") + BASELINES
    return tuple(m for m in order if m in wanted or m in BASELINES)


def _cnn(architecture: str, settings: Settings):
    from moa_features.models.cnn import CNNClassifier

    return CNNClassifier(
        architecture=architecture,
        epochs=settings.cnn_epochs,
        batch_size=settings.cnn_batch_size,
        patience=settings.cnn_patience,
        random_state=settings.seed,
    )


def _xgb(settings: Settings) -> XGBoostClassifier:
    return XGBoostClassifier(random_state=settings.seed, n_jobs=settings.n_jobs, scheduler=settings.scheduler)


def fit_fold(data: TrainingData, train: np.ndarray, settings: Settings) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every model of ``settings.models`` on the rows ``train`` only.

    Returns the fitted objects by name (``preprocess``, each model, ``ensemble`` holding the
    soft-vote weights) and the seconds each took (``ensemble`` includes the embedding CNN).
    """
    models = _expand_models(settings.models, data.thumbs is not None)
    fitted: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    y, g = data.y[train], data.groups[train]

    t0 = time.perf_counter()
    pre = make_preprocessor().fit(data.X[train])
    Xtr = pre.transform(data.X[train])
    fitted["preprocess"] = pre
    seconds["preprocess"] = time.perf_counter() - t0

    def timed(name: str, make) -> None:
        t = time.perf_counter()
        fitted[name] = make()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t

    if "xgboost" in models:
        timed("xgboost", lambda: _xgb(settings).fit(Xtr, y, groups=g))
    if "knn" in models:
        timed("knn", lambda: ProfileKNNClassifier().fit(Xtr, y, treatments=data.profiles[train]))
    timed("majority", lambda: evaluation.MajorityClassifier().fit(Xtr, y))
    shuffled_xgb = XGBoostClassifier(random_state=settings.seed, n_jobs=settings.n_jobs)
    timed("shuffled", lambda: evaluation.ShuffledLabelClassifier(shuffled_xgb, settings.seed).fit(Xtr, y, groups=g))
    if "cnn" in models:
        timed("cnn", lambda: _cnn("baseline", settings).fit(data.thumbs[train], y, groups=g))
    if "ensemble" in models or "cnn_embedding" in models:
        t = time.perf_counter()
        _fit_ensemble(data, train, settings, fitted, with_ensemble="ensemble" in models)
        seconds["ensemble"] = time.perf_counter() - t
    return fitted, seconds


def _fit_ensemble(data: TrainingData, train: np.ndarray, settings: Settings, fitted: dict, with_ensemble: bool) -> None:
    """Inner split of the training plates: members fitted on one part, weights chosen on the other.

    The embedding CNN is trained on the inner-training part (early stopping on the inner
    validation part) and is the ``cnn_embedding`` model of the fold; XGBoost and kNN copies are
    fitted on the inner-training part only to score the blend; at test time the ensemble
    blends the fold's full-training XGBoost and kNN with that CNN.
    """
    y = data.y[train]
    split = inner_validation_split(y, data.groups[train], ENSEMBLE_VALIDATION_FRACTION, settings.seed)
    if split is None:
        raise ValueError(f"the ensemble needs an inner validation split, but the fold has only {len(train)} rows")
    inner, val = train[split[0]], train[split[1]]
    classes = np.unique(y)  # the fold's classes; a class absent from `inner` gets probability 0
    probas: list[np.ndarray] = []
    names: list[str] = []
    if data.thumbs is not None:
        seen = np.isin(data.y[val], np.unique(data.y[inner]))
        ref = (lambda r: None) if data.thumb_reference is None else (lambda r: data.thumb_reference[r])
        cnn = _cnn("embedding", settings)
        if seen.any():
            v = val[seen]
            cnn.fit(data.thumbs[inner], data.y[inner], reference=ref(inner),
                    validation_data=(data.thumbs[v], data.y[v]) + ((ref(v),) if ref(v) is not None else ()))
        else:
            cnn.fit(data.thumbs[inner], data.y[inner], groups=data.groups[inner], reference=ref(inner))
        fitted["cnn_embedding"] = cnn
        probas.append(align_proba(cnn.predict_proba(data.thumbs[val], ref(val)), cnn.classes_, classes))
        names.append("cnn_embedding")
    if not with_ensemble:
        return
    pre = make_preprocessor().fit(data.X[inner])
    Xi, Xv = pre.transform(data.X[inner]), pre.transform(data.X[val])
    xgb = _xgb(settings).fit(Xi, data.y[inner], groups=data.groups[inner])
    knn = ProfileKNNClassifier().fit(Xi, data.y[inner], treatments=data.profiles[inner])
    probas = [align_proba(m.predict_proba(Xv), m.classes_, classes) for m in (xgb, knn)] + probas
    names = ["xgboost", "knn"] + names
    fitted["ensemble"] = SoftVoteEnsemble(classes=list(classes), names=names).fit(probas, data.y[val])


def predict_fold(fitted: dict[str, Any], data: TrainingData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """(len(rows), k) probabilities in ``data.classes`` order for every fitted model."""
    X = fitted["preprocess"].transform(data.X[rows])
    out: dict[str, np.ndarray] = {}
    for name in ("xgboost", "knn", "majority", "shuffled"):
        if name in fitted:
            out[name] = align_proba(fitted[name].predict_proba(X), fitted[name].classes_, data.classes)
    for name in IMAGE_MODELS:
        if name in fitted:
            m = fitted[name]
            ref = data.thumb_reference[rows] if name == "cnn_embedding" and m.uses_reference_ else None
            out[name] = align_proba(m.predict_proba(data.thumbs[rows], ref), m.classes_, data.classes)
    if "ensemble" in fitted:
        ens = fitted["ensemble"]
        members = [align_proba(out[n], data.classes, ens.classes_) for n in ens.names]
        out["ensemble"] = align_proba(ens.predict_proba(members), ens.classes_, data.classes)
    return out


# ---- metrics ------------------------------------------------------------------------------
def _well_keys(meta: pd.DataFrame, group: str) -> list[str] | None:
    if schema.WELL_ID in meta.columns:
        return [schema.WELL_ID]
    if schema.WELL in meta.columns:
        return [group, schema.WELL]
    return None


def compute_metrics(
    pred: pd.DataFrame,
    classes: Sequence[str],
    split: str,
    well_keys: list[str] | None,
    treatment_pred: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Site-, well- and treatment-level metrics of every model from the held-out predictions.

    Grouped plate/experiment splits: mean over folds and ``_std`` across folds. NSC/NSCB
    (one class per fold): metrics of the pooled held-out rows and ``_std`` from a bootstrap
    over folds (:func:`moa_features.models.evaluation.bootstrap_std`).
    """
    proba_cols = [f"proba_{c}" for c in classes]
    out: dict[str, Any] = {"models": {}, "per_class_recall": {}, "confusion_matrices": {}}
    for model, frame in pred.groupby("model", sort=False):
        levels = [("", frame)]
        if well_keys is not None:
            wells = pd.concat(
                [evaluation.aggregate_proba(f, well_keys, proba_cols, classes).assign(fold=k)
                 for k, f in frame.groupby("fold")],
                ignore_index=True,
            )
            levels.append(("well_", wells))
        metrics: dict[str, float] = {}
        for prefix, f in levels:
            if split in ("nsc", "nscb"):
                metrics.update(evaluation.classification_metrics(f["y_true"], f["y_pred"], prefix))
                metrics.update(evaluation.bootstrap_std(f["y_true"], f["y_pred"], f["fold"], prefix, seed=seed))
            else:
                per_fold = [evaluation.classification_metrics(g["y_true"], g["y_pred"], prefix)
                            for _, g in f.groupby("fold")]
                metrics.update(evaluation.summarize_folds(per_fold))
        if treatment_pred is not None:
            t = treatment_pred[treatment_pred["model"] == model]
            metrics["treatment_accuracy"] = float(np.mean(t["y_true"] == t["y_pred"]))
            metrics["n_treatments"] = int(len(t))
        metrics["n_rows"] = int(len(frame))
        out["models"][model] = metrics
        out["per_class_recall"][model] = evaluation.per_class_recall(frame["y_true"], frame["y_pred"], classes)
        out["confusion_matrices"][model] = evaluation.confusion(frame["y_true"], frame["y_pred"], classes)
    return out


def _treatment_predictions(
    fitted: dict, data: TrainingData, test: np.ndarray, proba: dict[str, np.ndarray], fold: int
) -> list[dict]:
    """One prediction per held-out treatment profile: mean probability of its rows, or for
    the kNN the 1-NN label of the treatment's median profile (the NSC protocol)."""
    keys = data.profiles[test]
    rows = []
    knn_groups = None
    if "knn" in fitted:
        knn_groups = fitted["knn"].predict_groups(fitted["preprocess"].transform(data.X[test]), keys)
    for name, p in proba.items():
        frame = pd.DataFrame(p, columns=list(data.classes))
        frame["key"], frame["y_true"] = keys, data.y[test]
        for key, f in frame.groupby("key", sort=True):
            truth = f["y_true"].value_counts().index[0]
            if name == "knn" and knn_groups is not None:
                pred = knn_groups.loc[str(key)]
            else:
                pred = data.classes[int(np.argmax(f[list(data.classes)].mean().to_numpy()))]
            rows.append({"model": name, "fold": fold, "treatment": key, "y_true": truth, "y_pred": pred})
    return rows


# ---- the run ------------------------------------------------------------------------------
def run_training(
    table: str | Path,
    output: str | Path,
    thumbs: str | Path | None = None,
    *,
    label: str = schema.MOA,
    group: str = schema.PLATE,
    split: str = "plate",
    treatment: str = schema.TREATMENT,
    batch: str | None = None,
    experiment: str = schema.EXPERIMENT,
    exclude_labels: Sequence[str] = (),
    models: Sequence[str] | None = None,
    normalize: str = "controls",
    annotation: str | Path | None = None,
    seed: int = 0,
    cnn_epochs: int = 20,
    cnn_patience: int = 4,
    scheduler: str | None = None,
    n_jobs: int = 1,
    save_models: bool = True,
    report: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Evaluate models on grouped folds, refit them on all rows, write ``output/``; return metrics.

    ``models`` defaults to every model that applies (the CNNs only with ``thumbs``).
    """
    table_path, output = Path(table).resolve(), Path(output)
    thumbs_path = Path(thumbs).resolve() if thumbs is not None else None
    if models is None:
        models = ("cnn", "xgboost", "ensemble", "knn") if thumbs_path else ("xgboost", "ensemble", "knn")
    settings = Settings(models=tuple(models), seed=seed, cnn_epochs=cnn_epochs, cnn_patience=cnn_patience,
                        scheduler=scheduler, n_jobs=n_jobs)
    df = read_table(table_path)
    thumb_arr = None
    if thumbs_path is not None:
        if not thumbs_path.exists():
            raise FileNotFoundError(f"thumbnails not found: {thumbs_path}")
        thumb_arr = np.load(thumbs_path, mmap_mode="r")
        if thumb_arr.ndim != 4 or thumb_arr.dtype != np.uint8:
            raise ValueError(f"{thumbs_path}: expected (N, S, S, C) uint8 thumbnails, got {thumb_arr.dtype} {thumb_arr.shape}")
    data = load_training_data(
        df, table_path=table_path, thumbs=thumb_arr, label=label, group=group, treatment=treatment,
        normalize=normalize, exclude_labels=exclude_labels, annotation=annotation,
    )
    _expand_models(settings.models, data.thumbs is not None)
    splits = evaluation.make_splits(data.meta, split, group, experiment, treatment, batch)
    _log(f"{len(data.y)} rows, {len(data.feature_names)} features, {len(data.classes)} classes, "
         f"{len(splits)} {split} folds, models {', '.join(_expand_models(settings.models, data.thumbs is not None))}")

    preds, treat_rows, histories = [], [], {"cnn": [], "cnn_embedding": []}
    importance = np.zeros(len(data.feature_names))
    timings: dict[str, float] = {}
    n_selected = []
    ensemble_weights: list[dict[str, float]] = []
    for fold, (train, test) in enumerate(splits):
        t0 = time.perf_counter()
        fitted, seconds = fit_fold(data, train, settings)
        proba = predict_fold(fitted, data, test)
        for k, v in seconds.items():
            timings[k] = timings.get(k, 0.0) + v
        support = fitted["preprocess"].named_steps["select"].support_
        n_selected.append(int(support.sum()))
        if "xgboost" in fitted:
            importance[support] += fitted["xgboost"].feature_importances_
        for name in histories:
            if name in fitted:
                histories[name].append(fitted[name].history_)
        for name, p in proba.items():
            frame = data.meta.iloc[test].reset_index(drop=True)
            frame.insert(0, "fold", fold)
            frame.insert(0, "model", name)
            frame["y_true"] = data.y[test]
            frame["y_pred"] = data.classes[np.argmax(p, axis=1)]
            frame[[f"proba_{c}" for c in data.classes]] = p
            preds.append(frame)
        if "ensemble" in fitted:
            ens = fitted["ensemble"]
            ensemble_weights.append(dict(zip(ens.names, (float(w) for w in ens.weights_))))
        if split in ("nsc", "nscb"):
            treat_rows += _treatment_predictions(fitted, data, test, proba, fold)
        _log(f"fold {fold + 1}/{len(splits)}: {len(train)} train, {len(test)} test rows, "
             f"{time.perf_counter() - t0:.1f} s")
    pred = pd.concat(preds, ignore_index=True)
    treatment_pred = pd.DataFrame(treat_rows) if treat_rows else None
    result = compute_metrics(pred, list(data.classes), split, _well_keys(data.meta, group), treatment_pred, seed)
    result["classes"] = list(data.classes)
    if ensemble_weights:
        result["ensemble_weights"] = ensemble_weights  # per fold: member -> soft-vote weight
    result["config"] = {
        "table": str(table_path),
        "thumbs": str(thumbs_path) if thumbs_path else None,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "split": split, "label": label, "group": group, "treatment": treatment, "batch": batch,
        "normalize": normalize, "exclude_labels": list(exclude_labels), "seed": seed,
        "models": list(_expand_models(settings.models, data.thumbs is not None)),
        "n_rows": int(len(data.y)), "n_features": len(data.feature_names),
        "n_features_selected": n_selected, "n_folds": len(splits),
        "cnn_epochs": cnn_epochs, "cnn_patience": cnn_patience, "scheduler": scheduler,
        "metric_aggregation": "pooled, bootstrap SD over folds" if split in ("nsc", "nscb") else "mean and SD over folds",
        "versions": package_versions(),
    }
    output.mkdir(parents=True, exist_ok=True)
    if save_models:
        t0 = time.perf_counter()
        _fit_and_save_final(data, settings, output)
        timings["final_fit"] = time.perf_counter() - t0
    result["timings"] = {k: round(v, 3) for k, v in timings.items()}
    write_table(pred, output / "predictions.parquet")
    if treatment_pred is not None:
        write_table(treatment_pred, output / "treatment_predictions.parquet")
    write_json({k: v for k, v in histories.items() if v}, output / "history.json")
    if importance.any():
        imp = pd.DataFrame({"feature": data.feature_names, "importance": importance / len(splits)})
        write_table(imp.sort_values("importance", ascending=False), output / "feature_importance.csv")
    write_json(result, output / "metrics.json")
    _log(summary_table(result))
    if report:
        _build_report(table_path, output)
    return result


def _fit_and_save_final(data: TrainingData, settings: Settings, output: Path) -> None:
    """Refit every model on all rows and save them for ``moa-features predict``."""
    fitted, _ = fit_fold(data, np.arange(len(data.y)), settings)
    joblib.dump(
        {"pipeline": fitted["preprocess"], "feature_names": data.feature_names, "classes": list(data.classes)},
        output / "preprocess.joblib",
    )
    if "xgboost" in fitted:
        fitted["xgboost"].save(output / "xgboost.json")
    for name in ("knn", "ensemble"):
        if name in fitted:
            joblib.dump(fitted[name], output / f"{name}.joblib")
    for name in IMAGE_MODELS:
        if name in fitted:
            fitted[name].save(output / f"{name}.keras")


def _build_report(table_path: Path, output: Path) -> None:
    try:
        from moa_features.report import build_report
    except ImportError as err:
        if err.name != "moa_features.report":
            raise
        _log("moa_features.report is not available yet; skipping the HTML report")
        return
    build_report(table_path, run_dir=output)


def summary_table(result: dict[str, Any]) -> str:
    """A plain-text table of the headline metrics per model."""
    cols = ["macro_recall", "balanced_accuracy", "macro_f1", "accuracy", "well_macro_recall", "treatment_accuracy"]
    present = [c for c in cols if any(c in m for m in result["models"].values())]
    lines = ["model          " + " ".join(f"{c:>18}" for c in present)]
    for name, m in result["models"].items():
        cells = []
        for c in present:
            v, sd = m.get(c), m.get(f"{c}_std")
            cells.append(f"{'':>18}" if v is None else f"{v:>10.3f}" + (f" ±{sd:5.3f}" if sd is not None else " " * 7))
        lines.append(f"{name:<15}" + " ".join(cells))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features train",
        description="Train and evaluate MoA models on held-out plates (or compounds), beside chance baselines.",
    )
    p.add_argument("table", help="feature table (.parquet, .csv or .csv.gz) following the Metadata_ convention")
    p.add_argument("--thumbs", help="(N, S, S, C) uint8 thumbnails row-aligned with TABLE (NAME.thumbs.npy); enables the CNNs")
    p.add_argument("-o", "--output", help="run folder (default: models/<table name>)")
    p.add_argument("--label", default=schema.MOA, help="label column (default %(default)s)")
    p.add_argument("--group", default=schema.PLATE, help="plate column for grouped splits and normalisation (default %(default)s)")
    p.add_argument("--split", choices=evaluation.SPLITS, default="plate",
                   help="plate: held-out plates; experiment: held-out experiments; nsc: leave-one-treatment-out; "
                        "nscb: nsc without the test treatment's batches (default %(default)s)")
    p.add_argument("--treatment", default=schema.TREATMENT, help="treatment column for nsc/nscb and kNN profiles (default %(default)s)")
    p.add_argument("--batch", help="batch column for --split nscb")
    p.add_argument("--experiment", default=schema.EXPERIMENT, help="experiment column for --split experiment (default %(default)s)")
    p.add_argument("--exclude-label", nargs="+", default=[], metavar="VALUE",
                   help="labels removed from training and evaluation (after normalisation); default: none")
    p.add_argument("--models", default=None,
                   help=f"comma-separated subset of {','.join(CHOOSABLE)} (default: all that apply; CNNs need --thumbs)")
    p.add_argument("--normalize", choices=profiling.NORMALIZATIONS, default="controls",
                   help="per-plate robust z-score against negative controls, all plate rows, or none (default %(default)s)")
    p.add_argument("--annotation", help="treatment -> MoA table (treatment_moa.csv) used when the label column is missing")
    p.add_argument("--seed", type=int, default=0, help="random seed of every model (default %(default)s)")
    p.add_argument("--cnn-epochs", type=int, default=20, help="maximum CNN epochs; early stopping usually ends sooner (default %(default)s)")
    p.add_argument("--cnn-patience", type=int, default=4, help="CNN early-stopping patience in epochs (default %(default)s)")
    p.add_argument("--n-jobs", type=int, default=1, help="XGBoost threads (default %(default)s)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (tcp://HOST:PORT): train XGBoost with xgboost.dask")
    p.add_argument("--no-save-models", action="store_true", help="evaluate only; do not refit and save the models")
    p.add_argument("--no-report", action="store_true", help="do not build the HTML report")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    output = args.output or str(Path("models") / schema.sidecar_paths(args.table)["thumbs"].name.removesuffix(".thumbs.npy"))
    models = None if args.models is None else tuple(m.strip() for m in args.models.split(",") if m.strip())
    try:
        run_training(
            args.table, output, args.thumbs, label=args.label, group=args.group, split=args.split,
            treatment=args.treatment, batch=args.batch, experiment=args.experiment,
            exclude_labels=args.exclude_label, models=models, normalize=args.normalize,
            annotation=args.annotation, seed=args.seed, cnn_epochs=args.cnn_epochs,
            cnn_patience=args.cnn_patience, scheduler=args.scheduler, n_jobs=args.n_jobs,
            save_models=not args.no_save_models,
            report=not args.no_report,
            command="python -m moa_features.train " + " ".join(shlex.quote(a) for a in argv),
        )
    except (FileNotFoundError, KeyError, ValueError, TypeError) as err:
        print(f"moa-features train: error: {err}", file=sys.stderr)
        return 2
    _log(f"wrote {output}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
