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
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
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

    def __init__(
        self, labels: Sequence | None = None, n_splits: int | None = DEFAULT_NSC_FOLDS, random_state: int = 0
    ) -> None:
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


def plate_components(treatments: Sequence, plates: Sequence, ubiquitous: float = 0.5) -> np.ndarray:
    """Connected component of each row in the treatment-plate graph, (n,) int.

    Two plates are linked when a treatment has rows on both; a treatment belongs to the
    component of its plates. Treatments on more than ``ubiquitous`` of the plates (the
    negative control of every plate) link nothing and form their own component.
    """
    treatments, plates = np.asarray(treatments).astype(str), np.asarray(plates).astype(str)
    t_names, t_idx = np.unique(treatments, return_inverse=True)
    p_names, p_idx = np.unique(plates, return_inverse=True)
    spread = pd.Series(p_idx).groupby(t_idx).nunique().to_numpy() / len(p_names)
    linking = spread[t_idx] <= ubiquitous
    n = len(p_names) + len(t_names)
    graph = coo_matrix((np.ones(int(linking.sum())), (p_idx[linking], len(p_names) + t_idx[linking])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    component = label[len(p_names) + t_idx]
    component[~linking] = label.max() + 1 + t_idx[~linking]  # a ubiquitous treatment is its own component
    return component


class NSCPlateSplit(_ExcludingNSC):
    """Held-out treatments on unseen plates: no test treatment and no test plate in training.

    ``labels``: plate per row, aligned with the ``X`` given to ``split``. Folds are grouped
    K-fold (stratified by class when ``y`` is given) over the connected components of the
    treatment-plate graph (:func:`plate_components`), so a fold's test treatments take their
    plates with them and every other treatment stays on training plates; training rows on a
    test plate (a ubiquitous control) are dropped. The layout allows this only when there
    are several components: with every treatment on every plate there is one
    (:func:`nsc_plate_feasible`).
    """

    _what = "plates"

    def _folds(self, groups: np.ndarray, y) -> Iterator[Split]:
        yield from super()._folds(plate_components(groups, self._labels).astype(str), y)


def nsc_plate_feasible(
    y: Sequence,
    treatments: Sequence,
    plates: Sequence,
    n_splits: int | None,
    min_kept: float = 0.5,
    random_state: int = 0,
) -> bool:
    """Whether NSC-plate folds keep ``min_kept`` of the other rows and every class that has >= 2 treatments."""
    y, treatments, plates = (np.asarray(a).astype(str) for a in (y, treatments, plates))
    n_components = len(np.unique(plate_components(treatments, plates)))
    if n_components < 2:
        return False
    k = None if n_splits is None else min(int(n_splits), n_components)
    n_treat = pd.Series(treatments).groupby(y).nunique()
    scorable = set(n_treat.index[n_treat >= 2])
    X = np.zeros((len(y), 1))
    tested = np.zeros(len(y), dtype=bool)
    n_folds = 0
    for train, test in NSCPlateSplit(plates, k, random_state).split(X, y, treatments):
        n_folds += 1
        tested[test] = True
        lost = (set(y[test]) - set(y[train])) & scorable
        if len(train) < min_kept * (len(y) - len(test)) or lost:
            return False
    # folds with no training rows are skipped by split
    return n_folds >= 2 and bool(tested[np.isin(y, list(scorable))].all())


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

    ``n_splits=None`` means each splitter's default (5 group folds, 10 NSC folds), ``0``
    leave one group (plate, experiment, treatment) out. Missing columns raise a KeyError
    naming them.
    """
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; expected one of {', '.join(SPLITS)}")

    def column(name: str | None, what: str) -> np.ndarray:
        if name is None or name not in meta.columns:
            raise KeyError(f"--split {kind} needs the {what} column {name!r}, which the table lacks")
        if meta[name].isna().any():
            raise ValueError(f"{what} column {name!r} has {int(meta[name].isna().sum())} missing values")
        return meta[name].astype(str).to_numpy()

    def folds(default: int) -> int | None:
        return default if n_splits is None else (None if n_splits == 0 else n_splits)

    if kind == "plate":
        return PlateSplit(folds(DEFAULT_GROUP_FOLDS)), column(plate, "plate")
    if kind == "experiment":
        return ExperimentSplit(folds(DEFAULT_GROUP_FOLDS)), column(experiment, "experiment")
    groups = column(treatment, "treatment")
    k = folds(DEFAULT_NSC_FOLDS)
    if kind == "nsc":
        return NSCSplit(k, random_state), groups
    if kind == "nscb":
        return NSCBSplit(column(batch, "batch"), k, random_state), groups
    return NSCPlateSplit(column(plate, "plate"), k, random_state), groups


def validation_split(y: np.ndarray, groups: np.ndarray | None, fraction: float, random_state: int) -> Split | None:
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


def inner_split(kind: str, meta: pd.DataFrame, y: np.ndarray, fraction: float, random_state: int, **columns) -> Split:
    """A fold of the outer split's own kind on the training rows ``meta``: the inner split mirrors the outer.

    ``round(1 / fraction)`` folds (4 for 0.25), the first whose training part keeps the most
    classes; an NSC outer split gets an NSC inner split
    (no treatment in both inner train and validation), NSC-plate drops the validation
    plates, a plate split holds out plates. Falls back to NSC when an NSC-plate fold would
    leave no training rows. ``columns``: ``plate=``, ``treatment=``, ``experiment=``, ``batch=``.
    """
    k = max(2, int(round(1 / fraction)))
    X = np.zeros((len(meta), 1))
    y = np.asarray(y)
    for attempt in (kind, "nsc") if kind == "nsc-plate" else (kind,):
        splitter, groups = make_splitter(attempt, meta, n_splits=k, random_state=random_state, **columns)
        if len(np.unique(groups)) < 2:
            break
        folds = [(tr, va) for tr, va in splitter.split(X, y, groups) if len(tr) and len(va)]
        if folds:  # the first fold whose inner training keeps the most classes
            return max(folds, key=lambda f: len(np.unique(y[f[0]])))
    raise ValueError(f"no inner {kind} validation split possible on {len(meta)} training rows")
