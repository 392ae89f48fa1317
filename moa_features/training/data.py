"""Training data: the labelled, plate-normalised rows a run trains and scores on, row-aligned.

:func:`load_training_data` reads the user's columns (:class:`moa_features.columns.Columns`),
fills a missing label column from an annotation, normalises each plate against its negative
controls (:mod:`moa_features.profiling`), drops unlabelled, excluded and (``--active-only``)
inactive rows and collects the per-row arrays every fold needs (:class:`TrainingData`).
:func:`fold_data` gives a fold's view: with ``pooled`` normalisation, the control spread pooled
over the fold's training plates only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from moa_features import profiling, schema
from moa_features.columns import Columns
from moa_features.io import read_table
from moa_features.models.cnn import thumbnail_reference


@dataclass
class TrainingData:
    """Everything a fold needs, row-aligned: ``n`` labelled rows.

    ``classes`` (the sorted unique labels) is derived from ``y``.

    Parameters
    ----------
    X : ndarray of float, shape (n, p)
        Plate-normalised features.
    y : ndarray, shape (n,)
        Labels (their own type).
    plates : ndarray, shape (n,)
        Plate ids.
    treatments : ndarray, shape (n,)
        Treatment ids (the NSC unit; wells if there is no treatment column).
    profiles : ndarray, shape (n,)
        Treatment-profile keys (treatment x concentration).
    wells : ndarray, shape (n,)
        Well keys.
    meta : DataFrame
        The rows' metadata columns.
    feature_names : list of str
        The p feature columns.
    thumbs : ndarray of uint8, shape (n, S, S, C), optional
        Thumbnails.
    thumb_reference : ndarray of float32, shape (n, C), optional
        Per-plate channel reference of the embedding CNN's input in DN (``None`` without
        thumbnails or with ``normalize="none"``).
    inactive : list of str
        Treatments dropped by ``--active-only``.
    activity : DataFrame, optional
        ``--active-only``: phenotypic activity per treatment (``activity.csv``).
    normalization : str, default "none"
        The normalisation applied (``auto`` resolved).
    thumbnail_normalization : str, default "none"
        The per-plate step of the embedding CNN's input reference.
    renormalize : callable, optional
        For ``pooled``: ``renormalize(train_plates)`` -> ``(X, controls)`` with the control spread
        pooled over those plates' controls only, so a held-out plate's wells never reach a fold's
        training rows (nor the control statistics its preprocessing fits).
    columns : Columns
        The table's metadata column names and controls.
    controls : ndarray, shape (m, p), optional
        The table's negative-control rows (whether or not they are a class), normalised like X;
        the per-fold preprocessing fits its control statistics and sphering on those of the
        fold's training plates (:func:`fold_controls`).
    control_plates : ndarray, shape (m,), optional
        Their plates.
    """

    X: np.ndarray
    y: np.ndarray
    plates: np.ndarray
    treatments: np.ndarray
    profiles: np.ndarray
    wells: np.ndarray
    meta: pd.DataFrame
    feature_names: list[str]
    thumbs: np.ndarray | None = None
    thumb_reference: np.ndarray | None = None
    inactive: list[str] = field(default_factory=list)
    activity: pd.DataFrame | None = None
    normalization: str = "none"
    thumbnail_normalization: str = "none"
    renormalize: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    columns: Columns = field(default_factory=Columns)
    controls: np.ndarray | None = None
    control_plates: np.ndarray | None = None
    classes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.classes = np.unique(self.y)


def _log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def _keys(df: pd.DataFrame, columns: Sequence[str | None]) -> np.ndarray | None:
    """Row keys joined from ``columns`` (``None`` if any is missing)."""
    if any(c is None or c not in df.columns for c in columns):
        return None
    return df[list(columns)].astype(str).agg("@".join, axis=1).to_numpy()


def _well_keys(df: pd.DataFrame, plate: str) -> np.ndarray:
    """Well id per row: ``Metadata_well_id``, else plate@well, else the row itself."""
    for cols in ([schema.WELL_ID], [plate, schema.WELL]):
        keys = _keys(df, cols)
        if keys is not None:
            return keys
    return np.arange(len(df)).astype(str)


def _fill_labels(df: pd.DataFrame, table_path: Path, label: str, annotation: str | Path | None) -> pd.DataFrame:
    """Fill a missing label column from a treatment -> MoA annotation table, or explain what is needed."""
    if label in df.columns:
        return df
    if schema.TREATMENT not in df.columns:
        raise KeyError(
            f"{table_path}: label column {label!r} is missing and there is no {schema.TREATMENT} "
            f"column to annotate from; pass --label with one of {schema.metadata_columns(df.columns)}"
        )
    if annotation is None:
        sidecar = schema.sidecar_paths(table_path)["annotation"]
        if not sidecar.exists():
            raise KeyError(
                f"{table_path}: label column {label!r} is missing; annotate the treatments first "
                f"(moa-features annotate) and pass --annotation treatment_moa.csv"
            )
        annotation = sidecar
    from moa_features.annotate import apply_annotation

    _log(f"filling {label} from the annotation {annotation}")
    out = apply_annotation(df, read_table(annotation))
    if label not in out.columns:
        raise KeyError(f"annotation {annotation} did not produce the label column {label!r}")
    return out


def drop_inactive(
    df: pd.DataFrame,
    treatment: str,
    plate: str,
    control: np.ndarray,
    seed: int = 0,
    profiles: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Keep controls and phenotypically active treatments only (``--active-only``).

    Returns the kept rows, the dropped treatments and the activity table (one row per treatment).

    Activity comes from :func:`moa_features.activity.phenotypic_activity` (copairs mAP of
    each treatment's replicates against negative controls, corrected p-value; column
    ``active``), computed on ``profiles`` (default ``df``; row-aligned with it: the table
    normalised per plate against its controls, as ``moa-features activity`` does) before labels
    are excluded.
    """
    try:
        from moa_features.activity import phenotypic_activity
    except ImportError as err:
        raise ValueError(
            "--active-only needs moa_features.activity (phenotypic activity with copairs), "
            f"which this installation lacks: {err}"
        ) from err
    profiles = df if profiles is None else profiles
    activity = phenotypic_activity(profiles, treatment=treatment, plate=plate, control=control, seed=seed)
    inactive = set(activity.loc[~activity["active"].astype(bool), "treatment"].astype(str))
    keys = [_keys(df, [treatment]), _keys(df, [treatment, schema.CONCENTRATION])]  # name or name@concentration
    drop = np.any([np.isin(k, list(inactive)) for k in keys if k is not None], axis=0) & ~np.asarray(
        control, dtype=bool
    )
    return df.loc[~drop], sorted(inactive), activity


def load_training_data(
    table: pd.DataFrame,
    *,
    table_path: Path = Path("<table>"),
    thumbs: np.ndarray | None = None,
    columns: Columns | None = None,
    normalize: str = profiling.DEFAULT_NORMALIZATION,
    exclude_labels: Sequence[str] = (),
    annotation: str | Path | None = None,
    active_only: bool = False,
    seed: int = 0,
    plate_step: bool = True,
) -> TrainingData:
    """Normalise per plate, drop unlabelled, inactive (``active_only``) and excluded rows, collect the arrays.

    Controls are used for normalisation whether or not they are a class (``exclude_labels``
    removes classes after normalisation).

    Parameters
    ----------
    table : DataFrame
        Per-site (or per-well) feature table.
    table_path : Path, default Path("<table>")
        The table's file, for messages.
    thumbs : ndarray of uint8, shape (N, S, S, C), optional
        Thumbnails, row-aligned with ``table``.
    columns : Columns, optional
        The plate, treatment and label columns and the negative controls
        (:meth:`Columns.controls`); default :class:`~moa_features.columns.Columns`.
    normalize : str, default profiling.DEFAULT_NORMALIZATION
        One of :data:`moa_features.profiling.NORMALIZATIONS`.
    exclude_labels : sequence of str, default ()
        Classes left out.
    annotation : str or Path, optional
        A treatment -> MoA table to label the rows with.
    active_only : bool, default False
        Drop treatments that are not phenotypically active (:mod:`moa_features.activity`).
    seed : int, default 0
        Seed of the activity test.
    plate_step : bool, default True
        ``False``: ``normalize="auto"`` leaves the features as they are (the per-fold recipe
        normalises against the training plates' controls and spheres;
        :class:`~moa_features.models.preprocessing.ProfilePreprocessor`); the thumbnails'
        reference still follows ``auto``.

    Returns
    -------
    TrainingData

    Raises
    ------
    KeyError
        If a needed column is missing.
    TypeError
        If a feature column is not numeric.
    ValueError
        If there are no feature columns, the thumbnails are not row-aligned, or fewer than 2
        classes remain.
    """
    columns = columns or Columns()
    label, group, treatment = columns.label, columns.plate, columns.treatment
    df = _fill_labels(table.reset_index(drop=True), table_path, label, annotation)
    if group not in df.columns:
        raise KeyError(
            f"{table_path}: plate column {group!r} not found; pass --plate with one of "
            f"{schema.metadata_columns(df.columns)}"
        )
    features = schema.feature_columns(df.columns)
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise TypeError(
            f"{table_path}: non-numeric feature column(s) {bad[:5]}; metadata columns must start with "
            f"{schema.METADATA_PREFIX!r}"
        )
    if not features:
        raise ValueError(f"{table_path}: no feature columns (every column starts with {schema.METADATA_PREFIX!r})")
    if thumbs is not None and len(thumbs) != len(df):
        raise ValueError(
            f"thumbnails have {len(thumbs)} rows but the table {table_path} has {len(df)}; "
            "they must be row-aligned (written together by extract)"
        )
    raw = df[features].to_numpy(dtype=np.float64)
    table_method = "none" if normalize == "auto" and not plate_step else normalize
    control_rows = columns.controls(df)
    done = profiling.normalize_table(df, table_method, plate=group, control=control_rows, features=features)
    # --active-only: activity on the table normalised as `moa-features activity` does (per plate,
    # against its controls), even when the features themselves are normalised per fold
    activity_table = None
    if active_only and table_method != normalize:
        activity_table = profiling.normalize_table(
            df, normalize, plate=group, control=control_rows, features=features
        ).table
    thumb_method = done.method
    if thumbs is not None and table_method != normalize:
        thumb_method = profiling.resolve_normalization(df, normalize, control_rows, plate_col=group, features=features)
    df, control = done.table, done.control
    _log(f"normalisation: {done.method} ({done.note})")
    reference = None
    if thumbs is not None:
        reference = thumbnail_reference(thumbs, df[group].astype(str).to_numpy(), control, thumb_method)
    control_X = df.loc[np.asarray(control, bool), features].to_numpy(dtype=np.float64)
    control_plates = df.loc[np.asarray(control, bool), group].astype(str).to_numpy()
    keep = df[label].notna().to_numpy().copy()
    if (~keep).any():
        _log(f"dropping {int((~keep).sum())} rows with no {label}")
    dropped: list[str] = []
    activity = None
    if active_only:
        if treatment is None or treatment not in df.columns:
            raise KeyError(f"{table_path}: --active-only needs the treatment column {treatment!r}")
        kept, dropped, activity = drop_inactive(df, treatment, group, control, seed, profiles=activity_table)
        keep &= df.index.isin(kept.index)
        _log(f"--active-only: dropped {len(dropped)} inactive treatment(s)")
    excluded = df[label].astype(str).isin([str(v) for v in exclude_labels]).to_numpy()
    if excluded.any():
        _log(f"excluding {int(excluded.sum())} rows labelled {sorted(set(exclude_labels))}")
    keep &= ~excluded
    rows = np.flatnonzero(keep)
    renormalize = None
    if done.method == "pooled":
        renormalize = _pooled_renormalizer(raw, df[group].astype(str).to_numpy(), np.asarray(control, bool), rows)
    df = df.iloc[rows].reset_index(drop=True)
    y = df[label].to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"{table_path}: need at least 2 classes in {label!r} after exclusions, got {np.unique(y).tolist()}"
        )
    wells = _well_keys(df, group)
    treatments = _keys(df, [treatment])
    profiles = _keys(df, [treatment, schema.CONCENTRATION]) if schema.CONCENTRATION in df.columns else treatments
    return TrainingData(
        X=df[features].to_numpy(dtype=np.float64),
        y=y,
        plates=df[group].astype(str).to_numpy(),
        treatments=wells if treatments is None else treatments,
        profiles=wells if profiles is None else profiles,
        wells=wells,
        meta=df[schema.metadata_columns(df.columns)],
        feature_names=list(features),
        thumbs=None if thumbs is None else np.asarray(thumbs[rows]),
        thumb_reference=None if reference is None else reference[rows],
        inactive=dropped,
        activity=activity,
        normalization=done.method,
        thumbnail_normalization=thumb_method,
        renormalize=renormalize,
        columns=columns,
        controls=control_X if len(control_X) else None,
        control_plates=control_plates if len(control_X) else None,
    )


def _pooled_renormalizer(
    raw: np.ndarray, plates: np.ndarray, control: np.ndarray, rows: np.ndarray
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``pooled`` normalisation with the pooled spread learned from the given training plates' controls.

    raw: (N, p) features of every table row before normalisation; plates, control: (N,);
    rows: the kept (labelled) rows. Each plate keeps its own control centre and spread. The
    function returns the kept rows and the control rows, both normalised so.
    """

    def renormalize(train_plates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reference = control & np.isin(plates, np.unique(train_plates))
        pooled = profiling.pooled_control_spread(raw, plates, reference)
        center, spread = profiling.plate_statistics(raw, plates, control, profiling.SPREAD_SHRINKAGE, pooled)
        normalised = (raw - center) / spread
        return normalised[rows], normalised[control]

    return renormalize


def fold_controls(data: TrainingData, plates: np.ndarray) -> np.ndarray | None:
    """(m, p) negative-control rows on ``plates`` (a fold's training plates), or ``None`` when there are none."""
    if data.controls is None:
        return None
    rows = np.isin(data.control_plates, np.unique(np.asarray(plates).astype(str)))
    return data.controls[rows] if rows.any() else None


def fold_data(data: TrainingData, train: np.ndarray) -> TrainingData:
    """``data`` as a fold sees it: with ``pooled`` normalisation, the spread pooled over its training plates only.

    Parameters
    ----------
    data : TrainingData
        The labelled rows (:func:`load_training_data`).
    train : ndarray of int
        The fold's training rows.

    Returns
    -------
    TrainingData
        ``data`` itself, or a copy with ``X`` and ``controls`` renormalised.
    """
    if data.renormalize is None:
        return data
    X, controls = data.renormalize(data.plates[train])
    return replace(data, X=X, controls=controls if data.controls is not None else None)
