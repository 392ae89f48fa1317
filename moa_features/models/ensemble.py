"""Weighted soft vote of member models' class probabilities.

Why a weighted soft vote and not stacking: stacking needs out-of-fold predictions of every
member inside every training fold (an inner cross-validation of the CNN per outer fold),
which costs k times the CNN training and, with the few plates of a typical screen, leaves a
meta-learner only a few hundred rows of highly correlated probabilities to fit. A soft vote
has only ``M - 1`` free weights, chosen by a grid over the simplex on one inner validation
split that holds out whole training plates; the test plates never influence the weights.

The weights minimise the class-balanced log-loss of the blended probabilities on the
validation rows (a proper score: smoother and less noisy on one plate than recall; ties go
to the more even blend).
"""

from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

_EPS = 1e-7


def align_proba(proba: np.ndarray, classes: Sequence, to: Sequence) -> np.ndarray:
    """Reorder (n, k) probabilities from ``classes`` order to ``to`` order (0 for absent classes)."""
    proba = np.asarray(proba, dtype=np.float64)
    index = {str(c): i for i, c in enumerate(classes)}
    out = np.zeros((len(proba), len(to)))
    for j, c in enumerate(to):
        if str(c) in index:
            out[:, j] = proba[:, index[str(c)]]
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


class SoftVoteEnsemble(ClassifierMixin, BaseEstimator):
    """Blend ``M`` members' probabilities with weights chosen on held-out validation rows.

    ``fit(probas, y)``: ``probas`` is a list of M (n, k) arrays, each in ``classes`` order
    (see :func:`align_proba`), computed on validation rows by members that did not train on
    them. ``predict_proba(probas)`` returns the weighted average. Fitted: ``weights_`` (M,),
    ``validation_loss_``.
    """

    def __init__(self, classes: Sequence[str], names: Sequence[str], step: float = 0.1) -> None:
        self.classes = classes
        self.names = names
        self.step = step

    def fit(self, probas: Sequence[np.ndarray], y) -> "SoftVoteEnsemble":
        probas = self._check(probas)
        self.classes_ = np.asarray([str(c) for c in self.classes], dtype=object)
        y = np.asarray(y).astype(str)
        unknown = sorted(set(y) - set(self.classes_))
        if unknown:
            raise ValueError(f"validation labels {unknown} are not among the ensemble classes")
        y_index = np.searchsorted(self.classes_.astype(str), y)
        grid = simplex_grid(len(probas), self.step)
        losses = np.array([balanced_log_loss(y_index, self._blend(probas, w)) for w in grid])
        best = np.flatnonzero(np.isclose(losses, losses.min(), rtol=0, atol=1e-9))
        evenness = np.abs(grid[best] - 1 / len(probas)).sum(axis=1)
        choice = best[np.argmin(evenness)]
        self.weights_ = grid[choice]
        self.validation_loss_ = float(losses[choice])
        return self

    def _check(self, probas: Sequence[np.ndarray]) -> list[np.ndarray]:
        probas = [np.asarray(p, dtype=np.float64) for p in probas]
        if len(probas) != len(self.names):
            raise ValueError(f"expected {len(self.names)} members ({list(self.names)}), got {len(probas)}")
        shapes = {p.shape for p in probas}
        if len(shapes) != 1 or probas[0].ndim != 2 or probas[0].shape[1] != len(self.classes):
            raise ValueError(
                f"member probabilities must all be (n, {len(self.classes)}), got shapes {sorted(shapes)}"
            )
        return probas

    @staticmethod
    def _blend(probas: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
        return sum(w * p for w, p in zip(weights, probas))

    def predict_proba(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return self._blend(self._check(probas), self.weights_)

    def predict(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(probas), axis=1)]
