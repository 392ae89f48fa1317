"""1-nearest-neighbour (cosine) classification on treatment-level profiles.

The field's classic MoA baseline (Ljosa et al. 2013): each training treatment (compound x
concentration) is summarised by the median of its rows' profiles; a query profile gets the
MoA of the most cosine-similar training treatment. Queries can be single rows or, as in the
NSC protocol, the median profile of a held-out treatment (:meth:`predict_groups`).

The profiles are expected to be normalised already (plate normalisation makes every feature
a robust z-score against controls, as pycytominer profiles are), so by default features enter
the cosine as they are; ``standardize=True`` first scales each feature to mean 0, SD 1 over
the training profiles, for raw features in mixed units.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


def group_medians(X: np.ndarray, groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Median profile per group: (unique groups (g,), profiles (g, p)), groups sorted."""
    frame = pd.DataFrame(np.asarray(X, dtype=np.float64))
    med = frame.groupby(np.asarray(groups).astype(str), sort=True).median()
    return med.index.to_numpy(dtype=object), med.to_numpy()


def cosine_similarity(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(n, m) cosine similarities between rows of ``A`` (n, p) and ``B`` (m, p); 0 for zero rows."""
    def unit(M: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(M, axis=1, keepdims=True)
        return M / np.where(norm > 0, norm, 1.0)

    return unit(A) @ unit(B).T


class ProfileKNNClassifier(ClassifierMixin, BaseEstimator):
    """1-NN (``n_neighbors`` = 1) cosine classifier on per-treatment median profiles.

    ``fit(X (n, p), y (n,), treatments=None)``: rows are grouped by ``treatments`` (each row
    its own profile if ``None``); a treatment's label is its most common row label.
    ``predict_proba`` is a softmax over classes of the best similarity to any profile of the
    class, divided by ``temperature``: the argmax is the 1-NN answer; the probabilities let
    the model join soft votes and well/treatment averaging.
    """

    def __init__(self, temperature: float = 0.05, standardize: bool = False) -> None:
        self.temperature = temperature
        self.standardize = standardize

    def fit(self, X, y, treatments=None) -> "ProfileKNNClassifier":
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(str)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, p) with n = len(y) = {len(y)}, got shape {X.shape}")
        if treatments is None:
            treatments = np.arange(len(y)).astype(str)
        treatments = np.asarray(treatments).astype(str)
        self.classes_ = np.unique(y)
        names, profiles = group_medians(X, treatments)
        label_of = pd.Series(y).groupby(treatments).agg(lambda s: s.value_counts().index[0])
        self.profile_names_ = names
        self.profile_labels_ = label_of.loc[names].to_numpy(dtype=object)
        self.n_features_in_ = X.shape[1]
        if self.standardize and len(profiles) > 1:
            self.mean_ = profiles.mean(axis=0)
            sd = profiles.std(axis=0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        self.profiles_ = (profiles - self.mean_) / self.scale_
        return self

    def similarity(self, X) -> np.ndarray:
        """(n, k) best cosine similarity of each row to any training profile of each class."""
        check_is_fitted(self, "profiles_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected (n, {self.n_features_in_}) features, got shape {X.shape}")
        sim = cosine_similarity((X - self.mean_) / self.scale_, self.profiles_)
        out = np.full((len(X), len(self.classes_)), -np.inf)
        for k, c in enumerate(self.classes_):
            cols = self.profile_labels_ == c
            out[:, k] = sim[:, cols].max(axis=1)
        return out

    def predict_proba(self, X) -> np.ndarray:
        logits = self.similarity(X) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.similarity(X), axis=1)]

    def predict_groups(self, X, groups: Sequence) -> pd.Series:
        """1-NN label of each group's median profile (the NSC protocol), indexed by group."""
        names, profiles = group_medians(X, groups)
        return pd.Series(self.predict(profiles), index=names)
