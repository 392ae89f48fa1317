"""Weighted soft vote of member models' class probabilities.

Why a weighted soft vote and not stacking: stacking needs out-of-fold predictions of every
member inside every training fold (an inner cross-validation of the CNN per outer fold),
which costs k times the CNN training and, with the few plates of a typical screen, leaves a
meta-learner only a few hundred rows of highly correlated probabilities to fit. A soft vote
has only ``M - 1`` free weights, chosen by a grid over the simplex on one inner validation
split (:func:`moa_features.models.splits.validation_split`, or in ``train`` the first fold of
the outer split's own kind); the test rows never influence the weights.

The weights minimise the class-balanced log-loss of the blended probabilities on the
validation rows (a proper score: smoother and less noisy than recall). A blend is kept only
if it beats the best single member on that validation loss; otherwise the ensemble *falls
back* to that member (weight 1) and ``fallback_`` names it, so the ensemble is never worse
than its best member on the data it was chosen on.

Two entry points share :func:`choose_weights`: :class:`SoftVoteEnsemble`, a scikit-learn
meta-estimator over feature estimators (fits members, chooses weights, refits members on
all rows), and :class:`ProbabilityVote`, the fitted blend of precomputed member
probabilities that ``train`` uses when members take different inputs (features, thumbnails).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, has_fit_parameter, validate_data

from moa_features.models.splits import validation_split

_EPS = 1e-7
_TOL = 1e-9


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
        raise ValueError(f"step must divide 1 evenly, got {step}")
    rows = [w for w in product(range(n + 1), repeat=n_members - 1) if sum(w) <= n]
    return np.array([list(w) + [n - sum(w)] for w in rows], dtype=float) / n


def balanced_log_loss(y_index: np.ndarray, proba: np.ndarray) -> float:
    """Class-balanced mean negative log-probability of the true class (natural log)."""
    p = np.clip(proba[np.arange(len(y_index)), y_index], _EPS, 1.0)
    w = compute_sample_weight("balanced", y_index)
    return float(np.sum(w * -np.log(p)) / np.sum(w))


def _blend(probas: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, probas))


def choose_weights(
    probas: Sequence[np.ndarray], y_index: np.ndarray, step: float
) -> tuple[np.ndarray, float, int | None]:
    """Simplex weights minimising the balanced log-loss; ``(weights (M,), loss, fallback member or None)``.

    A blend must beat the best single member by more than 1e-9; otherwise that member gets
    weight 1 and its index is returned as the fallback. Among equal blends the most even wins.
    """
    m = len(probas)
    single = np.array([balanced_log_loss(y_index, p) for p in probas])
    best_single = int(np.argmin(single))
    if m == 1:
        return np.ones(1), float(single[0]), 0
    grid = simplex_grid(m, step)
    losses = np.array([balanced_log_loss(y_index, _blend(probas, w)) for w in grid])
    if losses.min() >= single[best_single] - _TOL:
        weights = np.zeros(m)
        weights[best_single] = 1.0
        return weights, float(single[best_single]), best_single
    best = np.flatnonzero(np.isclose(losses, losses.min(), rtol=0, atol=_TOL))
    choice = best[np.argmin(np.abs(grid[best] - 1 / m).sum(axis=1))]
    return grid[choice], float(losses[choice]), None


class ProbabilityVote:
    """A fitted blend of named members' probabilities (what ``train`` saves as ``ensemble.joblib``).

    ``predict_proba(probas)``: ``probas`` a list of M (n, k) arrays in ``names`` order, each
    in ``classes_`` order. Attributes: ``names``, ``classes_``, ``weights_``,
    ``validation_loss_``, ``fallback_`` (the member it fell back to, or ``None``).
    """

    def __init__(self, names: Sequence[str], classes: Sequence, step: float = 0.1) -> None:
        self.names = list(names)
        self.classes_ = np.asarray(classes)
        self.step = step

    def fit(self, probas: Sequence[np.ndarray], y) -> ProbabilityVote:
        probas = self._check(probas)
        y = np.asarray(y)
        unknown = sorted(set(y.tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise ValueError(f"validation labels {unknown} are not among the ensemble classes")
        y_index = np.searchsorted(self.classes_, y)
        self.weights_, self.validation_loss_, fb = choose_weights(probas, y_index, self.step)
        self.fallback_ = None if fb is None else self.names[fb]
        return self

    def _check(self, probas: Sequence[np.ndarray]) -> list[np.ndarray]:
        probas = [np.asarray(p, dtype=np.float64) for p in probas]
        if len(probas) != len(self.names):
            raise ValueError(f"expected {len(self.names)} members ({self.names}), got {len(probas)}")
        shapes = {p.shape for p in probas}
        if len(shapes) != 1 or probas[0].ndim != 2 or probas[0].shape[1] != len(self.classes_):
            raise ValueError(f"member probabilities must all be (n, {len(self.classes_)}), got shapes {sorted(shapes)}")
        return probas

    def predict_proba(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        if not hasattr(self, "weights_"):
            raise AttributeError("this ProbabilityVote is not fitted yet; call fit(probas, y)")
        return _blend(self._check(probas), self.weights_)

    def predict(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(probas), axis=1)]


class SoftVoteEnsemble(ClassifierMixin, BaseEstimator):
    """Soft vote of feature estimators with weights chosen on an inner validation split.

    Parameters
    ----------
    estimators : list of (name, estimator); default XGBoost and the 1-NN profile classifier.
    step : grid step of the weights on the simplex.
    validation_fraction : share of rows (whole ``groups`` when given) held out to choose weights.
    random_state : seed of the validation split.

    ``fit(X, y, groups=None)``: members are fitted on the inner-training rows, weights chosen
    on the validation rows (:func:`choose_weights`), then members are refitted on all rows.
    Members that accept ``groups`` get them. Fitted: ``estimators_``, ``weights_``,
    ``fallback_``, ``classes_``.
    """

    def __init__(
        self,
        estimators: list | None = None,
        step: float = 0.1,
        validation_fraction: float = 0.25,
        random_state: int = 0,
    ) -> None:
        self.estimators = estimators
        self.step = step
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _members(self) -> list:
        if self.estimators is not None:
            return list(self.estimators)
        from moa_features.models.gbm import XGBoostClassifier
        from moa_features.models.knn import ProfileKNNClassifier

        return [("xgboost", XGBoostClassifier(random_state=self.random_state)), ("knn", ProfileKNNClassifier())]

    def _fit_members(self, X, y, groups) -> list:
        out = []
        for _, est in self._members():
            kw = {"groups": groups} if groups is not None and has_fit_parameter(est, "groups") else {}
            out.append(clone(est).fit(X, y, **kw))
        return out

    def fit(self, X, y, groups=None) -> SoftVoteEnsemble:
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        g = None if groups is None else np.asarray(groups)
        split = validation_split(y_index, g, self.validation_fraction, self.random_state)
        names = [n for n, _ in self._members()]
        if split is None or len(np.unique(y_index[split[0]])) < 2:
            self.weights_ = np.full(len(names), 1 / len(names))
            self.fallback_ = None
        else:
            tr, va = split
            members = self._fit_members(X[tr], y[tr], None if g is None else g[tr])
            probas = [align_proba(m.predict_proba(X[va]), m.classes_, self.classes_) for m in members]
            self.weights_, self.validation_loss_, fb = choose_weights(probas, y_index[va], self.step)
            self.fallback_ = None if fb is None else names[fb]
        self.estimators_ = self._fit_members(X, y, g)
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False)
        return _blend(
            [align_proba(m.predict_proba(X), m.classes_, self.classes_) for m in self.estimators_], self.weights_
        )

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
