"""The one MoA ensemble: a weighted soft vote of XGBoost, the consensus kNN and the CNN embedding.

:class:`MoAEnsemble` is a scikit-learn meta-estimator. Its members are estimators of the feature
table ``X`` (n, p); per-row metadata (``groups``, ``treatments``, ``wells``, ``plates``,
``batches``, ``images``, ``references``) reach each member through scikit-learn's metadata routing
(:mod:`sklearn.utils.metadata_routing`): XGBoost asks for ``groups`` (and ``plates`` where its
``fit`` takes them), the kNN for ``treatments`` and ``wells``, the CNN embedding
(:class:`ImageMember`, a thumbnail classifier whose rows are ``X``'s rows) for ``images`` and
``references``. The ensemble enables routing inside its own calls, so it works whether or not
the caller has switched routing on.

Why a weighted soft vote and not stacking: stacking needs out-of-fold predictions of every
member inside every training fold (an inner cross-validation of the CNN per outer fold), which
costs k times the CNN training and, with the few plates of a typical screen, leaves a
meta-learner only a few hundred rows of highly correlated probabilities to fit. A soft vote has
only ``M - 1`` free weights (and one temperature per member), chosen by a grid over the simplex
on one inner validation split.

The inner split mirrors the outer one: with ``cv`` (a splitter, e.g. ``NSCPlateSplit(4)``) it is
the fold of that splitter on the training rows that keeps the most classes in its training part
(:func:`moa_features.models.splits.first_fold`), so a run that holds out treatments and plates
chooses its weights on held-out treatments and plates; without ``cv``, whole ``groups`` are held
out (:func:`moa_features.models.splits.validation_split`). Members are fitted on the inner
training rows and predict the validation rows. There each member is first *calibrated*: one
temperature per member (:func:`fit_temperature`, minimising its class-balanced log-loss), so that
a sharp member (the 1-NN's near one-hot votes) and a flat one (a regularised XGBoost) enter the
blend on one scale. The weights are then the most even blend whose class-balanced log-loss (a
proper score, smoother than recall) is within one standard error of the best blend's, the
standard error taken over the held-out treatments (:func:`choose_weights`; the grid's corners
are the single members, so a member far worse than the rest gets little or no weight and the
ensemble may *fall back* to one member, ``fallback_``). Why not the loss minimum: one inner
split holds a few dozen treatments, and the inner members see fewer treatments than the final
ones (XGBoost, which gains most from more treatments, is underrated there), so the minimum
chases noise; on BBBC021 the minimum-loss weights left the ensemble below XGBoost
(``benchmarks/README.md``).
Table members are then refitted on all rows; a member with ``fit_once = True`` (the CNN
embedding) is trained once, on the inner training rows with early stopping on the validation
rows, and that network is the final member: the embedding costs one training per fit.

Members whose metadata are absent are dropped with a reason (``dropped_``): no ``images`` -> no
CNN embedding; without ``treatments`` the kNN compares rows instead of consensus profiles
(``notes_``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import joblib
import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from moa_features.models import specs
from moa_features.models.splits import first_fold, validation_split

_EPS = 1e-7
_TOL = 1e-9
DEFAULT_MEMBERS = specs.ENSEMBLE_MEMBERS
METADATA = ("groups", "treatments", "wells", "plates", "batches", "images", "references")
# metadata without which a member cannot be fitted at all (dropped), or fits a lesser variant (noted)
REQUIRES = {"cnn_embedding": "images"}
PREFERS = {"knn": ("treatments", "without treatments the kNN compares single rows, not consensus profiles")}


def align_proba(proba: np.ndarray, classes: Sequence, to: Sequence) -> np.ndarray:
    """Reorder (n, k) probabilities from ``classes`` order to ``to`` order (0 for absent classes)."""
    proba = np.asarray(proba, dtype=np.float64)
    index = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    out = np.zeros((len(proba), len(to)))
    for j, c in enumerate(np.asarray(to).tolist()):
        if c in index:
            out[:, j] = proba[:, index[c]]
    return out


def simplex_grid(n_members: int, step: float) -> np.ndarray:
    """All weight vectors (m,) with entries in multiples of ``step`` summing to 1: (g, m)."""
    n = int(round(1 / step))
    if not np.isclose(n * step, 1.0):
        raise ValueError(f"weight_step must divide 1 evenly, got {step}")
    rows = [w for w in product(range(n + 1), repeat=n_members - 1) if sum(w) <= n]
    return np.array([list(w) + [n - sum(w)] for w in rows], dtype=float) / n


def balanced_log_loss(y_index: np.ndarray, proba: np.ndarray) -> float:
    """Class-balanced mean negative log-probability of the true class (natural log)."""
    p = np.clip(proba[np.arange(len(y_index)), y_index], _EPS, 1.0)
    w = compute_sample_weight("balanced", y_index)
    return float(np.sum(w * -np.log(p)) / np.sum(w))


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (n, k) re-tempered: ``p ** (1 / temperature)`` renormalised per row.

    For a softmax output this divides the logits by ``temperature``: above 1 it flattens a
    too-sharp member, below 1 it sharpens a too-flat one; 1 leaves ``proba`` as it is. Zero
    probabilities (classes a member never saw) stay zero; the argmax never changes.

    Parameters
    ----------
    proba : (n, k) array
        Probabilities, rows summing to 1.
    temperature : float
        Positive temperature.

    Returns
    -------
    (n, k) array
        The re-tempered probabilities.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if temperature == 1.0:
        return proba
    with np.errstate(divide="ignore"):
        logp = np.log(proba) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, y_index: np.ndarray, bounds: tuple[float, float] = (0.1, 50.0)) -> float:
    """The temperature (within ``bounds``) minimising the balanced log-loss of :func:`temper` ``(proba, T)``.

    Temperature scaling (Guo et al. 2017) fitted on validation rows: one parameter per member, so
    a member's sharpness (a 1-NN's near one-hot votes) no longer decides its weight in a blend.
    The loss is convex in ``1 / T``; the search is bounded on ``log T``.

    Parameters
    ----------
    proba : (n, k) array
        A member's validation probabilities.
    y_index : (n,) int array
        The validation rows' true class, as column indices.
    bounds : (float, float)
        Smallest and largest temperature.

    Returns
    -------
    float
        The temperature (1.0 when the rows cannot tell, e.g. a single row class).
    """
    if len(np.unique(y_index)) < 2:
        return 1.0
    res = minimize_scalar(
        lambda t: balanced_log_loss(y_index, temper(proba, float(np.exp(t)))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return float(np.exp(res.x))


def unit_losses(y_index: np.ndarray, proba: np.ndarray, units: np.ndarray | None = None) -> np.ndarray:
    """Each unit's share of the class-balanced log-loss: (u,) values whose mean is :func:`balanced_log_loss`.

    Parameters
    ----------
    y_index : (n,) int array
        True class of each row, as column indices.
    proba : (n, k) array
        Probabilities.
    units : (n,) array or None
        The independent unit of each row (its held-out treatment); ``None``: each row is a unit.

    Returns
    -------
    (u,) array
        One value per unit (sorted as strings); their spread gives the loss's standard error.
    """
    p = np.clip(proba[np.arange(len(y_index)), y_index], _EPS, 1.0)
    w = compute_sample_weight("balanced", y_index)
    if units is None:
        return len(w) * w * -np.log(p) / np.sum(w)
    _, inverse = np.unique(np.asarray(units).astype(str), return_inverse=True)
    per = np.bincount(inverse, weights=w * -np.log(p))
    return len(per) * per / np.sum(w)


def _blend(probas: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, probas))


def choose_weights(
    probas: Sequence[np.ndarray], y_index: np.ndarray, step: float, units: np.ndarray | None = None
) -> tuple[np.ndarray, float, int | None]:
    """Simplex weights: the most even blend whose balanced log-loss is within one standard error of the best.

    Every blend of the grid (single members included, as its corners) is scored by the
    class-balanced log-loss on the validation rows; its standard error is that of the mean of
    the per-unit losses (:func:`unit_losses`, units = held-out treatments). Among the blends no
    worse than the best by more than one standard error of the best (Breiman's one-standard-error
    rule), the one closest to equal weights is kept (ties: the lower loss). A few dozen validation
    treatments cannot tell 0.6/0.4 from 0.5/0.5; an even blend is the choice that varies least
    with them, and a member far worse than the others still gets a small or zero weight.

    Parameters
    ----------
    probas : list of M (n, k) arrays
        Each member's validation probabilities, columns in one class order.
    y_index : (n,) int array
        The validation rows' true class, as column indices.
    step : float
        Grid step of the weights (must divide 1).
    units : (n,) array or None
        The independent unit of each row (its treatment); ``None``: the rows.

    Returns
    -------
    weights : (M,) array summing to 1
    loss : float
        The chosen blend's balanced log-loss.
    fallback : int or None
        Index of the single member the weights select alone, else ``None``.
    """
    m = len(probas)
    if m == 1:
        return np.ones(1), balanced_log_loss(y_index, probas[0]), 0
    grid = simplex_grid(m, step)
    per_unit = np.array([unit_losses(y_index, _blend(probas, w), units) for w in grid])
    losses = per_unit.mean(axis=1)
    best = int(np.argmin(losses))
    se = per_unit[best].std(ddof=1) / np.sqrt(per_unit.shape[1]) if per_unit.shape[1] > 1 else 0.0
    ok = np.flatnonzero(losses <= losses[best] + se + _TOL)
    spread = np.abs(grid[ok] - 1 / m).sum(axis=1)
    choice = ok[np.lexsort((losses[ok], np.round(spread, 9)))[0]]
    corner = np.flatnonzero(np.isclose(grid[choice], 1.0))
    return grid[choice], float(losses[choice]), (int(corner[0]) if len(corner) else None)


def _rows(params: Mapping[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {k: v[rows] for k, v in params.items()}


def _request(est: BaseEstimator, method: str) -> None:
    """Request every :data:`METADATA` name that ``est.<method>`` takes (routing must be enabled)."""
    params = inspect.signature(getattr(est, method)).parameters
    wanted = {k: True for k in METADATA if k in params}
    if wanted:
        getattr(est, f"set_{method}_request")(**wanted)


class ImageMember(ClassifierMixin, BaseEstimator):
    """A thumbnail classifier as an ensemble member: ``X`` only says which rows, the images are metadata.

    Parameters
    ----------
    estimator : CNNClassifier or None
        The thumbnail model (default ``CNNClassifier(architecture="embedding")``).

    ``fit(X, y, images=(n, S, S, C) uint8, references=(n, C) or None, groups=None, validation=None)``:
    ``validation=(X_val, y_val, {"images": ..., "references": ...})`` gives the early-stopping rows
    (those whose label is not among ``y`` are left out); without it the CNN holds out
    ``groups`` itself. ``fit_once = True`` tells :class:`MoAEnsemble` to keep the network trained
    on its inner split instead of training it again on all rows.
    """

    fit_once = True

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X, y, images=None, references=None, groups=None, validation=None) -> ImageMember:
        if images is None:
            raise ValueError("ImageMember needs images= (n, S, S, C) uint8 thumbnails, one per row of X")
        if len(images) != len(X):
            raise ValueError(f"images has {len(images)} rows, X has {len(X)}")
        if self.estimator is None:
            from moa_features.models.cnn import CNNClassifier

            est = CNNClassifier(architecture="embedding")
        else:
            est = clone(self.estimator)
        y = np.asarray(y)
        kw: dict[str, Any] = {"reference": references}
        if validation is not None:
            _, yv, meta = validation
            yv = np.asarray(yv)
            seen = np.flatnonzero(np.isin(yv, np.unique(y)))
            if len(seen):
                ref = meta.get("references")
                kw["validation_data"] = (meta["images"][seen], yv[seen]) + (() if ref is None else (ref[seen],))
        if "validation_data" not in kw:
            kw["groups"] = groups
        self.estimator_ = est.fit(images, y, **kw)
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = np.shape(X)[1] if np.ndim(X) == 2 else 0
        return self

    def predict_proba(self, X, images=None, references=None) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        if images is None:
            raise ValueError("ImageMember needs images= at prediction too")
        ref = references if self.estimator_.uses_reference_ else None
        return self.estimator_.predict_proba(images, ref)

    def predict(self, X, images=None, references=None) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X, images, references), axis=1)]

    @classmethod
    def wrap(cls, fitted: Any) -> ImageMember:
        """A fitted member around an already fitted thumbnail classifier (e.g. one loaded from disk)."""
        member = cls(clone(fitted))
        member.estimator_, member.classes_, member.n_features_in_ = fitted, fitted.classes_, 0
        return member


class MoAEnsemble(ClassifierMixin, BaseEstimator):
    """Weighted soft vote of class-weighted XGBoost, the consensus kNN and the CNN embedding.

    Parameters
    ----------
    members : sequence of str or (name, estimator)
        Member names from :data:`moa_features.models.specs.MEMBERS` (built with ``seed`` and
        ``member_options``), or pairs giving the estimator. Default ``("xgboost", "knn",
        "cnn_embedding")``; thumbnail models are wrapped in :class:`ImageMember`.
    weight_step : float
        Grid step of the weights on the simplex (0.1: 66 blends of three members).
    calibrate : bool
        Temperature-scale each member on the inner validation rows (:func:`fit_temperature`)
        before the weights are chosen and in every blend, so that a member's sharpness does not
        decide its weight.
    seed : int
        Seed of the members built by name and of the inner split.
    cv : splitter or None
        Splitter of the outer split's kind (``NSCSplit(4)``, ``NSCPlateSplit(4)``, ...): the inner
        validation is its fold on the training rows; its ``split`` metadata (``groups``,
        ``plates``, ``batches``) are routed to it. ``None``: hold out ``validation_fraction`` of
        the ``groups`` (of the rows when no groups are given).
    validation_fraction : float
        Share held out when ``cv`` is ``None``.
    member_options : dict or None
        Options for the registry builders (``n_jobs``, ``cnn_epochs``, ``cnn_patience``,
        ``cnn_batch_size``, ``scheduler``).

    Attributes
    ----------
    classes_ : (k,) sorted labels.
    members_ : dict name -> fitted member.
    weights_ : dict name -> weight (sum 1).
    dropped_ : dict name -> why the member was not fitted.
    notes_ : dict name -> how a member was fitted differently from its default.
    fallback_ : name of the single member the ensemble is, or ``None`` for a blend.
    temperatures_ : dict name -> temperature applied to the member's probabilities (1: as they are).
    validation_loss_ : balanced log-loss of the chosen blend on the inner validation rows.
    inner_units_ : (n_val,) treatment (else group) of each inner validation row, or ``None``: the
        units whose spread gives the standard error of the weight choice.
    inner_split_ : (train rows, validation rows) indices into the fitted rows, or ``None``.
    inner_proba_ : dict name -> (n_val, k) inner-validation probabilities (what chose the weights).
    """

    # without ``cv`` the ensemble itself reads ``groups`` (to hold them out whole)
    __metadata_request__fit = {"groups": True}

    def __init__(
        self,
        members: Sequence = DEFAULT_MEMBERS,
        weight_step: float = 0.1,
        calibrate: bool = True,
        seed: int = 0,
        cv: Any = None,
        validation_fraction: float = 0.25,
        member_options: dict | None = None,
    ) -> None:
        self.members = members
        self.weight_step = weight_step
        self.calibrate = calibrate
        self.seed = seed
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.member_options = member_options

    # ---- members and routing ------------------------------------------------------
    def _build(self) -> dict[str, BaseEstimator]:
        """Unfitted members by name, with their metadata requests (call with routing enabled)."""
        out: dict[str, BaseEstimator] = {}
        for m in self.members:
            name, est = (m, None) if isinstance(m, str) else (m[0], clone(m[1]))
            if name in out:
                raise ValueError(f"member {name!r} is given twice")
            if est is None:
                if name not in specs.MEMBERS:
                    raise ValueError(f"unknown ensemble member {name!r}; choose from {', '.join(specs.MEMBERS)}")
                est = specs.MEMBERS[name].build(seed=self.seed, **(self.member_options or {}))
            if name in specs.MEMBERS and specs.MEMBERS[name].input == "thumbnails" and not isinstance(est, ImageMember):
                est = ImageMember(est)
            _request(est, "fit")
            _request(est, "predict_proba")
            out[name] = est
        if not out:
            raise ValueError("MoAEnsemble needs at least one member")
        return out

    def get_metadata_routing(self) -> MetadataRouter:
        """Which metadata each member's ``fit``/``predict_proba`` and the inner splitter's ``split`` take."""
        router = MetadataRouter(owner=self.__class__.__name__).add_self_request(self)
        with config_context(enable_metadata_routing=True):
            for name, est in self._build().items():
                mapping = (
                    MethodMapping()
                    .add(caller="fit", callee="fit")
                    .add(caller="predict_proba", callee="predict_proba")
                    .add(caller="predict", callee="predict_proba")
                )
                router.add(**{name: est}, method_mapping=mapping)
            if self.cv is not None:
                router.add(splitter=self.cv, method_mapping=MethodMapping().add(caller="fit", callee="split"))
        return router

    def _route(self, method: str, n: int, metadata: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Routed parameters of ``method`` for the metadata some member (or splitter) consumes."""
        unknown = sorted(set(metadata) - set(METADATA))
        if unknown:
            raise TypeError(f"MoAEnsemble.{method} got unexpected metadata {unknown}; expected some of {METADATA}")
        given = {k: v for k, v in metadata.items() if v is not None}
        for k, v in given.items():
            if len(v) != n:
                raise ValueError(f"{k} must have one entry per row ({n}), got {len(v)}")
        with config_context(enable_metadata_routing=True):
            router = self.get_metadata_routing()
            used = {k: (v if k in ("images", "references") else np.asarray(v)) for k, v in given.items()
                    if router.consumes(method, [k])}  # fmt: skip
            return process_routing(self, method, **used), used

    # ---- fitting ------------------------------------------------------------------
    def _inner_split(self, X, y_index: np.ndarray, routed: Any, used: dict) -> tuple[np.ndarray, np.ndarray] | None:
        if self.cv is not None:
            fold = first_fold(self.cv, X, y_index, **routed.splitter.split)
            if fold is not None:
                return fold
        return validation_split(y_index, used.get("groups"), self.validation_fraction, self.seed)

    def fit(self, X, y, **metadata) -> MoAEnsemble:
        """Fit members on inner-training rows, choose weights on the inner validation rows, refit.

        Parameters
        ----------
        X : (n, p) array
            Feature table (preprocessed profiles).
        y : (n,) labels
        **metadata : row-aligned arrays among :data:`METADATA`
            ``groups`` (held-out unit), ``treatments``, ``wells``, ``plates``, ``batches``,
            ``images`` ((n, S, S, C) uint8), ``references`` ((n, C) plate channel references).

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        routed, used = self._route("fit", len(y), metadata)
        pred_routed, _ = self._route("predict_proba", len(y), {k: v for k, v in used.items() if k in METADATA})
        with config_context(enable_metadata_routing=True):
            built = self._build()
        self.dropped_, self.notes_ = {}, {}
        for name in list(built):
            need = REQUIRES.get(name)
            if need and need not in used:
                self.dropped_[name] = f"no {need} given"
                del built[name]
            elif name in PREFERS and PREFERS[name][0] not in used:
                self.notes_[name] = PREFERS[name][1]
        if not built:
            raise ValueError(f"every member needs metadata that was not given: {self.dropped_}")
        split = self._inner_split(X, y_index, routed, used)
        self.inner_split_ = split
        self.members_, self.inner_proba_ = {}, {}
        if split is not None and len(np.unique(y_index[split[0]])) < 2:
            split = self.inner_split_ = None
        for name, est in built.items():
            fit_params = dict(routed[name].fit)
            if split is None:
                self.members_[name] = clone(est).fit(X, y, **fit_params)
                continue
            tr, va = split
            extra = {}
            if getattr(est, "fit_once", False):
                extra["validation"] = (X[va], y[va], _rows(pred_routed[name].predict_proba, va))
            inner = clone(est).fit(X[tr], y[tr], **_rows(fit_params, tr), **extra)
            proba = inner.predict_proba(X[va], **_rows(pred_routed[name].predict_proba, va))
            self.inner_proba_[name] = align_proba(proba, inner.classes_, self.classes_)
            self.members_[name] = inner if extra else clone(est).fit(X, y, **fit_params)
        self.inner_y_ = None if split is None else y_index[split[1]]
        units = used.get("treatments", used.get("groups"))
        self.inner_units_ = None if split is None or units is None else np.asarray(units)[split[1]]
        self._set_weights(list(self.members_))
        return self

    def _set_weights(self, names: list[str]) -> None:
        self.temperatures_ = {n: 1.0 for n in names}
        if self.inner_y_ is None:
            self.weights_ = {n: 1 / len(names) for n in names}
            self.fallback_, self.validation_loss_ = None, None
            return
        if self.calibrate:
            self.temperatures_ = {n: fit_temperature(self.inner_proba_[n], self.inner_y_) for n in names}
        probas = [temper(self.inner_proba_[n], self.temperatures_[n]) for n in names]
        w, loss, fb = choose_weights(probas, self.inner_y_, self.weight_step, self.inner_units_)
        self.weights_ = dict(zip(names, (float(v) for v in w)))
        self.fallback_ = None if fb is None else names[fb]
        self.validation_loss_ = loss

    def without(self, names: Sequence[str]) -> MoAEnsemble:
        """The fitted ensemble less the members ``names``, its weights chosen again on the same inner split.

        The ablation ``ensemble_no_embedding`` is ``ens.without(["cnn_embedding"])``: the same
        fitted members and inner validation rows, so it differs from ``ens`` only by the members.
        """
        check_is_fitted(self, "members_")
        keep = [n for n in self.members_ if n not in set(names)]
        if not keep:
            raise ValueError(f"no member left after removing {list(names)}")
        sub = clone(self).set_params(
            members=tuple(m for m in self.members if (m if isinstance(m, str) else m[0]) in keep)
        )
        for attr in ("classes_", "n_features_in_", "inner_split_", "inner_y_", "inner_units_", "dropped_", "notes_"):
            setattr(sub, attr, getattr(self, attr))
        if hasattr(self, "feature_names_in_"):
            sub.feature_names_in_ = self.feature_names_in_
        sub.members_ = {n: self.members_[n] for n in keep}
        sub.inner_proba_ = {n: p for n, p in self.inner_proba_.items() if n in keep}
        sub._set_weights(keep)
        return sub

    # ---- prediction ---------------------------------------------------------------
    def blend(self, probas: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted vote of member probabilities ``{name: (n, k) in classes_ order}``, each
        tempered by its ``temperatures_`` first: (n, k)."""
        check_is_fitted(self, "weights_")
        missing = [n for n, w in self.weights_.items() if w > 0 and n not in probas]
        if missing:
            raise ValueError(f"probabilities of member(s) {missing} are missing")
        temperatures = getattr(self, "temperatures_", {})
        used = [n for n, w in self.weights_.items() if w > 0]
        return _blend([temper(probas[n], temperatures.get(n, 1.0)) for n in used], [self.weights_[n] for n in used])

    def predict_proba(self, X, **metadata) -> np.ndarray:
        """(n, k) blended probabilities in ``classes_`` order; ``metadata`` as for :meth:`fit`
        (``treatments``/``wells`` for the kNN, ``images``/``references`` for the CNN embedding)."""
        check_is_fitted(self, "members_")
        X = validate_data(self, X, reset=False)
        routed, _ = self._route("predict_proba", len(X), metadata)
        probas = {
            n: align_proba(m.predict_proba(X, **routed[n].predict_proba), m.classes_, self.classes_)
            for n, m in self.members_.items()
            if self.weights_[n] > 0
        }
        return self.blend(probas)

    def predict(self, X, **metadata) -> np.ndarray:
        check_is_fitted(self, "members_")
        return self.classes_[np.argmax(self.predict_proba(X, **metadata), axis=1)]

    # ---- persistence --------------------------------------------------------------
    def save(self, path) -> None:
        """Write the ensemble without its members (they are saved in their own files) with joblib."""
        check_is_fitted(self, "members_")
        state = {k: v for k, v in self.__dict__.items() if k not in ("members_", "inner_proba_")}
        state["member_names_"] = list(self.members_)
        joblib.dump(state, path)

    @classmethod
    def load(cls, path, members: Mapping[str, Any]) -> MoAEnsemble:
        """An ensemble written by :meth:`save`, with its fitted ``members`` (name -> model) attached."""
        state = joblib.load(path)
        if not isinstance(state, dict) or "member_names_" not in state:
            raise ValueError(f"{path}: not an ensemble written by MoAEnsemble.save")
        names = state.pop("member_names_")
        missing = [n for n in names if n not in members]
        if missing:
            raise ValueError(f"{path}: the ensemble's member(s) {missing} are not loaded")
        ens = cls.__new__(cls)
        ens.__dict__.update(state)
        ens.members_ = {
            n: ImageMember.wrap(members[n])
            if n in specs.MEMBERS and specs.MEMBERS[n].input == "thumbnails" and not isinstance(members[n], ImageMember)
            else members[n]
            for n in names
        }
        ens.inner_proba_ = {}
        return ens

    @property
    def names(self) -> list[str]:
        """Names of the fitted members."""
        check_is_fitted(self, "members_")
        return list(self.members_)
