"""Which question a run answers: the outer folds and the inner split that mirrors them.

:func:`resolve_split` turns ``--split auto`` into a held-out-treatment split where the table
allows one (``nsc-plate``, else ``nsc``) and a plate split otherwise; :func:`default_folds` picks
leave-one-treatment-out for small table-only runs; :func:`outer_folds` gives the folds and the
``split`` arguments (:func:`moa_features.models.splits.make_splitter`); :func:`inner_cv` gives the
splitter of the outer split's own kind that every model's inner validation uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moa_features.models import registry, splits
from moa_features.training.data import TrainingData

INNER_FRACTION = 0.25  # share of the training rows in the inner validation split (first of 4 folds)
LOO_MAX_TREATMENTS = 120  # held-out-treatment runs of table models leave one treatment out up to this size


def resolve_split(split: str, data: TrainingData, n_splits: int | None, seed: int = 0) -> str:
    """The split a run uses: ``auto`` resolved, other kinds unchanged.

    ``auto`` -> ``nsc-plate`` where the layout allows
    (:func:`~moa_features.models.splits.nsc_plate_feasible`), else ``nsc``, when the table
    has a treatment column with at least 2 treatments; ``plate`` otherwise.

    Parameters
    ----------
    split : str
        ``auto`` or one of :data:`moa_features.models.splits.SPLITS`.
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    n_splits : int or None
        Outer folds.
    seed : int, default 0
        Seed of the folds.

    Returns
    -------
    str
        One of :data:`moa_features.models.splits.SPLITS`.
    """
    if split != "auto":
        return split
    if data.columns.treatment not in data.meta.columns or len(np.unique(data.treatments)) < 2:
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


def split_columns(data: TrainingData) -> dict[str, str | None]:
    """The column names :func:`~moa_features.models.splits.make_splitter` reads, from the run's columns."""
    c = data.columns
    return {"plate": c.plate, "treatment": c.treatment, "experiment": c.experiment, "batch": c.batch}


def outer_folds(
    data: TrainingData, kind: str, n_splits: int | None, seed: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """The (train, test) folds of split ``kind`` and its ``split`` arguments.

    Parameters
    ----------
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    kind : str
        One of :data:`moa_features.models.splits.SPLITS`.
    n_splits : int or None
        Folds (``None``: the splitter's default; ``0``: leave one group out).
    seed : int, default 0
        Seed of the folds.

    Returns
    -------
    folds : list of tuple of ndarray
        ``(train, test)`` row indices.
    params : dict of str to ndarray
        The per-row ``split`` arguments: ``groups`` (the held-out unit), ``plates`` or
        ``batches``.

    Raises
    ------
    ValueError
        If the split gives fewer than 2 usable folds.
    """
    splitter, params = splits.make_splitter(
        kind, data.meta, n_splits=n_splits, random_state=seed, **split_columns(data)
    )
    folds = list(splitter.split(data.X, data.y, **params))
    if len(folds) < 2:
        raise ValueError(f"--split {kind} gives {len(folds)} usable fold(s); need at least 2")
    return folds, params


def inner_cv(kind: str, seed: int = 0) -> splits.GroupSplit:
    """The splitter of the inner validation (early stopping, epoch budgets, ensemble weights): the outer
    split's own kind with ``round(1 / INNER_FRACTION)`` folds, so an ``nsc-plate`` run validates on
    held-out treatments *and* plates. Use its first fold (:func:`~moa_features.models.splits.first_fold`)."""
    k = max(2, int(round(1 / INNER_FRACTION)))
    return {
        "plate": splits.PlateSplit(k),
        "experiment": splits.ExperimentSplit(k),
        "nsc": splits.NSCSplit(k, seed),
        "nscb": splits.NSCBSplit(k, seed),
        "nsc-plate": splits.NSCPlateSplit(k, seed),
    }[kind]
