"""1-nearest-neighbour (cosine) classification on treatment consensus profiles.

The field's classic MoA baseline (Ljosa et al. 2013): each training treatment (compound x
concentration) is summarised by its consensus profile, the median over its wells of each
well's median profile (:func:`consensus_profiles`); a query gets the MoA of the most
cosine-similar training treatment.

Centring. Profiles normalised against negative controls put the control consensus at ~0,
whose direction is noise: its cosine similarity to everything is ~0, so a plain cosine 1-NN
can never predict the control class. With ``center=True`` the reference profiles and queries
are centred on the mean of the training consensus profiles before the cosine: the control
profile becomes a non-zero direction (minus the treatments' mean effect) and competes like
any other class. ``center="auto"`` (default) centres only when some consensus profile is
near zero (norm below ``NEAR_ZERO`` = 0.25 of the median norm), i.e. when there is a profile
cosine cannot reach, such as a control consensus (BBBC021 with DMSO, the demo's controls);
otherwise plain cosine is kept. ``standardize=True`` also scales each feature to SD 1 over the training
consensus profiles, for raw features in mixed units.

Queries. Given ``treatments`` (and ``wells``) at prediction time, each query treatment is
summarised by its own consensus profile (well medians -> treatment median) and compared with the
training consensus profiles: the field's "consensus vs consensus" protocol, in which a noisy site
or well cannot outvote its replicates. Every row of a treatment gets its treatment's
probabilities, so the output stays row-aligned (the ensemble blends it with other members row
by row). Without ``treatments`` each row is its own query.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

NEAR_ZERO = 0.25  # a consensus profile with norm below this share of the median norm has no usable direction


def group_medians(X: np.ndarray, groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Median profile per group: (unique groups (g,), profiles (g, p)), groups sorted as strings."""
    frame = pd.DataFrame(np.asarray(X, dtype=np.float64))
    med = frame.groupby(np.asarray(groups).astype(str), sort=True).median()
    return med.index.to_numpy(dtype=object), med.to_numpy()


def consensus_profiles(
    X: np.ndarray, treatments: Sequence, wells: Sequence | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ljosa consensus per treatment: median over wells of the well medians.

    ``X`` (n, p) rows (sites or wells), ``treatments`` (n,), ``wells`` (n,) or ``None``
    (each row is a well). Returns (treatment names (t,) sorted, profiles (t, p)).
    """
    treatments = np.asarray(treatments).astype(str)
    if wells is None:
        return group_medians(X, treatments)
    keys = pd.Series(treatments) + "\x1f" + pd.Series(np.asarray(wells).astype(str))
    well_names, well_profiles = group_medians(X, keys)
    well_treatment = np.array([k.split("\x1f", 1)[0] for k in well_names])
    return group_medians(well_profiles, well_treatment)


class ProfileKNNClassifier(ClassifierMixin, BaseEstimator):
    """1-NN cosine classifier on per-treatment consensus profiles.

    ``fit(X (n, p), y (n,), treatments=None, wells=None)``: rows are grouped by
    ``treatments`` (each row its own profile if ``None``) into consensus profiles
    (:func:`consensus_profiles`); a treatment's label is its most common row label.
    ``predict_proba`` is a softmax over classes of the best similarity to any profile of the
    class, divided by ``temperature``: the argmax is the 1-NN answer; the probabilities let
    the model join soft votes and well/treatment averaging. ``predict_proba(X, treatments=None,
    wells=None)``: with ``treatments`` each query treatment's consensus profile is classified and
    its probabilities are given to each of its rows ((n, k), row-aligned). ``treatments`` and
    ``wells`` reach ``fit`` and ``predict_proba`` in a meta-estimator through scikit-learn
    metadata routing (``set_fit_request`` / ``set_predict_proba_request``).
    """

    def __init__(self, temperature: float = 0.05, center: bool | str = "auto", standardize: bool = False) -> None:
        self.temperature = temperature
        self.center = center
        self.standardize = standardize

    def fit(self, X, y, treatments=None, wells=None) -> ProfileKNNClassifier:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if treatments is None:
            treatments = np.arange(len(y))
        treatments = np.asarray(treatments).astype(str)
        if treatments.shape != y.shape:
            raise ValueError(f"treatments must have one entry per row ({len(y)}), got shape {treatments.shape}")
        self.classes_ = np.unique(y)
        names, profiles = consensus_profiles(X, treatments, wells)
        codes = np.searchsorted(self.classes_, y)
        label_of = pd.Series(codes).groupby(treatments).agg(lambda s: s.value_counts().index[0])
        self.profile_names_ = names
        self.profile_codes_ = label_of.loc[names].to_numpy(dtype=int)
        self.centred_ = self._centre(profiles)
        self.mean_ = profiles.mean(axis=0) if self.centred_ else np.zeros(X.shape[1])
        sd = profiles.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0) if self.standardize and len(profiles) > 1 else np.ones(X.shape[1])
        self.profiles_ = (profiles - self.mean_) / self.scale_
        return self

    def _centre(self, profiles: np.ndarray) -> bool:
        if self.center not in (True, False, "auto"):
            raise ValueError(f"center must be True, False or 'auto', got {self.center!r}")
        if len(profiles) < 2 or self.center is False:
            return False
        norm = np.linalg.norm(profiles, axis=1)
        return self.center is True or bool(norm.min() < NEAR_ZERO * np.median(norm))

    def _queries(self, X, treatments, wells) -> tuple[np.ndarray, np.ndarray]:
        """Query profiles (q, p) and the query of each row (n,): consensus per treatment, or the rows."""
        check_is_fitted(self, "profiles_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        if treatments is None:
            return X, np.arange(len(X))
        treatments = np.asarray(treatments).astype(str)
        if treatments.shape != (len(X),):
            raise ValueError(f"treatments must have one entry per row ({len(X)}), got shape {treatments.shape}")
        if wells is not None and np.shape(wells) != (len(X),):
            raise ValueError(f"wells must have one entry per row ({len(X)}), got shape {np.shape(wells)}")
        names, profiles = consensus_profiles(X, treatments, wells)
        return profiles, np.searchsorted(names, treatments)

    def _class_similarity(self, Q: np.ndarray) -> np.ndarray:
        sim = cosine_similarity((Q - self.mean_) / self.scale_, self.profiles_)
        out = np.full((len(Q), len(self.classes_)), -np.inf)
        for k in np.unique(self.profile_codes_):
            out[:, k] = sim[:, self.profile_codes_ == k].max(axis=1)
        return out

    def similarity(self, X, treatments=None, wells=None) -> np.ndarray:
        """(n, k) best cosine similarity of each row's query (its treatment's consensus profile when
        ``treatments`` are given, else the row) to any training profile of each class (-inf if none)."""
        Q, index = self._queries(X, treatments, wells)
        return self._class_similarity(Q)[index]

    def predict_proba(self, X, treatments=None, wells=None) -> np.ndarray:
        """(n, k) class probabilities in ``classes_`` order, row-aligned (see the class docstring)."""
        logits = self.similarity(X, treatments, wells) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X, treatments=None, wells=None) -> np.ndarray:
        """(n,) the class of each row's nearest training profile (of its treatment's consensus with ``treatments``)."""
        sim = self.similarity(X, treatments, wells)
        return self.classes_[np.argmax(sim, axis=1)]

    def nearest_profile(self, X, treatments=None, wells=None) -> np.ndarray:
        """(n,) index into ``profile_names_`` of each row's query's most similar training profile."""
        Q, index = self._queries(X, treatments, wells)
        return np.argmax(cosine_similarity((Q - self.mean_) / self.scale_, self.profiles_), axis=1)[index]
