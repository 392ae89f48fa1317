"""Train and evaluate MoA models on held-out treatments or plates: ``python -m moa_features.train``.

Models come from :mod:`moa_features.models.registry` and are evaluated on the same folds:

``cnn``            the original Keras CNN on 100x100x6 thumbnails (class weights), faithful;
``xgboost``        class-weighted XGBoost on selected, plate-normalised features;
``knn``            1-nearest-neighbour (cosine, centred) on Ljosa consensus profiles;
``cnn_embedding``  a small batch-normalised CNN on per-plate normalised thumbnails; its epoch
                   budget is chosen on the inner validation split, then it is refitted on all
                   training rows for that many epochs (like XGBoost's rounds);
``ensemble``       a weighted soft vote of ``xgboost``, ``knn`` and (with thumbnails)
                   ``cnn_embedding``, weights chosen on the inner split; it falls back to the
                   best single member when no blend beats it there (``metrics.json`` says so);
``majority``       scikit-learn's ``DummyClassifier(strategy="prior")`` (reference only).

Which question (``--split``, :mod:`moa_features.models.splits`): ``nsc`` ("not same
compound") holds out whole treatments, all concentrations together: the MoA of treatments
the model has never seen, what a user of a screen asks. ``nsc-plate`` also keeps the test
treatments' plates out of training; ``nscb`` their batches. ``plate``/``experiment`` hold
out plates: the test treatments were seen on other plates, so this measures *treatment
recognition*. ``auto`` (default): ``nsc-plate`` where the layout allows, else ``nsc``, when
the table has a treatment column; ``plate`` otherwise. The inner validation split (early
stopping, CNN epochs, ensemble weights) is the first fold of the same kind of split on the
training rows, so an NSC run validates on held-out treatments too.

Scoring (:mod:`moa_features.models.evaluation`): one convention for every model, probability
averaging site -> well -> treatment; pooled held-out figures with bootstrap 95 % CIs over
treatments, treatment-level permutation p-values and expected chance from class priors.
Under a held-out-treatment split, classes with fewer than two treatments cannot be scored
(they are never in training when tested): they stay in training, are left out of scoring
with a warning and are listed in ``metrics.json``.

What each fold sees: plate normalisation is a per-plate transform (a test plate normalised by
its own controls only); feature selection, imputation, every model and the ensemble weights
are fitted on the fold's training rows only (``tests/test_leakage.py``). Finally every model
is refitted on all rows and saved for ``moa-features predict`` (:func:`save_run` writes the
run folder; ``docs/architecture.md`` "Training run" is the contract).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone

from moa_features import profiling, schema
from moa_features._optional import MissingDependencyError
from moa_features.io import OutputLockedError, package_versions, read_table, read_thumbs, write_json, write_table
from moa_features.models import evaluation, registry, splits
from moa_features.models.cnn import thumbnail_reference
from moa_features.models.ensemble import ProbabilityVote, align_proba
from moa_features.models.preprocessing import make_preprocessor
from moa_features.runs import check_run_folder, open_run

__all__ = [
    "Settings",
    "TrainingData",
    "load_training_data",
    "fit_fold",
    "fold_data",
    "predict_fold",
    "evaluate_folds",
    "compute_metrics",
    "save_run",
    "run_training",
    "main",
]

INNER_FRACTION = 0.25  # share of the training rows in the inner validation split (first of 4 folds)
DEFAULT_MODELS = ("xgboost", "ensemble", "knn")
N_PERMUTATIONS = 1000
LOO_MAX_TREATMENTS = 120  # held-out-treatment runs of table models leave one treatment out up to this size
N_BOOTSTRAP = 1000


@dataclass
class Settings:
    """Model and split settings shared by every fold (the command line's options).

    ``split``: one of :data:`moa_features.models.splits.SPLITS` (resolved, never ``auto``);
    ``n_splits``: outer folds (``None``: the splitter's default; ``0``: leave one group out);
    ``columns``: ``plate``, ``treatment``, ``experiment``, ``batch`` column names.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    seed: int = 0
    split: str = "nsc"
    n_splits: int | None = None
    columns: dict[str, str | None] = field(
        default_factory=lambda: {
            "plate": schema.PLATE,
            "treatment": schema.TREATMENT,
            "experiment": schema.EXPERIMENT,
            "batch": None,
        }
    )
    cnn_epochs: int = 100
    cnn_patience: int = 5
    cnn_batch_size: int = 32
    scheduler: str | None = None
    n_jobs: int = 1

    def build(self, name: str):
        """An unfitted estimator of registry model ``name`` with these settings."""
        return registry.get(name).build(
            seed=self.seed,
            n_jobs=self.n_jobs,
            scheduler=self.scheduler,
            cnn_epochs=self.cnn_epochs,
            cnn_patience=self.cnn_patience,
            cnn_batch_size=self.cnn_batch_size,
        )


@dataclass
class TrainingData:
    """Everything a fold needs, row-aligned: ``n`` labelled rows.

    X: (n, p) plate-normalised features; y: (n,) labels (their own type); plates: (n,) plate
    ids; treatments: (n,) treatment ids (the NSC unit; wells if there is no treatment
    column); profiles: (n,) treatment-profile keys (treatment x concentration); wells: (n,)
    well keys; thumbs: (n, S, S, C) uint8 or ``None``; thumb_reference: (n, C) per-plate
    channel reference of the embedding CNN's input in DN (``None`` without thumbnails or
    with ``normalize="none"``); meta: the rows' metadata columns.
    """

    X: np.ndarray
    y: np.ndarray
    plates: np.ndarray
    treatments: np.ndarray
    profiles: np.ndarray
    wells: np.ndarray
    meta: pd.DataFrame
    feature_names: list[str]
    thumbs: np.ndarray | None = None
    thumb_reference: np.ndarray | None = None
    inactive: list[str] = field(default_factory=list)  # treatments dropped by --active-only
    activity: pd.DataFrame | None = None  # --active-only: phenotypic activity per treatment (activity.csv)
    normalization: str = "none"  # the normalisation applied (``auto`` resolved)
    # ``pooled`` pools the control spread over plates: renormalize(train_plates) -> X with that spread pooled
    # over the training plates' controls only, so a held-out plate's wells never reach a fold's training rows.
    renormalize: Callable[[np.ndarray], np.ndarray] | None = None
    classes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.classes = np.unique(self.y)


def _log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def _keys(df: pd.DataFrame, columns: Sequence[str | None]) -> np.ndarray | None:
    """Row keys joined from ``columns`` (``None`` if any is missing)."""
    if any(c is None or c not in df.columns for c in columns):
        return None
    return df[list(columns)].astype(str).agg("@".join, axis=1).to_numpy()


def _well_keys(df: pd.DataFrame, plate: str) -> np.ndarray:
    """Well id per row: ``Metadata_well_id``, else plate@well, else the row itself."""
    for cols in ([schema.WELL_ID], [plate, schema.WELL]):
        keys = _keys(df, cols)
        if keys is not None:
            return keys
    return np.arange(len(df)).astype(str)


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


def drop_inactive(
    df: pd.DataFrame, treatment: str, plate: str, control: np.ndarray, seed: int = 0
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Keep controls and phenotypically active treatments only (``--active-only``).

    Returns the kept rows, the dropped treatments and the activity table (one row per treatment).

    Activity comes from :func:`moa_features.activity.phenotypic_activity` (copairs mAP of
    each treatment's replicates against negative controls, corrected p-value; column
    ``active``), computed on the normalised table before labels are excluded.
    """
    try:
        from moa_features.activity import phenotypic_activity
    except ImportError as err:
        raise ValueError(
            "--active-only needs moa_features.activity (phenotypic activity with copairs), "
            f"which this installation lacks: {err}"
        ) from err
    activity = phenotypic_activity(df, treatment=treatment, plate=plate, seed=seed)
    inactive = set(activity.loc[~activity["active"].astype(bool), "treatment"].astype(str))
    keys = [_keys(df, [treatment]), _keys(df, [treatment, schema.CONCENTRATION])]  # name or name@concentration
    drop = np.any([np.isin(k, list(inactive)) for k in keys if k is not None], axis=0) & ~np.asarray(
        control, dtype=bool
    )
    return df.loc[~drop], sorted(inactive), activity


def load_training_data(
    table: pd.DataFrame,
    *,
    table_path: Path = Path("<table>"),
    thumbs: np.ndarray | None = None,
    label: str = schema.MOA,
    group: str = schema.PLATE,
    treatment: str | None = schema.TREATMENT,
    normalize: str = profiling.DEFAULT_NORMALIZATION,
    exclude_labels: Sequence[str] = (),
    annotation: str | Path | None = None,
    active_only: bool = False,
    seed: int = 0,
) -> TrainingData:
    """Normalise per plate, drop unlabelled, inactive (``active_only``) and excluded rows, collect the arrays.

    ``thumbs`` (N, S, S, C) must be row-aligned with ``table``. Controls are identified by
    :func:`moa_features.profiling.is_control`; they are used for normalisation whether or not
    they are a class (``exclude_labels`` removes classes after normalisation).
    """
    df = _fill_labels(table.reset_index(drop=True), table_path, label, annotation)
    if group not in df.columns:
        raise KeyError(
            f"{table_path}: group column {group!r} not found; pass --group with one of "
            f"{schema.metadata_columns(df.columns)}"
        )
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
        raise ValueError(
            f"thumbnails have {len(thumbs)} rows but the table {table_path} has {len(df)}; "
            "they must be row-aligned (written together by extract)"
        )
    raw = df[features].to_numpy(dtype=np.float64)
    done = profiling.normalize_table(df, normalize, plate=group, label=label, treatment=treatment, features=features)
    df, control = done.table, done.control
    _log(f"normalisation: {done.method} ({done.note})")
    reference = None
    if thumbs is not None:
        reference = thumbnail_reference(thumbs, df[group].astype(str).to_numpy(), control, done.method)
    keep = df[label].notna().to_numpy().copy()
    if (~keep).any():
        _log(f"dropping {int((~keep).sum())} rows with no {label}")
    dropped: list[str] = []
    activity = None
    if active_only:
        if treatment is None or treatment not in df.columns:
            raise KeyError(f"{table_path}: --active-only needs the treatment column {treatment!r}")
        kept, dropped, activity = drop_inactive(df, treatment, group, control, seed)
        keep &= df.index.isin(kept.index)
        _log(f"--active-only: dropped {len(dropped)} inactive treatment(s)")
    excluded = df[label].astype(str).isin([str(v) for v in exclude_labels]).to_numpy()
    if excluded.any():
        _log(f"excluding {int(excluded.sum())} rows labelled {sorted(set(exclude_labels))}")
    keep &= ~excluded
    rows = np.flatnonzero(keep)
    renormalize = None
    if done.method == "pooled":
        renormalize = _pooled_renormalizer(raw, df[group].astype(str).to_numpy(), np.asarray(control, bool), rows)
    df = df.iloc[rows].reset_index(drop=True)
    y = df[label].to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"{table_path}: need at least 2 classes in {label!r} after exclusions, got {np.unique(y).tolist()}"
        )
    wells = _well_keys(df, group)
    treatments = _keys(df, [treatment])
    profiles = _keys(df, [treatment, schema.CONCENTRATION]) if schema.CONCENTRATION in df.columns else treatments
    return TrainingData(
        X=df[features].to_numpy(dtype=np.float64),
        y=y,
        plates=df[group].astype(str).to_numpy(),
        treatments=wells if treatments is None else treatments,
        profiles=wells if profiles is None else profiles,
        wells=wells,
        meta=df[schema.metadata_columns(df.columns)],
        feature_names=list(features),
        thumbs=None if thumbs is None else np.asarray(thumbs[rows]),
        thumb_reference=None if reference is None else reference[rows],
        inactive=dropped,
        activity=activity,
        normalization=done.method,
        renormalize=renormalize,
    )


def _pooled_renormalizer(
    raw: np.ndarray, plates: np.ndarray, control: np.ndarray, rows: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """``pooled`` normalisation with the pooled spread learned from the given training plates' controls.

    raw: (N, p) features of every table row before normalisation; plates, control: (N,);
    rows: the kept (labelled) rows. Each plate keeps its own control centre and spread.
    """

    def renormalize(train_plates: np.ndarray) -> np.ndarray:
        reference = control & np.isin(plates, np.unique(train_plates))
        pooled = profiling.pooled_control_spread(raw, plates, reference)
        center, spread = profiling.plate_statistics(raw, plates, control, profiling.SPREAD_SHRINKAGE, pooled)
        return ((raw - center) / spread)[rows]

    return renormalize


# ---- split --------------------------------------------------------------------------------
def resolve_split(
    split: str, data: TrainingData, columns: dict[str, str | None], n_splits: int | None, seed: int = 0
) -> str:
    """``auto`` -> ``nsc-plate`` where the layout allows (:func:`~moa_features.models.splits.nsc_plate_feasible`),
    else ``nsc``, when the table has a treatment column with at least 2 treatments; ``plate`` otherwise."""
    if split != "auto":
        return split
    treatment = columns.get("treatment")
    if treatment is None or treatment not in data.meta.columns or len(np.unique(data.treatments)) < 2:
        return "plate"
    k = None if n_splits == 0 else n_splits or splits.DEFAULT_NSC_FOLDS
    feasible = splits.nsc_plate_feasible(data.y, data.treatments, data.plates, k, random_state=seed)
    return "nsc-plate" if feasible else "nsc"


def default_folds(split: str, data: TrainingData, models: Sequence[str]) -> int | None:
    """Outer folds when ``--folds`` is not given: leave one treatment out (``0``), the field's NSC protocol,
    for held-out-treatment splits of up to :data:`LOO_MAX_TREATMENTS` treatments when only table models
    train; else ``None`` (the split's default K grouped folds), so large screens and CNN runs stay cheap."""
    cheap = data.thumbs is None or not any(
        registry.get(m).input == "thumbnails" for m in models if m in registry.MODELS
    )
    small = len(np.unique(data.treatments)) <= LOO_MAX_TREATMENTS
    return 0 if split in ("nsc", "nscb") and cheap and small else None


def outer_folds(data: TrainingData, settings: Settings) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """(train, test) folds of ``settings.split`` and the held-out unit per row (groups)."""
    splitter, units = splits.make_splitter(
        settings.split, data.meta, n_splits=settings.n_splits, random_state=settings.seed, **settings.columns
    )
    folds = list(splitter.split(data.X, data.y, units))
    if len(folds) < 2:
        raise ValueError(f"--split {settings.split} gives {len(folds)} usable fold(s); need at least 2")
    return folds, units


def _expand_models(models: Sequence[str], has_thumbs: bool) -> tuple[str, ...]:
    """Requested models plus the ensemble's members and the chance baseline, in registry order."""
    for m in models:
        registry.get(m)
    wanted = set(models)
    images = wanted & set(registry.names(input="thumbnails"))
    if images and not has_thumbs:
        raise ValueError(f"model(s) {sorted(images)} need thumbnails: pass --thumbs NAME.thumbs.npy")
    if "ensemble" in wanted:
        wanted |= {m for m in registry.ENSEMBLE_MEMBERS if has_thumbs or registry.get(m).input == "features"}
    wanted |= set(registry.names(chance=True))
    return tuple(m for m in registry.MODELS if m in wanted)


# ---- one fold -----------------------------------------------------------------------------
def fit_fold(
    data: TrainingData, train: np.ndarray, settings: Settings, units: np.ndarray
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every model of ``settings.models`` on the rows ``train`` only.

    ``units`` (n,): the outer split's held-out unit per row; early-stopping splits hold them
    out whole. Returns the fitted objects by name (``preprocess``, each model, ``ensemble``
    a :class:`~moa_features.models.ensemble.ProbabilityVote`) and the seconds each took.
    """
    models = _expand_models(settings.models, data.thumbs is not None)
    fitted: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    y, g = data.y[train], units[train]

    t = time.perf_counter()
    fitted["preprocess"] = make_preprocessor().fit(data.X[train])
    seconds["preprocess"] = time.perf_counter() - t
    Xtr = fitted["preprocess"].transform(data.X[train])
    fitters = {  # how each registry model is fitted on the fold's training rows
        "xgboost": lambda m: m.fit(Xtr, y, groups=g),
        "knn": lambda m: m.fit(Xtr, y, treatments=data.profiles[train], wells=data.wells[train]),
        "majority": lambda m: m.fit(Xtr, y),
        "cnn": lambda m: m.fit(data.thumbs[train], y, groups=g),
    }
    for name in (m for m in models if m in fitters):
        t = time.perf_counter()
        fitted[name] = fitters[name](settings.build(name))
        seconds[name] = time.perf_counter() - t
    if "cnn_embedding" in models or "ensemble" in models:
        t = time.perf_counter()
        _fit_inner(data, train, settings, fitted, with_ensemble="ensemble" in models)
        seconds["inner"] = time.perf_counter() - t
    return fitted, seconds


def _reference(data: TrainingData, rows: np.ndarray) -> np.ndarray | None:
    return None if data.thumb_reference is None else data.thumb_reference[rows]


def _fit_inner(data: TrainingData, train: np.ndarray, settings: Settings, fitted: dict, with_ensemble: bool) -> None:
    """What the inner split (first fold of the outer split's kind on ``train``) decides.

    The embedding CNN trains on the inner-training rows with early stopping on the inner
    validation rows; the best epoch count is then its budget for a refit on all of
    ``train`` (``cnn_embedding``). Ensemble weights are chosen on the inner validation rows
    from members fitted on the inner-training rows only; at test time the vote blends the
    fold's full-training members.
    """
    tr, va = splits.inner_split(
        settings.split, data.meta.iloc[train], data.y[train], INNER_FRACTION, settings.seed, **settings.columns
    )
    inner, val = train[tr], train[va]
    fitted["inner_split"] = (inner, val)
    probas: list[np.ndarray] = []
    names: list[str] = []
    if data.thumbs is not None:
        seen = val[np.isin(data.y[val], np.unique(data.y[inner]))]
        cnn = settings.build("cnn_embedding")
        ref_v = () if data.thumb_reference is None else (data.thumb_reference[seen],)
        cnn.fit(
            data.thumbs[inner],
            data.y[inner],
            reference=_reference(data, inner),
            validation_data=(data.thumbs[seen], data.y[seen]) + ref_v if len(seen) else None,
            groups=None if len(seen) else data.treatments[inner],
        )
        epochs = int(np.argmin(cnn.history_.get("val_loss", cnn.history_["loss"]))) + 1
        full = clone(cnn).set_params(epochs=epochs, validation_fraction=0)
        fitted["cnn_embedding"] = full.fit(data.thumbs[train], data.y[train], reference=_reference(data, train))
        fitted["cnn_embedding"].selected_epochs_ = epochs
        fitted["cnn_embedding"].validation_history_ = cnn.history_  # the curve that chose ``epochs``
        probas.append(
            align_proba(cnn.predict_proba(data.thumbs[val], _reference(data, val)), cnn.classes_, data.classes)
        )
        names.append("cnn_embedding")
    if not with_ensemble:
        return
    pre = make_preprocessor().fit(data.X[inner])
    Xi, Xv = pre.transform(data.X[inner]), pre.transform(data.X[val])
    xgb = settings.build("xgboost").fit(Xi, data.y[inner], groups=data.treatments[inner])
    knn = settings.build("knn").fit(Xi, data.y[inner], treatments=data.profiles[inner], wells=data.wells[inner])
    probas = [align_proba(m.predict_proba(Xv), m.classes_, data.classes) for m in (xgb, knn)] + probas
    fitted["ensemble"] = ProbabilityVote(["xgboost", "knn"] + names, data.classes).fit(probas, data.y[val])


def predict_fold(fitted: dict[str, Any], data: TrainingData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """(len(rows), k) probabilities in ``data.classes`` order for every fitted model."""
    X = fitted["preprocess"].transform(data.X[rows])
    out: dict[str, np.ndarray] = {}
    for name in registry.MODELS:
        if name not in fitted or name == "ensemble":
            continue
        m = fitted[name]
        if registry.get(name).input == "features":
            p = m.predict_proba(X)
        else:
            ref = data.thumb_reference[rows] if getattr(m, "uses_reference_", False) else None
            p = m.predict_proba(data.thumbs[rows], ref)
        out[name] = align_proba(p, m.classes_, data.classes)
    if "ensemble" in fitted:
        ens = fitted["ensemble"]
        out["ensemble"] = align_proba(ens.predict_proba([out[n] for n in ens.names]), ens.classes_, data.classes)
    return out


# ---- the fold loop ------------------------------------------------------------------------
@dataclass
class FoldResults:
    """What the fold loop collects: row predictions and per-fold records."""

    predictions: pd.DataFrame
    histories: dict[str, list]
    importance: np.ndarray
    n_selected: list[int]
    ensemble: list[dict]
    cnn_epochs: list[int]
    timings: dict[str, float]
    untrained: list = field(default_factory=list)  # classes tested in a fold whose training rows lack them


def fold_data(data: TrainingData, train: np.ndarray) -> TrainingData:
    """``data`` as a fold sees it: with ``pooled`` normalisation, the spread pooled over its training plates only."""
    return data if data.renormalize is None else replace(data, X=data.renormalize(data.plates[train]))


def evaluate_folds(data: TrainingData, folds: list, units: np.ndarray, settings: Settings) -> FoldResults:
    """Fit on each fold's training rows, predict its test rows; one row per (model, test row)."""
    preds, ensemble, epochs, n_selected, untrained = [], [], [], [], set()
    histories: dict[str, list] = {"cnn": [], "cnn_embedding": []}
    importance = np.zeros(len(data.feature_names))
    timings: dict[str, float] = {}
    full = data
    for fold, (train, test) in enumerate(folds):
        t0 = time.perf_counter()
        data = fold_data(full, train)
        fitted, seconds = fit_fold(data, train, settings, units)
        proba = predict_fold(fitted, data, test)
        untrained |= set(data.y[test].tolist()) - set(data.y[train].tolist())
        for k, v in seconds.items():
            timings[k] = timings.get(k, 0.0) + v
        support = fitted["preprocess"].named_steps["select"].support_
        n_selected.append(int(support.sum()))
        if "xgboost" in fitted:
            importance[support] += fitted["xgboost"].feature_importances_
        for name in histories:
            if name in fitted:
                histories[name].append(getattr(fitted[name], "validation_history_", fitted[name].history_))
        if "cnn_embedding" in fitted:
            epochs.append(int(fitted["cnn_embedding"].selected_epochs_))
        if "ensemble" in fitted:
            ens = fitted["ensemble"]
            ensemble.append(
                {
                    "weights": dict(zip(ens.names, (float(w) for w in ens.weights_))),
                    "fallback": ens.fallback_,
                    "validation_loss": ens.validation_loss_,
                }
            )
        keys = {"unit_key": units[test], "treatment_key": data.profiles[test], "well_key": data.wells[test]}
        for name, p in proba.items():
            frame = data.meta.iloc[test].reset_index(drop=True)
            frame.insert(0, "fold", fold)
            frame.insert(0, "model", name)
            for k, v in keys.items():
                frame[k] = v
            frame["y_true"] = data.y[test]
            frame["y_pred"] = data.classes[np.argmax(p, axis=1)]
            frame[[f"proba_{c}" for c in data.classes]] = p
            preds.append(frame)
        _log(
            f"fold {fold + 1}/{len(folds)}: {len(train)} train, {len(test)} test rows, {time.perf_counter() - t0:.1f} s"
        )
    return FoldResults(
        pd.concat(preds, ignore_index=True),
        histories,
        importance / len(folds),
        n_selected,
        ensemble,
        epochs,
        timings,
        sorted(untrained, key=str),
    )


# ---- metrics ------------------------------------------------------------------------------
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
    treatment-level permutation p-values and expected chance. ``unscored`` classes (tested
    in a fold whose training rows lack them: under a held-out-treatment split, every class
    with fewer than two treatments) are left out of scoring and listed in ``unscored_classes``.
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
    out: dict[str, Any] = {
        "models": {},
        "per_class_recall": {},
        "confusion_matrices": {},
        "unscored_classes": [str(c) for c in unscored],
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


# ---- saving ---------------------------------------------------------------------------------
def fit_final(data: TrainingData, settings: Settings, units: np.ndarray) -> dict[str, Any]:
    """Every model refitted on all rows (for ``moa-features predict``)."""
    fitted, _ = fit_fold(data, np.arange(len(data.y)), settings, units)
    return fitted


def save_run(
    output: Path, result: dict[str, Any], folds: FoldResults, data: TrainingData, final: dict[str, Any] | None
) -> None:
    """Write the run folder (the one place that writes it): metrics, predictions, histories, models."""
    output.mkdir(parents=True, exist_ok=True)
    write_table(folds.predictions, output / "predictions.parquet")
    if data.activity is not None:
        write_table(data.activity, output / "activity.csv")
    write_json({k: v for k, v in folds.histories.items() if v}, output / "history.json")
    if folds.importance.any():
        imp = pd.DataFrame({"feature": data.feature_names, "importance": folds.importance})
        write_table(imp.sort_values("importance", ascending=False), output / "feature_importance.csv")
    if final is not None:
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
    write_json(result, output / "metrics.json")


# ---- the run ------------------------------------------------------------------------------
def run_training(
    table: str | Path,
    output: str | Path,
    thumbs: str | Path | None = None,
    *,
    label: str = schema.MOA,
    group: str = schema.PLATE,
    split: str = "auto",
    folds: int | None = None,
    treatment: str = schema.TREATMENT,
    batch: str | None = None,
    experiment: str = schema.EXPERIMENT,
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

    ``models`` defaults to every model that applies (the CNNs only with ``thumbs``);
    ``folds``: outer folds (``None`` the split's default, ``0`` leave one group out).
    ``output`` is written whole (:func:`moa_features.runs.open_run`): a non-empty folder is
    refused before any work unless ``overwrite``, and is then replaced by a fresh one.
    """
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
        label=label,
        group=group,
        treatment=treatment,
        normalize=normalize,
        exclude_labels=exclude_labels,
        annotation=annotation,
        active_only=active_only,
        seed=seed,
    )
    columns = {"plate": group, "treatment": treatment, "experiment": experiment, "batch": batch}
    resolved = resolve_split(split, data, columns, folds, seed)
    folds_requested = folds
    if folds is None:
        folds = default_folds(resolved, data, tuple(models))
    settings = Settings(
        models=tuple(models),
        seed=seed,
        split=resolved,
        n_splits=folds,
        columns=columns,
        cnn_epochs=cnn_epochs,
        cnn_patience=cnn_patience,
        scheduler=scheduler,
        n_jobs=n_jobs,
    )
    expanded = _expand_models(settings.models, data.thumbs is not None)
    outer, units = outer_folds(data, settings)
    _log(
        f"{len(data.y)} rows, {len(data.feature_names)} features, {len(data.classes)} classes, {len(outer)} "
        f"{settings.split} folds ({splits.QUESTIONS[settings.split]}), models {', '.join(expanded)}"
    )
    results = evaluate_folds(data, outer, units, settings)
    result = compute_metrics(
        results.predictions, data.classes, results.untrained, n_permutations=n_permutations, seed=seed
    )
    result["classes"] = [str(c) for c in data.classes]
    if results.ensemble:
        result["ensemble"] = _ensemble_summary(results.ensemble)
    result["config"] = {
        "table": str(table_path),
        "thumbs": str(thumbs_path) if thumbs_path else None,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "split": settings.split,
        "split_requested": split,
        "question": splits.QUESTIONS[settings.split],
        "label": label,
        "group": group,
        "treatment": treatment,
        "batch": batch,
        "experiment": experiment,
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
        final = fit_final(data, settings, units)
        results.timings["final_fit"] = time.perf_counter() - t0
    result["timings"] = {k: round(v, 3) for k, v in results.timings.items()}
    with open_run(output, overwrite) as run:
        result["config"]["run_id"] = run.run_id
        save_run(run.path, result, results, data, final)
    _log(summary_table(result))
    return result


def _ensemble_summary(per_fold: list[dict]) -> dict[str, Any]:
    """Per-fold weights and fallbacks, and a sentence saying how often the ensemble fell back."""
    fell = [f["fallback"] for f in per_fold if f["fallback"]]
    note = (
        f"no blend beat the best single member on the inner validation in {len(fell)} of {len(per_fold)} "
        f"folds; there the ensemble is that member ({', '.join(sorted(set(fell)))})"
        if fell
        else "a blend beat every single member on the inner validation in every fold"
    )
    return {"folds": per_fold, "n_fallback": len(fell), "note": note}


def summary_table(result: dict[str, Any]) -> str:
    """A plain-text table of the headline figures per model (with the treatment-level p-value)."""
    cols = ["macro_recall", "well_macro_recall", "treatment_macro_recall", "treatment_accuracy"]
    lines = ["model          " + " ".join(f"{c:>24}" for c in cols) + "   p(treatment_acc)"]
    for name, m in result["models"].items():
        cells = []
        for c in cols:
            lo, hi = m.get(f"{c}_ci95", (np.nan, np.nan))
            cells.append(f"{m[c]:>8.3f} [{lo:5.3f}, {hi:5.3f}]".rjust(24) if c in m else " " * 24)
        lines.append(f"{name:<15}" + " ".join(cells) + f"   {m.get('treatment_accuracy_p', np.nan):.4f}")
    chance = next(iter(result["models"].values()))["treatment_expected_chance"]
    lines.append(
        f"expected chance (treatment level, class priors): accuracy {chance['accuracy']:.3f}, "
        f"macro recall {chance['macro_recall']:.3f}"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features train",
        description="Train and evaluate MoA models on held-out treatments (or plates), beside chance.",
    )
    p.add_argument("table", help="feature table (.parquet, .csv or .csv.gz) following the Metadata_ convention")
    p.add_argument(
        "--thumbs", help="(N, S, S, C) uint8 thumbnails row-aligned with TABLE (NAME.thumbs.npy); enables the CNNs"
    )
    p.add_argument("-o", "--output", help="run folder (default: models/<table name>)")
    p.add_argument("--label", default=schema.MOA, help="label column (default %(default)s)")
    p.add_argument(
        "--group", default=schema.PLATE, help="plate column for plate splits and normalisation (default %(default)s)"
    )
    p.add_argument(
        "--split",
        choices=("auto",) + splits.SPLITS,
        default="auto",
        help="what is held out. nsc ('not same compound'): whole treatments, all concentrations together; "
        "answers 'what is the MoA of a treatment the model has never seen?'. nsc-plate: nsc, and no "
        "training row from the test treatments' plates. nscb: nsc, and none from their batches "
        "(--batch). plate / experiment: held-out plates / experiments; the test treatments were seen "
        "in training, so this is treatment recognition, not MoA generalisation. auto (default): "
        "nsc-plate where the plate layout allows, else nsc, when TABLE has the --treatment column; "
        "plate otherwise",
    )
    p.add_argument(
        "--folds",
        default=None,
        metavar="K|loo",
        help=f"outer folds: K grouped folds or loo (leave one treatment/plate out). Default: loo for nsc/nscb "
        f"with up to {LOO_MAX_TREATMENTS} treatments and no CNN (the field's leave-one-compound-out protocol), "
        f"else {splits.DEFAULT_NSC_FOLDS} treatment-grouped folds stratified by class for nsc splits and "
        f"{splits.DEFAULT_GROUP_FOLDS} for plate/experiment",
    )
    p.add_argument(
        "--treatment",
        default=schema.TREATMENT,
        help="treatment column: the unit nsc holds out, the kNN's profiles (default %(default)s)",
    )
    p.add_argument("--batch", help="batch column for --split nscb")
    p.add_argument(
        "--experiment", default=schema.EXPERIMENT, help="experiment column for --split experiment (default %(default)s)"
    )
    p.add_argument(
        "--exclude-label",
        nargs="+",
        default=[],
        metavar="VALUE",
        help="labels removed from training and evaluation (after normalisation); default: none",
    )
    p.add_argument(
        "--active-only",
        action="store_true",
        help="train and score on phenotypically active treatments only (copairs mAP vs controls)",
    )
    p.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {','.join(registry.names(chance=False))} "
        "(default: all that apply; CNNs need --thumbs)",
    )
    p.add_argument(
        "--normalize",
        choices=profiling.NORMALIZATIONS,
        default=profiling.DEFAULT_NORMALIZATION,
        help="per-plate robust z-score: 'controls' (centre and spread of the plate's negative controls), "
        "'pooled' (plate's control centre, spread pooled over every plate's controls: well-conditioned with few "
        "controls), 'plate' (all plate rows), 'none'; 'auto' picks pooled (plate where a plate has no "
        "controls), or none for an already-normalised table (default %(default)s)",
    )
    p.add_argument(
        "--annotation", help="treatment -> MoA table (treatment_moa.csv) used when the label column is missing"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of every model and split (default %(default)s)")
    p.add_argument(
        "--cnn-epochs",
        type=int,
        default=100,
        help="upper bound of the CNN epoch search; the embedding CNN's budget is chosen on the inner "
        "validation split (default %(default)s)",
    )
    p.add_argument(
        "--cnn-patience", type=int, default=5, help="CNN early-stopping patience in epochs (default %(default)s)"
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=N_PERMUTATIONS,
        help="treatment-level label permutations for the p-values (default %(default)s)",
    )
    p.add_argument("--n-jobs", type=int, default=1, help="XGBoost threads (default %(default)s)")
    p.add_argument(
        "--scheduler", help="dask.distributed scheduler address (tcp://HOST:PORT): train XGBoost with xgboost.dask"
    )
    p.add_argument("--no-save-models", action="store_true", help="evaluate only; do not refit and save the models")
    p.add_argument("--no-report", action="store_true", help="do not build the HTML report")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder (a fresh folder is written and swapped in whole)",
    )
    return p


def _parse_folds(value: str | None) -> int | None:
    if value is None:
        return None
    if value.lower() == "loo":
        return 0
    if not value.isdigit() or int(value) < 2:
        raise ValueError(f"--folds must be an integer >= 2 or 'loo', got {value!r}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    stem = schema.sidecar_paths(args.table)["thumbs"].name.removesuffix(".thumbs.npy")
    output = args.output or str(Path("models") / stem)
    models = None if args.models is None else tuple(m.strip() for m in args.models.split(",") if m.strip())
    try:
        run_training(
            args.table,
            output,
            args.thumbs,
            label=args.label,
            group=args.group,
            split=args.split,
            folds=_parse_folds(args.folds),
            treatment=args.treatment,
            batch=args.batch,
            experiment=args.experiment,
            exclude_labels=args.exclude_label,
            models=models,
            normalize=args.normalize,
            annotation=args.annotation,
            active_only=args.active_only,
            seed=args.seed,
            cnn_epochs=args.cnn_epochs,
            cnn_patience=args.cnn_patience,
            n_permutations=args.permutations,
            scheduler=args.scheduler,
            n_jobs=args.n_jobs,
            save_models=not args.no_save_models,
            overwrite=args.overwrite,
            command="python -m moa_features.train " + " ".join(shlex.quote(a) for a in argv),
        )
    except (FileNotFoundError, KeyError, ValueError, TypeError, OutputLockedError, MissingDependencyError) as err:
        print(f"moa-features train: error: {err}", file=sys.stderr)
        return 2
    _log(f"wrote {output}/")
    return 0


if __name__ == "__main__":  # the same program as `moa-features train`: train, then the report
    from moa_features.pipeline import train_command

    raise SystemExit(train_command())
