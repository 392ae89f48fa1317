"""Fitting one fold: every requested model on the fold's training rows, predictions for its test rows.

:func:`fit_fold` fits the preprocessing and each model of :class:`Settings` on the training rows
only; :func:`predict_fold` gives each model's probabilities for other rows; :func:`evaluate_folds`
runs the outer folds and collects :class:`FoldResults`; :func:`fit_final` refits on all rows for
``moa-features predict``. Inner validation (early stopping of XGBoost and the embedding CNN,
the ensemble's weights) uses a fold of the outer split's own kind on the training rows
(:func:`moa_features.training.folds.inner_cv`).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features.columns import resolve_n_jobs
from moa_features.models import registry, splits
from moa_features.models.ensemble import ImageMember, MoAEnsemble, align_proba
from moa_features.models.knn import ProfileKNNClassifier
from moa_features.models.preprocessing import make_preprocessor
from moa_features.training.data import TrainingData, fold_controls, fold_data
from moa_features.training.folds import inner_cv

DEFAULT_MODELS = ("xgboost", "ensemble", "knn")
ABLATION = "ensemble_no_embedding"  # the ensemble refitted without the CNN embedding, same folds and inner split
Params = dict[str, np.ndarray]  # the outer split's per-row ``split`` arguments (groups, plates, batches)


def _log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


@dataclass
class Settings:
    """Model and split settings shared by every fold (the command line's options).

    Parameters
    ----------
    models : tuple of str, default DEFAULT_MODELS
        Registry model names.
    seed : int, default 0
        Seed of every model and split.
    split : str, default "nsc"
        One of :data:`moa_features.models.splits.SPLITS` (resolved, never ``auto``).
    n_splits : int, optional
        Outer folds (``None``: the splitter's default; ``0``: leave one group out).
    cnn_epochs, cnn_patience, cnn_batch_size : int, default 100, 5 and 32
        CNN training budget, early-stopping patience (epochs) and batch size.
    scheduler : str, optional
        A ``dask.distributed`` scheduler address for XGBoost.
    n_jobs : int, default 1
        Threads of the models that take them.
    preprocess : str, default "sphere"
        The per-fold recipe (:data:`moa_features.models.preprocessing.RECIPES`).
    sphere_epsilon : float or "auto", default "auto"
        The sphering's regularisation; ``"auto"``: chosen on the inner split of each fold.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    seed: int = 0
    split: str = "nsc"
    n_splits: int | None = None
    cnn_epochs: int = 100
    cnn_patience: int = 5
    cnn_batch_size: int = 32
    scheduler: str | None = None
    n_jobs: int = 1
    preprocess: str = "sphere"
    sphere_epsilon: float | str = "auto"

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


def _accepts(method: Any, name: str) -> bool:
    return name in inspect.signature(method).parameters


def _knn_meta(model: Any, method: str, data: TrainingData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """``treatments``/``wells`` of ``rows`` for the kNN's ``method`` where it takes them (consensus profiles)."""
    m = getattr(model, method)
    meta = {"treatments": data.profiles[rows], "wells": data.wells[rows]}
    return {k: v for k, v in meta.items() if _accepts(m, k)}


def _metadata(data: TrainingData, rows: np.ndarray, params: Params, images: bool) -> dict[str, Any]:
    """The ensemble's per-row metadata for ``rows``: split arguments, treatments, wells, thumbnails."""
    meta: dict[str, Any] = {k: np.asarray(v)[rows] for k, v in params.items()}
    meta |= {"treatments": data.profiles[rows], "wells": data.wells[rows]}
    if "batches" in meta and "plates" not in meta:  # nscb: XGBoost's early stopping holds out batches
        meta["plates"] = meta["batches"]
    if images and data.thumbs is not None:
        meta["images"] = data.thumbs[rows]
        if data.thumb_reference is not None:
            meta["references"] = data.thumb_reference[rows]
    return meta


def _unwrap(member: Any) -> Any:
    """The model inside an ensemble member (the CNN of an :class:`ImageMember`)."""
    return member.estimator_ if isinstance(member, ImageMember) else member


def fit_ensemble(
    data: TrainingData, train: np.ndarray, Xtr: np.ndarray, settings: Settings, params: Params, members: Sequence[str]
) -> MoAEnsemble:
    """:class:`MoAEnsemble` of ``members`` fitted on the rows ``train`` (``Xtr`` their preprocessed features).

    Its inner split is a fold of the outer split's own kind (:func:`~moa_features.training.folds.inner_cv`)
    on these rows; the outer split's arguments, treatments, wells and thumbnails reach the members
    through metadata routing.
    """
    ens = settings.build("ensemble").set_params(members=tuple(members), cv=inner_cv(settings.split, settings.seed))
    return ens.fit(Xtr, data.y[train], **_metadata(data, train, params, "cnn_embedding" in members))


def fit_fold(
    data: TrainingData, train: np.ndarray, settings: Settings, params: Params, skip: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every model of ``settings.models`` (less ``skip``) on the rows ``train`` only.

    Early-stopping splits hold the held-out units out whole.

    Parameters
    ----------
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    train : ndarray of int
        The training rows.
    settings : Settings
        Models and their settings.
    params : dict of str to ndarray
        The outer split's per-row ``split`` arguments: ``groups`` the held-out unit per row,
        and ``plates`` / ``batches``.
    skip : sequence of str, default ()
        Models fitted elsewhere (the Keras baseline of a :class:`BaselineJob`).

    Returns
    -------
    fitted : dict of str to object
        Fitted objects by name: ``preprocess`` (and ``preprocess_choice``, how its sphering
        was chosen), each model, ``inner_split`` (the inner (train, validation) rows). With
        ``ensemble``, its members *are* the fold's ``xgboost``, ``knn`` and ``cnn_embedding``
        (one fit each), and ``ensemble_no_embedding`` is the same ensemble without the
        embedding (:meth:`MoAEnsemble.without`).
    seconds : dict of str to float
        Wall-clock seconds each took.
    """
    models = _expand_models(settings.models, data.thumbs is not None)
    fitted: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    y, g = data.y[train], params["groups"][train]

    t = time.perf_counter()
    fitted["preprocess"], fitted["preprocess_choice"] = fit_preprocessor(data, train, settings, params)
    seconds["preprocess"] = time.perf_counter() - t
    Xtr = fitted["preprocess"].transform(data.X[train])
    members = [m for m in registry.ENSEMBLE_MEMBERS if m in models]
    if "ensemble" in models or "cnn_embedding" in models:
        t = time.perf_counter()
        if "ensemble" not in models:  # the embedding alone: fitted exactly as the ensemble fits it
            members = ["cnn_embedding"]
        ens = fit_ensemble(data, train, Xtr, settings, params, members)
        for name, member in ens.members_.items():
            fitted[name] = _unwrap(member)
        if "ensemble" in models:
            fitted["ensemble"] = ens
            if "cnn_embedding" in ens.members_:
                fitted[ABLATION] = ens.without(["cnn_embedding"])
        if ens.inner_split_ is not None:
            fitted["inner_split"] = tuple(train[rows] for rows in ens.inner_split_)
        if "cnn_embedding" in fitted:
            history = fitted["cnn_embedding"].history_
            fitted["cnn_embedding"].selected_epochs_ = int(np.argmin(history.get("val_loss", history["loss"]))) + 1
        seconds["ensemble"] = time.perf_counter() - t
    fitters = {  # how the models outside the ensemble are fitted on the fold's training rows
        "xgboost": lambda m: m.fit(Xtr, y, groups=g, plates=_metadata(data, train, params, False).get("plates")),
        "knn": lambda m: m.fit(Xtr, y, **_knn_meta(m, "fit", data, train)),
        "majority": lambda m: m.fit(Xtr, y),
        "cnn": lambda m: m.fit(data.thumbs[train], y, groups=g),
    }
    for name in (m for m in models if m in fitters and m not in fitted and m not in skip):
        t = time.perf_counter()
        fitted[name] = fitters[name](settings.build(name))
        seconds[name] = time.perf_counter() - t
    return fitted, seconds


EPSILONS = (0.1, 0.01, 1.0)  # sphering regularisation tried on the inner split (ties keep the earlier one)


def _preprocessor(data: TrainingData, rows: np.ndarray, recipe: str, epsilon: float):
    """The recipe fitted on ``rows`` and the controls of their plates."""
    pre = make_preprocessor(recipe, epsilon)
    if recipe == "select":
        return pre.fit(data.X[rows])
    return pre.fit(data.X[rows], controls=fold_controls(data, data.plates[rows]))


def _inner_knn_accuracy(data: TrainingData, inner: np.ndarray, val: np.ndarray, pre) -> float:
    """Treatment accuracy of the consensus kNN on ``val`` treatments whose class is in ``inner``."""
    seen = val[np.isin(data.y[val], np.unique(data.y[inner]))]
    if not len(seen):
        return float("nan")
    knn = ProfileKNNClassifier().fit(
        pre.transform(data.X[inner]), data.y[inner], treatments=data.profiles[inner], wells=data.wells[inner]
    )
    pred = knn.predict(pre.transform(data.X[seen]), treatments=data.profiles[seen], wells=data.wells[seen])
    per = pd.DataFrame({"t": data.profiles[seen], "ok": pred == data.y[seen]}).groupby("t")["ok"].first()
    return float(per.mean())


def fit_preprocessor(data: TrainingData, train: np.ndarray, settings: Settings, params: Params) -> tuple[Any, dict]:
    """The fold's preprocessing (``settings.preprocess``) fitted on ``train`` and its plates' controls.

    With ``sphere`` and ``sphere_epsilon="auto"``, the sphering's ``epsilon`` is the one of
    :data:`EPSILONS` whose consensus kNN scores best on the inner split of the outer split's kind
    (:func:`inner_fold`; treatment accuracy of the inner-validation treatments), the preprocessing
    fitted on the inner-training rows and their plates' controls only. Returns the fitted
    preprocessor and a record ``{"epsilon", "inner_scores"}`` of the choice.
    """
    recipe, eps = settings.preprocess, settings.sphere_epsilon
    choice: dict = {"recipe": recipe}
    if recipe == "sphere" and eps == "auto":
        scores = {}
        try:
            tr, va = inner_fold(data, train, settings, params)
        except ValueError:
            tr = va = None
        if tr is not None and data.controls is not None:
            inner, val = train[tr], train[va]
            for e in EPSILONS:
                scores[e] = _inner_knn_accuracy(data, inner, val, _preprocessor(data, inner, recipe, e))
        finite = {e: v for e, v in scores.items() if np.isfinite(v)}
        eps = max(finite, key=lambda e: (finite[e], -EPSILONS.index(e))) if finite else EPSILONS[0]
        choice["inner_scores"] = {str(e): round(v, 4) for e, v in scores.items()}
    pre = _preprocessor(data, train, recipe, float(eps) if recipe == "sphere" else 0.0)
    choice["epsilon"] = float(eps) if recipe == "sphere" else None
    choice["sphered"] = bool(getattr(pre, "sphered_", False))
    return pre, choice


def inner_fold(data: TrainingData, train: np.ndarray, settings: Settings, params: Params) -> splits.Split:
    """Inner (train, validation) rows, as indices into ``train``: a fold of the outer split's own kind
    (:func:`~moa_features.training.folds.inner_cv`), NSC when no ``nsc-plate`` fold keeps training rows."""
    sub = {k: np.asarray(v)[train] for k, v in params.items()}
    for kind in (settings.split, "nsc") if settings.split == "nsc-plate" else (settings.split,):
        fold = splits.first_fold(inner_cv(kind, settings.seed), None, data.y[train], **sub)
        if fold is not None:
            return fold
    raise ValueError(f"no inner {settings.split} validation split possible on {len(train)} training rows")


def predict_fold(fitted: dict[str, Any], data: TrainingData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Class probabilities of every fitted model for some rows.

    Parameters
    ----------
    fitted : dict of str to object
        From :func:`fit_fold`.
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    rows : ndarray of int
        The rows to predict.

    Returns
    -------
    dict of str to ndarray, each shape (len(rows), k)
        Probabilities in ``data.classes`` order, by model name.
    """
    X = fitted["preprocess"].transform(data.X[rows])
    out: dict[str, np.ndarray] = {}
    for name in (*registry.MODELS, ABLATION):
        if name not in fitted:
            continue
        m = fitted[name]
        if isinstance(m, MoAEnsemble):
            p = m.predict_proba(X, **_metadata(data, rows, {}, "cnn_embedding" in m.members_))
        elif registry.get(name).input == "features":
            p = m.predict_proba(X, **_knn_meta(m, "predict_proba", data, rows))
        else:
            ref = data.thumb_reference[rows] if getattr(m, "uses_reference_", False) else None
            p = m.predict_proba(data.thumbs[rows], ref)
        out[name] = align_proba(p, m.classes_, data.classes)
    return out


def fold_record(ens: MoAEnsemble, ablation: MoAEnsemble | None) -> dict[str, Any]:
    """What ``metrics.json`` keeps of one fold's ensemble (``ensemble`` -> ``folds``)."""
    record = {
        "weights": dict(ens.weights_),
        "temperatures": {name: float(value) for name, value in ens.temperatures_.items()},
        "fallback": ens.fallback_,
        "validation_loss": ens.validation_loss_,
        "n_inner_validation_rows": None if ens.inner_split_ is None else len(ens.inner_split_[1]),
        "dropped": dict(ens.dropped_),
        "notes": dict(ens.notes_),
    }
    if ablation is not None:
        record[f"{ABLATION}_weights"] = dict(ablation.weights_)
    return record


def embedding_note(models: dict[str, dict[str, Any]], per_fold: list[dict]) -> str:
    """A sentence saying what the CNN embedding adds to the ensemble on these folds, in words.

    ``models``: metrics.json's ``models``; compares the ensemble with ``ensemble_no_embedding``
    (same folds, same members, same inner split) at the treatment level.
    """
    key = "treatment_macro_recall"
    if "ensemble" not in models:
        return "no ensemble was trained; nothing to compare"
    if ABLATION not in models:
        reason = next((f["dropped"].get("cnn_embedding") for f in per_fold if f.get("dropped")), None)
        return f"the CNN embedding was not a member ({reason or 'not requested'}); nothing to compare"
    with_, without = models["ensemble"].get(key, np.nan), models[ABLATION].get(key, np.nan)
    alone = models.get("cnn_embedding", {}).get(key, np.nan)
    weights = [f["weights"].get("cnn_embedding", 0.0) for f in per_fold]
    diff = with_ - without
    facts = (
        f"treatment macro recall {with_:.3f} with the CNN embedding, {without:.3f} without it, {alone:.3f} for "
        f"the embedding alone; its weight averaged {np.mean(weights):.2f} over {len(weights)} folds "
        f"(0 in {sum(w == 0 for w in weights)})"
    )
    if not diff > 0.005:
        return f"the CNN embedding adds nothing on these held-out treatments: {facts}"
    return f"the CNN embedding adds {diff:+.3f} treatment macro recall (one run, not tested for significance): {facts}"


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
    preprocessing: list = field(default_factory=list)  # per fold: recipe, sphering epsilon and how it was chosen


def evaluate_folds(
    data: TrainingData, folds: list, params: Params, settings: Settings, background: SecondProcess | None = None
) -> FoldResults:
    """Fit on each fold's training rows, predict its test rows.

    Parameters
    ----------
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    folds : list of tuple of ndarray
        ``(train, test)`` row indices (:func:`outer_folds`).
    params : dict of str to ndarray
        The outer split's per-row ``split`` arguments.
    settings : Settings
        Models and their settings.
    background : SecondProcess, optional
        Fits the Keras baseline of these folds in another process meanwhile; its predictions
        join the others' (same rows, same order as when fitted here).

    Returns
    -------
    FoldResults
        One prediction row per (model, test row), with per-fold histories, feature
        importances, selections, ensemble weights, CNN epochs, timings and each fold's
        preprocessing choice.
    """
    ensemble, epochs, n_selected, untrained, choices, probas = [], [], [], set(), [], []
    histories: dict[str, list] = {"cnn": [], "cnn_embedding": []}
    importance = np.zeros(len(data.feature_names))
    timings: dict[str, float] = {}
    skip = background.models if background is not None else ()
    full = data
    for fold, (train, test) in enumerate(folds):
        t0 = time.perf_counter()
        data = fold_data(full, train)
        fitted, seconds = fit_fold(data, train, settings, params, skip)
        probas.append(predict_fold(fitted, data, test))
        untrained |= set(data.y[test].tolist()) - set(data.y[train].tolist())
        for k, v in seconds.items():
            timings[k] = timings.get(k, 0.0) + v
        support = fitted["preprocess"].named_steps["select"].support_
        n_selected.append(int(support.sum()))
        choices.append(fitted["preprocess_choice"])
        if "xgboost" in fitted:
            importance[support] += fitted["xgboost"].feature_importances_
        for name in histories:
            if name in fitted:
                histories[name].append(fitted[name].history_)
        if "cnn_embedding" in fitted:
            epochs.append(int(fitted["cnn_embedding"].selected_epochs_))
        if "ensemble" in fitted:
            ensemble.append(fold_record(fitted["ensemble"], fitted.get(ABLATION)))
        _log(
            f"fold {fold + 1}/{len(folds)}: {len(train)} train, {len(test)} test rows, {time.perf_counter() - t0:.1f} s"
        )
    if background is not None and background.models:
        for proba, done in zip(probas, background.folds()):
            for name, (p, history, seconds) in done.items():
                proba[name] = p
                histories[name].append(history)
                timings[name] = timings.get(name, 0.0) + seconds
    preds = []
    for fold, ((_, test), proba) in enumerate(zip(folds, probas)):
        keys = {"unit_key": params["groups"][test], "treatment_key": full.profiles[test], "well_key": full.wells[test]}
        for name in (n for n in (*registry.MODELS, ABLATION) if n in proba):  # registry order, wherever fitted
            p = proba[name]
            frame = full.meta.iloc[test].reset_index(drop=True)
            frame.insert(0, "fold", fold)
            frame.insert(0, "model", name)
            for k, v in keys.items():
                frame[k] = v
            frame["y_true"] = full.y[test]
            frame["y_pred"] = full.classes[np.argmax(p, axis=1)]
            frame[[f"proba_{c}" for c in full.classes]] = p
            preds.append(frame)
    return FoldResults(
        pd.concat(preds, ignore_index=True),
        histories,
        importance / len(folds),
        n_selected,
        ensemble,
        epochs,
        timings,
        sorted(untrained, key=str),
        choices,
    )


def _second_process(
    data: TrainingData, folds: list, params: Params, settings: Settings, baseline: bool, final: str | None
) -> tuple[list[dict[str, tuple]], float | None]:
    """The work of a :class:`SecondProcess`, run in that process.

    With ``baseline``, the Keras baseline fitted on each fold's training rows exactly as :func:`fit_fold`
    fits it (``groups`` for its early stopping) and its test-row probabilities in ``data.classes``
    order; with ``final`` (a folder), every model refitted on all rows (:func:`fit_final`) and written
    there (:func:`~moa_features.training.writing.save_models`: files, so no Keras object is unpickled
    by the parent). Returns the per-fold results and the final refit's wall seconds.
    """
    from moa_features.training.writing import save_models

    out = []
    groups = np.asarray(params["groups"])
    for train, test in folds if baseline else ():
        t = time.perf_counter()
        model = settings.build("cnn").fit(data.thumbs[train], data.y[train], groups=groups[train])
        seconds = time.perf_counter() - t
        proba = align_proba(model.predict_proba(data.thumbs[test]), model.classes_, data.classes)
        out.append({"cnn": (proba, model.history_, seconds)})
    if final is None:
        return out, None
    t = time.perf_counter()
    save_models(Path(final), fit_final(data, settings, params), data)
    return out, time.perf_counter() - t


class SecondProcess:
    """Work fitted in a second process while this one fits the outer folds: the Keras baseline (``cnn``)
    of every outer fold, and the final refit of every model on all rows.

    Neither shares anything with the folds' other models: the baseline has its own input (thumbnails),
    no preprocessing and no ensemble; the final refit depends on no fold. Fitted beside them, they
    change no figure and no saved model (the same seeds give the same networks and trees).
    :func:`evaluate_folds` collects the baseline's predictions (:meth:`folds`), ``train`` the saved
    final models (:meth:`final`); an error in the second process is raised there.

    Parameters
    ----------
    data : TrainingData
        The labelled rows.
    folds : list of tuple of ndarray
        The outer ``(train, test)`` rows.
    params : dict of str to ndarray
        The outer split's per-row arguments (``groups`` hold the units out in early stopping).
    settings : Settings
        Model settings (the second process's models use one thread).
    final : bool
        Also refit every model on all rows (for ``moa-features predict``).
    """

    def __init__(self, data: TrainingData, folds: list, params: Params, settings: Settings, final: bool) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.models = ("cnn",) if self.fits_baseline(settings, data) else ()
        # spawn: a fresh interpreter (never a fork of a process that may hold JAX's threads)
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._folder = Path(tempfile.mkdtemp(prefix="moa-features-final-"))
        self._final = final
        self._future = self._pool.submit(
            _second_process, dataclasses.replace(data, renormalize=None), folds, params,
            dataclasses.replace(settings, n_jobs=1), bool(self.models), str(self._folder) if final else None,
        )  # fmt: skip

    @staticmethod
    def cores(settings: Settings) -> int:
        """The cores ``settings.n_jobs`` allows on this machine (``-1``: all)."""
        return min(resolve_n_jobs(settings.n_jobs), os.cpu_count() or 1)

    @staticmethod
    def fits_baseline(settings: Settings, data: TrainingData) -> bool:
        return data.thumbs is not None and "cnn" in _expand_models(settings.models, True)

    @classmethod
    def wanted(cls, settings: Settings, data: TrainingData, final: bool) -> bool:
        """Whether a run uses a second process: ``settings.n_jobs`` allows 2 or more cores (``-1``: all)
        on a machine that has them, there is work for it (the baseline, or the final refit) and no
        Dask scheduler (which the final refit's XGBoost would use). The folds' models then get the
        cores left (:meth:`rest`), so the two processes never ask for more cores than allowed."""
        work = final or cls.fits_baseline(settings, data)
        return work and settings.scheduler is None and cls.cores(settings) >= 2

    @classmethod
    def rest(cls, settings: Settings) -> Settings:
        """``settings`` for the folds' models: ``n_jobs`` less the second process's core."""
        return dataclasses.replace(settings, n_jobs=cls.cores(settings) - 1)

    def _result(self) -> tuple[list[dict[str, tuple]], float | None]:
        try:
            return self._future.result()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the second process (at once if it is still fitting: after an error here) and remove its files."""
        if not self._future.done():
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._folder, ignore_errors=True)

    def folds(self) -> list[dict[str, tuple]]:
        """Per fold, ``{"cnn": (probabilities (n_test, k), history, seconds)}`` (waits for the process)."""
        return self._result()[0]

    def final(self) -> tuple[Path | None, float | None]:
        """The folder holding the final models (:func:`~moa_features.training.writing.save_models`) and the
        refit's wall seconds; ``(None, None)`` without ``final``. Valid until :meth:`close`."""
        seconds = self._result()[1]
        return (self._folder, seconds) if self._final else (None, None)


def fit_final(data: TrainingData, settings: Settings, params: Params) -> dict[str, Any]:
    """Every model refitted on all rows (for ``moa-features predict``).

    Parameters
    ----------
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    settings : Settings
        Models and their settings.
    params : dict of str to ndarray
        The split's per-row arguments (early stopping holds their units out whole).

    Returns
    -------
    dict of str to object
        Fitted objects by name, as :func:`fit_fold`.
    """
    fitted, _ = fit_fold(data, np.arange(len(data.y)), settings, params)
    return fitted
