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

How the metadata reach ``split`` (the scikit-learn contract: per-row data are ``split``
arguments, never constructor arguments or state): ``groups`` is always the held-out unit
(plate, experiment or treatment id per row), as for scikit-learn's group splitters, so every
splitter works in ``cross_validate(..., groups=...)``. The second label that NSCB and NSC-plate
need is a ``split`` argument too, ``batches`` or ``plates`` (one per row), which the splitters
request by default under metadata routing, so nested cross-validation works::

    with sklearn.config_context(enable_metadata_routing=True):
        cross_val_score(
            GridSearchCV(model, grid, cv=NSCBSplit(4)),
            X,
            y,
            cv=NSCBSplit(5),
            params={"groups": treatments, "batches": batches},
        )

:func:`make_splitter` builds any of them from a metadata table and returns the ``split``
keyword arguments with it. A treatment's concentrations share its id (the treatment column), so
they leave together. ``get_n_splits`` given the same arguments counts exactly the folds
``split`` yields.

:func:`validation_split` is the inner train/validation split of an estimator used on its own
(early stopping, ensemble weights without a ``cv``): it holds out whole ``groups``.
:func:`first_fold` takes the inner split from a splitter instead, so an estimator given the
outer split's kind (``cv=NSCPlateSplit(4)``) validates on held-out treatments *and* plates.
"""

from __future__ import annotations

import inspect
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


def _per_row(values, n: int, what: str, name: str = "groups") -> np.ndarray:
    """``values`` as a 1-d array of one entry per row, or a ValueError naming what is wrong."""
    if values is None:
        raise ValueError(f"{what} needs {name} (one per row), got None")
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{what}: {name} must be 1-d with one entry per row ({n}), got shape {arr.shape}")
    if pd.isna(arr).any():
        raise ValueError(f"{what}: {name} has {int(pd.isna(arr).sum())} missing values")
    return arr


def _n_rows(X, arrays: Sequence) -> int:
    """Rows of ``X``, or of the first per-row array when ``X`` is None (``get_n_splits`` without X)."""
    if X is not None:
        return len(X)
    return next(len(a) for a in arrays if a is not None)


class GroupSplit(BaseCrossValidator):
    """Hold out whole groups: leave-one-group-out for at most ``n_splits`` groups, else ``GroupKFold``.

    Parameters
    ----------
    n_splits : int or None
        Folds (default 5); ``None`` is leave-one-group-out. Capped at the number of groups.

    Examples
    --------
    >>> import numpy as np
    >>> plates = np.repeat(["P1", "P2", "P3"], 2)
    >>> [np.unique(plates[test]).tolist() for _, test in PlateSplit(None).split(np.zeros((6, 1)), groups=plates)]
    [['P1'], ['P2'], ['P3']]
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

    def _folds(self, groups: np.ndarray, y) -> Iterator[Split]:
        n = self._n_folds(len(np.unique(groups)))
        cv = LeaveOneGroupOut() if n == len(np.unique(groups)) else GroupKFold(n_splits=n)
        for tr, te in cv.split(np.zeros(len(groups)), groups=groups):
            yield np.sort(tr), np.sort(te)

    def _split(self, X, y, groups, excluding: np.ndarray | None = None) -> Iterator[Split]:
        """Folds over ``groups``; training rows sharing an ``excluding`` value with a test row are dropped."""
        n = _n_rows(X, (groups, y))
        g = _per_row(groups, n, type(self).__name__)
        yielded = 0
        for train, test in self._folds(g, y):
            if excluding is not None:
                train = train[~np.isin(excluding[train], np.unique(excluding[test]))]
            if len(train):
                yielded += 1
                yield train, test
        if not yielded:
            raise ValueError(f"{type(self).__name__}: no fold keeps any training row; the layout allows no such split")

    def split(self, X, y=None, groups=None) -> Iterator[Split]:
        """Yield (train, test) row indices; ``groups`` (n,) is the held-out unit of each row."""
        yield from self._split(X, y, groups)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """The number of folds :meth:`split` yields for these arguments (``n_splits`` without ``groups``)."""
        if groups is None:
            return self._requested()
        return sum(1 for _ in self.split(X, y, groups))

    def _requested(self) -> int:
        if self.n_splits is None:
            raise ValueError("leave-one-group-out: the number of splits depends on groups; pass groups")
        return int(self.n_splits)

    def _iter_test_indices(self, X=None, y=None, groups=None):  # required by the ABC; split is overridden
        for _, test in self.split(X, y, groups):
            yield test


class PlateSplit(GroupSplit):
    """Held-out plates (``groups`` = plate per row): treatment recognition when treatments repeat across plates.

    Parameters
    ----------
    n_splits : int or None, default 5
        Folds, capped at the number of plates; ``None`` is leave-one-plate-out.
    """


class ExperimentSplit(GroupSplit):
    """Held-out experiments (``groups`` = experiment per row).

    Parameters
    ----------
    n_splits : int or None, default 5
        Folds, capped at the number of experiments; ``None`` is leave-one-experiment-out.
    """


class NSCSplit(GroupSplit):
    """Not-same-compound folds: ``groups`` = treatment per row; a treatment is never in train and test.

    Grouped K-fold over treatments, stratified by class when ``y`` is given (so each class
    keeps treatments in training as far as its count allows).

    Parameters
    ----------
    n_splits : int or None, default 10
        Folds, capped at the number of treatments (10 keeps large screens cheap); ``None`` is
        leave-one-treatment-out (Ljosa et al. 2013).
    random_state : int, default 0
        Seed of the stratified folds.
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


def plate_components(treatments: Sequence, plates: Sequence, ubiquitous: float = 0.5) -> np.ndarray:
    """Connected component of each row in the treatment-plate graph.

    Two plates are linked when a treatment has rows on both; a treatment belongs to the
    component of its plates. Treatments on more than ``ubiquitous`` of the plates (the
    negative control of every plate) link nothing and form their own component.

    Parameters
    ----------
    treatments, plates : sequence, shape (n,)
        Treatment and plate (or batch) of each row.
    ubiquitous : float, default 0.5
        Share of the plates above which a treatment links nothing.

    Returns
    -------
    ndarray of int, shape (n,)
        Component number of each row.
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


class NSCBSplit(NSCSplit):
    """Not same compound or batch: NSC, and training rows of any batch of the test treatments are dropped.

    ``split(X, y, groups, batches)``: ``groups`` the treatment and ``batches`` the batch of each
    row. With K folds, the folds are grouped over the connected components of the
    treatment-batch graph (:func:`plate_components` of treatments and batches), so a fold's
    test treatments take their batches with them and the other folds keep training rows.

    Parameters
    ----------
    n_splits : int or None, default 10
        Folds; ``None``: leave-one-treatment-out (Ljosa et al. 2013).
    random_state : int, default 0
        Seed of the stratified folds.

    Examples
    --------
    >>> import numpy as np
    >>> treatments = np.array(["a", "a", "b", "b", "c", "c"])
    >>> batches = np.array(["W1", "W1", "W1", "W2", "W2", "W2"])  # b straddles both: it has no fold
    >>> for train, test in NSCBSplit(None).split(np.zeros((6, 1)), groups=treatments, batches=batches):
    ...     print(np.unique(treatments[test]).tolist(), "->", batches[train].tolist())
    ['a'] -> ['W2', 'W2', 'W2']
    ['c'] -> ['W1', 'W1', 'W1']
    """

    __metadata_request__split = {"groups": True, "batches": True}

    def split(self, X, y=None, groups=None, batches=None) -> Iterator[Split]:
        """Yield (train, test) row indices; ``groups`` treatments, ``batches`` batches (n,) each."""
        n = _n_rows(X, (groups, batches, y))
        what = type(self).__name__
        batches = _per_row(batches, n, what, "batches")
        if self.n_splits is not None:
            groups = plate_components(_per_row(groups, n, what), batches).astype(str)
        yield from self._split(X, y, groups, batches)

    def get_n_splits(self, X=None, y=None, groups=None, batches=None) -> int:
        """The number of folds :meth:`split` yields for these arguments (``n_splits`` without data)."""
        if groups is None and batches is None:
            return self._requested()
        return sum(1 for _ in self.split(X, y, groups, batches))


class NSCPlateSplit(NSCSplit):
    """Held-out treatments on unseen plates: no test treatment and no test plate in training.

    ``split(X, y, groups, plates)``: ``groups`` the treatment and ``plates`` the plate of each
    row. Folds are grouped K-fold (stratified by class when ``y`` is given) over the connected
    components of the treatment-plate graph (:func:`plate_components`), so a fold's test
    treatments take their plates with them and every other treatment stays on training plates;
    training rows on a test plate (a ubiquitous control) are dropped. The layout allows this
    only when there are several components: with every treatment on every plate there is one
    (:func:`nsc_plate_feasible`).

    Parameters
    ----------
    n_splits : int or None, default 10
        Folds, capped at the number of components; ``None``: one component per fold.
    random_state : int, default 0
        Seed of the stratified folds.
    """

    __metadata_request__split = {"groups": True, "plates": True}

    def split(self, X, y=None, groups=None, plates=None) -> Iterator[Split]:
        """Yield (train, test) row indices; ``groups`` treatments, ``plates`` plates (n,) each."""
        n = _n_rows(X, (groups, plates, y))
        what = type(self).__name__
        plates = _per_row(plates, n, what, "plates")
        components = plate_components(_per_row(groups, n, what), plates).astype(str)
        yield from self._split(X, y, components, plates)

    def get_n_splits(self, X=None, y=None, groups=None, plates=None) -> int:
        """The number of folds :meth:`split` yields for these arguments (``n_splits`` without data)."""
        if groups is None and plates is None:
            return self._requested()
        return sum(1 for _ in self.split(X, y, groups, plates))


def nsc_plate_feasible(
    y: Sequence,
    treatments: Sequence,
    plates: Sequence,
    n_splits: int | None,
    min_kept: float = 0.5,
    random_state: int = 0,
) -> bool:
    """Whether NSC-plate folds keep enough training rows and every scorable class.

    Parameters
    ----------
    y : sequence, shape (n,)
        Class of each row.
    treatments, plates : sequence, shape (n,)
        Treatment and plate of each row.
    n_splits : int or None
        Folds of the :class:`NSCPlateSplit`.
    min_kept : float, default 0.5
        Share of the other rows each fold must keep in training.
    random_state : int, default 0
        Seed of the folds.

    Returns
    -------
    bool
        ``True`` when there are at least two folds, each keeps in training ``min_kept`` of the
        rows outside its test part and every class of its test rows that has >= 2 treatments,
        and every row of such a class is tested.
    """
    y, treatments, plates = (np.asarray(a).astype(str) for a in (y, treatments, plates))
    n_components = len(np.unique(plate_components(treatments, plates)))
    if n_components < 2:
        return False
    k = None if n_splits is None else min(int(n_splits), n_components)
    n_treat = pd.Series(treatments).groupby(y).nunique()
    scorable = set(n_treat.index[n_treat >= 2])
    tested = np.zeros(len(y), dtype=bool)
    n_folds = 0
    try:
        for train, test in NSCPlateSplit(k, random_state).split(None, y, treatments, plates):
            n_folds += 1
            tested[test] = True
            lost = (set(y[test]) - set(y[train])) & scorable
            if len(train) < min_kept * (len(y) - len(test)) or lost:
                return False
    except ValueError:  # no fold keeps training rows
        return False
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
) -> tuple[GroupSplit, dict[str, np.ndarray]]:
    """The splitter of ``kind`` (one of :data:`SPLITS`) for ``meta``'s rows and its ``split`` arguments.

    Parameters
    ----------
    kind : str
        One of :data:`SPLITS`.
    meta : DataFrame
        The rows' metadata.
    plate, treatment, experiment, batch : str
        Column names (``batch`` only for ``nscb``).
    n_splits : int or None
        ``None``: each splitter's default (5 group folds, 10 NSC folds); ``0``: leave one group
        (plate, experiment, treatment) out.
    random_state : int
        Seed of the stratified NSC folds.

    Returns
    -------
    splitter, params
        ``splitter.split(X, y, **params)`` gives the folds; ``params["groups"]`` is the held-out
        unit per row, and ``params`` holds ``plates`` (``nsc-plate``) or ``batches`` (``nscb``).

    Raises
    ------
    KeyError
        A column the split needs is missing (the message names the option to pass).
    ValueError
        ``kind`` is unknown, or a column the split needs has missing values.
    """
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; expected one of {', '.join(SPLITS)}")

    def column(name: str | None, what: str) -> np.ndarray:
        if name is None:
            raise KeyError(f"--split {kind} needs a {what} column: pass --{what} COLUMN")
        if name not in meta.columns:
            raise KeyError(
                f"--split {kind} needs the {what} column {name!r}, which the table lacks; pass --{what} with one of "
                f"{[c for c in meta.columns if str(c).startswith('Metadata_')]}"
            )
        if meta[name].isna().any():
            raise ValueError(
                f"--split {kind}: the {what} column {name!r} has {int(meta[name].isna().sum())} missing values"
            )
        return meta[name].astype(str).to_numpy()

    def folds(default: int) -> int | None:
        return default if n_splits is None else (None if n_splits == 0 else n_splits)

    if kind == "plate":
        return PlateSplit(folds(DEFAULT_GROUP_FOLDS)), {"groups": column(plate, "plate")}
    if kind == "experiment":
        return ExperimentSplit(folds(DEFAULT_GROUP_FOLDS)), {"groups": column(experiment, "experiment")}
    groups = column(treatment, "treatment")
    k = folds(DEFAULT_NSC_FOLDS)
    if kind == "nsc":
        return NSCSplit(k, random_state), {"groups": groups}
    if kind == "nscb":
        return NSCBSplit(k, random_state), {"groups": groups, "batches": column(batch, "batch")}
    return NSCPlateSplit(k, random_state), {"groups": groups, "plates": column(plate, "plate")}


def first_fold(cv: BaseCrossValidator, X, y, **params) -> Split | None:
    """The inner (train, validation) split a splitter gives.

    Of its folds (those with training and validation rows), the first whose training part
    keeps the most classes.

    Parameters
    ----------
    cv : BaseCrossValidator
        The splitter.
    X : array_like, shape (n, p)
        The rows.
    y : array_like, shape (n,)
        Their classes.
    **params
        ``cv.split``'s per-row arguments (``groups``, ``plates``, ``batches``); those the
        splitter does not take are ignored, so one call serves every splitter.

    Returns
    -------
    tuple of ndarray, or None
        ``(train, validation)`` row indices; ``None`` when the splitter yields no usable fold
        (too few groups, no training rows).
    """
    accepted = inspect.signature(cv.split).parameters
    kwargs = {k: v for k, v in params.items() if k in accepted and v is not None}
    y = np.asarray(y)
    try:
        folds = [(tr, va) for tr, va in cv.split(X, y, **kwargs) if len(tr) and len(va)]
    except ValueError:
        return None
    if not folds:
        return None
    return max(folds, key=lambda f: len(np.unique(y[f[0]])))


def inner_split(kind: str, meta: pd.DataFrame, y: np.ndarray, fraction: float, random_state: int, **columns) -> Split:
    """A fold of the outer split's own kind on the training rows: the inner split mirrors the outer.

    ``round(1 / fraction)`` folds (4 for 0.25), the first whose training part keeps the most
    classes (:func:`first_fold`); an NSC outer split gets an NSC inner split (no treatment in
    both inner train and validation), NSC-plate also holds out the validation plates, a plate
    split holds out plates. Falls back to NSC when no NSC-plate fold keeps training rows.

    Parameters
    ----------
    kind : str
        The outer split's kind, one of :data:`SPLITS`.
    meta : DataFrame
        Metadata of the training rows.
    y : ndarray, shape (n,)
        Their classes.
    fraction : float
        Validation share, 0-1.
    random_state : int
        Seed.
    **columns
        Column names: ``plate=``, ``treatment=``, ``experiment=``, ``batch=``.

    Returns
    -------
    tuple of ndarray
        ``(train, validation)`` row indices into ``meta``.

    Raises
    ------
    ValueError
        If no fold of that kind (nor an NSC one) is possible on these rows.
    """
    k = max(2, int(round(1 / fraction)))
    for attempt in (kind, "nsc") if kind == "nsc-plate" else (kind,):
        splitter, params = make_splitter(attempt, meta, n_splits=k, random_state=random_state, **columns)
        fold = first_fold(splitter, None, y, **params)
        if fold is not None:
            return fold
    raise ValueError(f"no inner {kind} validation split possible on {len(meta)} training rows")


def validation_split(y: np.ndarray, groups: np.ndarray | None, fraction: float, random_state: int) -> Split | None:
    """Inner train/validation row indices for early stopping and ensemble weights.

    Whole groups are held out (``GroupShuffleSplit``) when ``groups`` has at least two distinct
    values; otherwise rows are split stratified by class, or plainly at random where a class
    has one row or a part is too small to hold every class.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Classes.
    groups : ndarray, shape (n,), optional
        Group of each row (plates, treatments).
    fraction : float
        Validation share, 0-1.
    random_state : int
        Seed.

    Returns
    -------
    tuple of ndarray, or None
        ``(train, validation)`` row indices; ``None`` when no split is possible.
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
