"""Cross-validation splitters for MoA evaluation, as scikit-learn ``BaseCrossValidator``s.

Sites of one well (and wells of one plate) are near-duplicates, and a treatment's replicates
look alike, so every splitter here holds out whole units, never random rows. Which question
a split answers:

==============  ===============================================  ================================
split           held out in each test fold                        question answered
==============  ===============================================  ================================
``plate``       whole plates (:class:`PlateSplit`)               treatment recognition
``experiment``  whole experiments (:class:`ExperimentSplit`)     treatment recognition
``nsc``         whole treatments, "not same compound"             MoA of held-out treatments
                (:class:`NSCSplit`, Ljosa et al. 2013)
``nscb``        as ``nsc``; training rows from the test           MoA of held-out treatments
                treatments' batches are dropped (:class:`NSCBSplit`)  across batches
``nsc-plate``   as ``nsc``; training rows from the test           MoA of held-out treatments
                treatments' plates are dropped (:class:`NSCPlateSplit`)  on unseen plates
==============  ===============================================  ================================

How the metadata reach ``split``: ``groups`` is always the held-out unit (plate, experiment
or treatment id per row), as for scikit-learn's group splitters, so every splitter works in
``cross_validate(..., groups=...)`` and ``GridSearchCV.fit(..., groups=...)`` (with metadata
routing, splitters request ``groups`` by default). The second label that NSCB and NSC-plate
need (batch, plate per row) is a constructor argument, row-aligned with the ``X`` given to
``split``; :func:`make_splitter` builds any of them from a metadata table. A treatment's
concentrations share its id (the treatment column), so they leave together.

:func:`validation_split` is the one inner train/validation split used for early stopping
(XGBoost, CNNs) and ensemble weights: it holds out whole ``groups``, so given the outer
split's held-out unit it mirrors the outer split.
"""

from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    BaseCrossValidator,
    GroupKFold,
    GroupShuffleSplit,
    LeaveOneGroupOut,
    ShuffleSplit,
    StratifiedGroupKFold,
    StratifiedShuffleSplit,
)

SPLITS = ("plate", "experiment", "nsc", "nscb", "nsc-plate")
TREATMENT_SPLITS = ("nsc", "nscb", "nsc-plate")
QUESTIONS = {
    "plate": "treatment recognition (held-out plates; test treatments were seen in training)",
    "experiment": "treatment recognition (held-out experiments; test treatments were seen in training)",
    "nsc": "MoA of held-out treatments",
    "nscb": "MoA of held-out treatments, without their batches in training",
    "nsc-plate": "MoA of held-out treatments on plates no training row came from",
}
DEFAULT_GROUP_FOLDS = 5
DEFAULT_NSC_FOLDS = 10

Split = tuple[np.ndarray, np.ndarray]


def _groups(groups, n: int, what: str) -> np.ndarray:
    if groups is None:
        raise ValueError(f"{what} needs groups (the held-out unit of each row), got None")
    arr = np.asarray(groups)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{what}: groups must be 1-d with one entry per row ({n}), got shape {arr.shape}")
    if pd.isna(arr).any():
        raise ValueError(f"{what}: groups has {int(pd.isna(arr).sum())} missing values")
    return arr


class GroupSplit(BaseCrossValidator):
    """Hold out whole groups: leave-one-group-out for at most ``n_splits`` groups, else ``GroupKFold``.

    Parameters
    ----------
    n_splits : int or None
        Folds (default 5); ``None`` is leave-one-group-out. Capped at the number of groups.
    """

    __metadata_request__split = {"groups": True}  # with metadata routing, groups reach split by default

    def __init__(self, n_splits: int | None = DEFAULT_GROUP_FOLDS) -> None:
        self.n_splits = n_splits

    def _n_folds(self, n_groups: int) -> int:
        if n_groups < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 groups, got {n_groups}; "
                "a model evaluated on the group it was trained on says nothing"
            )
        if self.n_splits is None:
            return n_groups
        if int(self.n_splits) < 2:
            raise ValueError(f"n_splits must be >= 2 or None (leave one out), got {self.n_splits}")
        return min(int(self.n_splits), n_groups)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        if groups is None:
            if self.n_splits is None:
                raise ValueError("leave-one-group-out: the number of splits depends on groups; pass groups")
            return int(self.n_splits)
        return self._n_folds(len(np.unique(np.asarray(groups))))

    def _folds(self, groups: np.ndarray, y) -> Iterator[Split]:
        n = self._n_folds(len(np.unique(groups)))
        cv = LeaveOneGroupOut() if n == len(np.unique(groups)) else GroupKFold(n_splits=n)
        for tr, te in cv.split(np.zeros(len(groups)), groups=groups):
            yield np.sort(tr), np.sort(te)

    def split(self, X, y=None, groups=None) -> Iterator[Split]:
        """Yield (train, test) row indices; ``groups`` (n,) is the held-out unit of each row."""
        g = _groups(groups, len(X), type(self).__name__)
        for train, test in self._folds(g, y):
            train = self._restrict(train, test)
            if len(train):
                yield train, test

    def _restrict(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return train

    def _iter_test_indices(self, X=None, y=None, groups=None):  # required by the ABC; split is overridden
        for _, test in self.split(X, y, groups):
            yield test


class PlateSplit(GroupSplit):
    """Held-out plates (``groups`` = plate per row): treatment recognition when treatments repeat across plates."""


class ExperimentSplit(GroupSplit):
    """Held-out experiments (``groups`` = experiment per row)."""


class NSCSplit(GroupSplit):
    """Not-same-compound folds: ``groups`` = treatment per row; a treatment is never in train and test.

    Grouped K-fold over treatments, stratified by class when ``y`` is given (so each class
    keeps treatments in training as far as its count allows); ``n_splits=None`` is
    leave-one-treatment-out (Ljosa et al. 2013). Default 10 folds (capped at the number of
    treatments), which keeps large screens cheap.
    """

    def __init__(self, n_splits: int | None = DEFAULT_NSC_FOLDS, random_state: int = 0) -> None:
        super().__init__(n_splits)
        self.random_state = random_state

    def _folds(self, groups: np.ndarray, y) -> Iterator[Split]:
        uniq = np.unique(groups)
        n = self._n_folds(len(uniq))
        if n == len(uniq) or y is None:
            yield from super()._folds(groups, y)
            return
        cv = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            for tr, te in cv.split(np.zeros(len(groups)), np.asarray(y).astype(str), groups):
                yield np.sort(tr), np.sort(te)


class _ExcludingNSC(NSCSplit):
    """NSC whose training rows sharing a ``labels`` value with any test row are dropped."""

    _what = "labels"

    def __init__(self, labels: Sequence | None = None, n_splits: int | None = DEFAULT_NSC_FOLDS,
                 random_state: int = 0) -> None:
        super().__init__(n_splits, random_state)
        self.labels = labels

    def split(self, X, y=None, groups=None) -> Iterator[Split]:
        if self.labels is None:
            raise ValueError(f"{type(self).__name__} needs {self._what} (one per row) at construction")
        self._labels = _groups(self.labels, len(X), f"{type(self).__name__} {self._what}")
        yield from super().split(X, y, groups)

    def _restrict(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return train[~np.isin(self._labels[train], np.unique(self._labels[test]))]


class NSCBSplit(_ExcludingNSC):
    """Not same compound or batch: NSC, and training rows of any batch of the test treatments are dropped.

    ``labels``: batch per row, aligned with the ``X`` given to ``split``.
    """

    _what = "batches"


class NSCPlateSplit(_ExcludingNSC):
    """Held-out treatments on unseen plates: NSC, and training rows on any plate of the test rows are dropped.

    ``labels``: plate per row, aligned with the ``X`` given to ``split``. Feasible only when
    treatments are spread over plates so that dropping the test plates leaves training rows
    (see :func:`nsc_plate_feasible`); a layout with every treatment on every plate is not.
    """

    _what = "plates"


def nsc_plate_feasible(y: Sequence, treatments: Sequence, plates: Sequence, n_splits: int | None,
                       min_kept: float = 0.5, random_state: int = 0) -> bool:
    """Whether every NSC-plate fold keeps ``min_kept`` of its NSC training rows and all their classes."""
    y, treatments, plates = (np.asarray(a).astype(str) for a in (y, treatments, plates))
    nsc = NSCSplit(n_splits, random_state)
    X = np.zeros((len(y), 1))
    for train, test in nsc.split(X, y, treatments):
        kept = train[~np.isin(plates[train], np.unique(plates[test]))]
        if len(kept) < min_kept * len(train) or set(y[kept]) != set(y[train]):
            return False
    return True


def make_splitter(
    kind: str,
    meta: pd.DataFrame,
    *,
    plate: str,
    treatment: str | None = None,
    experiment: str | None = None,
    batch: str | None = None,
    n_splits: int | None = None,
    random_state: int = 0,
) -> tuple[GroupSplit, np.ndarray]:
    """The splitter of ``kind`` (one of :data:`SPLITS`) for ``meta``'s rows and its ``groups`` array.

    ``n_splits=None`` means each splitter's default (5 group folds, 10 NSC folds); pass
    ``"loo"`` handling upstream as ``n_splits=len(unique groups)``. Missing columns raise a
    KeyError naming them.
    """
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; expected one of {', '.join(SPLITS)}")

    def column(name: str | None, what: str) -> np.ndarray:
        if name is None or name not in meta.columns:
            raise KeyError(f"--split {kind} needs the {what} column {name!r}, which the table lacks")
        if meta[name].isna().any():
            raise ValueError(f"{what} column {name!r} has {int(meta[name].isna().sum())} missing values")
        return meta[name].astype(str).to_numpy()

    if kind == "plate":
        return PlateSplit(n_splits or DEFAULT_GROUP_FOLDS), column(plate, "plate")
    if kind == "experiment":
        return ExperimentSplit(n_splits or DEFAULT_GROUP_FOLDS), column(experiment, "experiment")
    groups = column(treatment, "treatment")
    k = n_splits or DEFAULT_NSC_FOLDS
    if kind == "nsc":
        return NSCSplit(k, random_state), groups
    if kind == "nscb":
        return NSCBSplit(column(batch, "batch"), k, random_state), groups
    return NSCPlateSplit(column(plate, "plate"), k, random_state), groups


def validation_split(
    y: np.ndarray, groups: np.ndarray | None, fraction: float, random_state: int
) -> Split | None:
    """Inner train/validation row indices, or ``None`` when no split is possible.

    Whole groups are held out (``GroupShuffleSplit``) when ``groups`` has at least two
    distinct values; otherwise rows are split stratified by class (plain random if a class
    has one row). Used for early stopping and ensemble weights alike.
    """
    n = len(y)
    if n < 4 or not 0 < fraction < 1:
        return None
    if groups is not None and len(np.unique(groups)) >= 2:
        cv = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=random_state)
        tr, va = next(cv.split(np.zeros(n), y, np.asarray(groups)))
    else:
        _, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
        n_val = int(np.ceil(fraction * n))
        stratify = counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts)
        cv = (StratifiedShuffleSplit if stratify else ShuffleSplit)(
            n_splits=1, test_size=fraction, random_state=random_state
        )
        tr, va = next(cv.split(np.zeros(n), np.asarray(y).astype(str)))
    if len(tr) == 0 or len(va) == 0:
        return None
    return np.sort(tr), np.sort(va)


def inner_split(kind: str, meta: pd.DataFrame, y: np.ndarray, fraction: float, random_state: int,
                **columns) -> Split:
    """First fold of the outer split's own kind on the training rows ``meta``: the inner split mirrors the outer.

    ``round(1 / fraction)`` folds (4 for 0.25); an NSC outer split gets an NSC inner split
    (no treatment in both inner train and validation), NSC-plate drops the validation
    plates, a plate split holds out plates. Falls back to NSC when an NSC-plate fold would
    leave no training rows. ``columns``: ``plate=``, ``treatment=``, ``experiment=``, ``batch=``.
    """
    k = max(2, int(round(1 / fraction)))
    X = np.zeros((len(meta), 1))
    for attempt in (kind, "nsc") if kind == "nsc-plate" else (kind,):
        splitter, groups = make_splitter(attempt, meta, n_splits=k, random_state=random_state, **columns)
        if len(np.unique(groups)) < 2:
            break
        for train, val in splitter.split(X, y, groups):
            if len(train) and len(val):
                return train, val
    raise ValueError(f"no inner {kind} validation split possible on {len(meta)} training rows")
