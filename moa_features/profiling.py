"""Profile operations on feature tables: plate normalisation, consensus profiles, effect sizes.

All functions take and return pandas DataFrames that follow the ``Metadata_`` convention
(see :mod:`moa_features.schema`); feature columns are every non-``Metadata_`` column.

Plate normalisation (:func:`normalize_table`, the one entry point train, predict, the report
and the app share) is a robust z-score per plate, ``(x - centre) / spread``:

- ``controls``: centre and spread (1.4826 * MAD) of the plate's negative-control wells;
- ``plate``: the same over all the plate's wells;
- ``pooled`` (what ``auto`` chooses when every plate has controls): the centre of the plate's
  controls, and a spread shrunk from the plate's own control spread toward the spread pooled
  over every plate's control wells (deviations from their own plate's centre), with a weight
  of :data:`SPREAD_SHRINKAGE` pseudo-wells: ``sqrt((m s_plate**2 + k s_pooled**2) / (m + k))``.
  A plate with 6 controls (BBBC021) gets mostly the pooled spread, a plate with hundreds
  (RxRx) keeps its own. A spread from a handful of wells is noisy (sometimes ~0), which
  costs treatment accuracy on BBBC021's raw well means (``benchmarks/results_bbbc021.md``).

``controls`` and ``plate`` use nothing but the plate's own wells, so a held-out plate changes
nothing on the others. ``pooled`` shares one statistic across plates: the spread of control
wells (never a treated well, never a label). A run that holds out plates and wants the strict
guarantee fits the pooled spread on its training plates (``pooled_spread=`` from
:func:`pooled_control_spread` of those rows) or uses ``controls``; a new table is normalised
with the pooled spread saved by the run (:attr:`NormalizedTable.pooled_spread`).

No statistic comes from labels or from treatment wells when normalising against controls, so
the transform leaks nothing of a held-out treatment. :func:`looks_normalized` detects a table
that has already been normalised (e.g. by pycytominer) so it is not normalised twice.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.columns import control_mask

NORMALIZATIONS = ("auto", "pooled", "controls", "plate", "none")
DEFAULT_NORMALIZATION = "auto"
SPREAD_SHRINKAGE = 20.0  # pseudo-wells of the pooled spread added to each plate's own spread
# A table counts as already normalised when, for one reference (controls or all wells, per plate
# or overall), at least NORMALIZED_FRACTION of its features have |median| <= NORMALIZED_CENTER
# and a robust spread within NORMALIZED_SPREAD.
NORMALIZED_CENTER = 0.25
NORMALIZED_SPREAD = (2 / 3, 1.5)
NORMALIZED_FRACTION = 0.8


class AlreadyNormalizedWarning(UserWarning):
    """The table's features are already centred at 0 with unit robust spread."""


def is_control(df: pd.DataFrame, moa_col: str = schema.MOA, treatment_col: str = schema.TREATMENT) -> pd.Series:
    """Boolean mask of negative-control rows by the standard rule (:data:`moa_features.columns.CONTROL_RULE`).

    Parameters
    ----------
    df : DataFrame
        The table.
    moa_col : str, default schema.MOA
        Column of the mechanism labels.
    treatment_col : str, default schema.TREATMENT
        Column of the treatment names.

    Returns
    -------
    Series of bool, index of ``df``
        True on negative-control rows.
    """
    return pd.Series(control_mask(df, treatment=treatment_col, label=moa_col), index=df.index)


MAD_NORMAL = 0.6744897501960817  # the normal quantile 0.75: MAD / MAD_NORMAL estimates the SD (scipy's scale="normal")


def _column_medians(a: np.ndarray) -> np.ndarray:
    """Median of each column of ``a`` (n, p) over its non-NaN values, exactly as ``np.median`` of that
    column without its NaNs (the middle value, or the mean of the two middle ones); NaN for an all-NaN column."""
    if len(a) == 0:
        return np.full(a.shape[1], np.nan)
    s = np.sort(a, axis=0)  # NaNs last
    n = (~np.isnan(a)).sum(axis=0)
    cols = np.arange(a.shape[1])
    hi = s[np.minimum(n // 2, len(a) - 1), cols]
    lo = s[np.maximum((n - 1) // 2, 0), cols]
    out = np.where(n % 2 == 1, hi, (lo + hi) / 2)
    return np.where(n > 0, out, np.nan)


def _nan_mad(a: np.ndarray) -> np.ndarray:
    """Median absolute deviation of each column over its non-NaN values: ``median(|x - median(x)|)``,
    equal to ``scipy.stats.median_abs_deviation(a, axis=0, nan_policy="omit")`` without its per-column loop."""
    return _column_medians(np.abs(a - _column_medians(a)))


def robust_scale(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread per column, NaNs ignored.

    The spread is 1.4826 * MAD (:func:`scipy.stats.median_abs_deviation` with
    ``scale="normal"``). Where it is 0 (a feature constant in most reference rows) the standard
    deviation is used; where that is 0 too the spread is 1, so the feature becomes
    ``x - median``.

    Parameters
    ----------
    ref : ndarray, shape (n, p)
        Reference rows.

    Returns
    -------
    center : ndarray of float64, shape (p,)
        Medians, in the features' units.
    spread : ndarray of float64, shape (p,)
        Robust spreads (> 0), in the features' units.

    Examples
    --------
    >>> import numpy as np
    >>> center, spread = robust_scale(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [100.0, 5.0]]))
    >>> center.tolist(), spread.round(4).tolist()  # the outlier moves neither; a constant feature gets 1
    ([3.0, 5.0], [1.4826, 1.0])
    """
    ref = np.asarray(ref, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        center = _column_medians(ref)
        spread = _nan_mad(ref) / MAD_NORMAL
        sd = np.nanstd(ref, axis=0)
    spread = np.where((spread > 0) & np.isfinite(spread), spread, sd)
    spread = np.where((spread > 0) & np.isfinite(spread), spread, 1.0)
    return center, spread


def _reference_rows(method: str, plate_rows: np.ndarray, control: np.ndarray, plate: object) -> np.ndarray:
    """The rows of one plate its statistics come from (its controls, or all its rows for ``plate``)."""
    if method == "plate":
        return plate_rows
    ref = plate_rows[control[plate_rows]]
    if len(ref) == 0:
        raise ValueError(
            f"plate {plate!r} has no negative-control rows to normalize against; "
            "use --normalize plate, or check the treatment/MoA columns"
        )
    return ref


def _plate_groups(plates: np.ndarray) -> tuple[np.ndarray, int]:
    codes = pd.factorize(pd.Series(plates), sort=False)[0]
    return codes, int(codes.max()) + 1 if len(codes) else 0


def pooled_control_spread(values: np.ndarray, plates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Robust spread of the ``reference`` rows' deviations from their own plate's median.

    Parameters
    ----------
    values : ndarray, shape (n, p)
        Features.
    plates : ndarray, shape (n,)
        Plate of each row.
    reference : ndarray of bool, shape (n,)
        Rows pooled (e.g. the controls of the training plates); a plate without reference rows
        contributes nothing.

    Returns
    -------
    ndarray of float64, shape (p,)
        The pooled spread, in the features' units.

    Raises
    ------
    ValueError
        If there is no reference row.
    """
    codes, n_plates = _plate_groups(plates)
    deviations = []
    for k in range(n_plates):
        ref = np.flatnonzero((codes == k) & reference)
        if len(ref):
            deviations.append(values[ref] - robust_scale(values[ref])[0])
    if not deviations:
        raise ValueError("no reference (negative-control) rows to pool a spread from")
    return robust_scale(np.vstack(deviations))[1]


def plate_statistics(
    values: np.ndarray,
    plates: np.ndarray,
    reference: np.ndarray,
    shrinkage: float = 0.0,
    pooled_spread: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row centre and spread of each row's plate, from the plate's ``reference`` rows.

    Centre: the plate's reference median. Spread: the plate's own robust spread, or with
    ``shrinkage = k > 0`` ``sqrt((m * s_plate**2 + k * s_pooled**2) / (m + k))``, ``m`` the
    plate's reference rows (0 when it has one).

    Parameters
    ----------
    values : ndarray, shape (n, p)
        Features.
    plates : ndarray, shape (n,)
        Plate of each row.
    reference : ndarray of bool, shape (n,)
        The rows the statistics come from (every plate needs at least one).
    shrinkage : float, default 0.0
        ``k``, in pseudo-rows of the pooled spread.
    pooled_spread : ndarray, shape (p,), optional
        ``s_pooled`` (default :func:`pooled_control_spread` of ``reference``).

    Returns
    -------
    centers : ndarray of float64, shape (n, p)
        Each row's plate centre.
    spreads : ndarray of float64, shape (n, p)
        Each row's plate spread.
    """
    codes, n_plates = _plate_groups(plates)
    centers = np.empty((n_plates, values.shape[1]))
    spreads = np.empty_like(centers)
    counts = np.zeros(n_plates)
    for k in range(n_plates):
        ref = np.flatnonzero((codes == k) & reference)
        centers[k], spreads[k] = robust_scale(values[ref])
        counts[k] = len(ref) if len(ref) > 1 else 0  # one row has no spread of its own
    if shrinkage > 0:
        pooled = pooled_control_spread(values, plates, reference) if pooled_spread is None else pooled_spread
        spreads = np.sqrt((counts[:, None] * spreads**2 + shrinkage * pooled**2) / (counts[:, None] + shrinkage))
    return centers[codes], spreads[codes]


def normalize(
    df: pd.DataFrame,
    method: str = "controls",
    plate_col: str = schema.PLATE,
    control: pd.Series | None = None,
    features: Sequence[str] | None = None,
    pooled_spread: np.ndarray | None = None,
) -> pd.DataFrame:
    """Robust z-score of every feature within each plate (see the module docstring).

    Warns (:class:`AlreadyNormalizedWarning`) when the table looks normalised already.

    Parameters
    ----------
    df : DataFrame
        Feature table, one row per site or well.
    method : {"controls", "plate", "pooled", "none", "auto"}, default "controls"
        Reference: ``controls`` the plate's negative-control rows, ``plate`` all rows of the
        plate, ``pooled`` the controls with their spread shrunk toward the pooled control
        spread, ``none`` a copy, ``auto`` as :func:`resolve_normalization` chooses.
    plate_col : str, default schema.PLATE
        Plate column.
    control : Series of bool, optional
        Control rows (default :func:`is_control`).
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).
    pooled_spread : ndarray, shape (p,), optional
        The pooled spread of ``pooled`` (default: from this table's controls).

    Returns
    -------
    DataFrame
        A new table, features unitless (robust z-scores); metadata unchanged.

    Raises
    ------
    ValueError
        If ``method`` is unknown.
    KeyError
        If the plate column is missing.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {method!r}; expected one of {', '.join(NORMALIZATIONS)}")
    if method == "none":
        return df.copy()
    if plate_col not in df.columns:
        raise KeyError(f"normalization needs the plate column {plate_col!r}, which the table lacks")
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    control = np.asarray(is_control(df) if control is None else control, dtype=bool)
    method = resolve_normalization(df, method, control, plate_col=plate_col, features=features)
    return _apply(df, method, plate_col, control, features, pooled_spread)[0]


def _apply(
    df: pd.DataFrame,
    method: str,
    plate_col: str,
    control: np.ndarray,
    features: list[str],
    pooled_spread: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """:func:`normalize` with a resolved ``method``; also the pooled spread used (``pooled`` only)."""
    if method == "none":
        return df.copy(), None
    values = df[features].to_numpy(dtype=np.float64)
    plates = df[plate_col].to_numpy()
    reference = np.zeros(len(df), dtype=bool)
    for plate, idx in df.groupby(plate_col, sort=False).indices.items():
        reference[_reference_rows(method, idx, control, plate)] = True
    pooled = None
    if method == "pooled":
        pooled = pooled_control_spread(values, plates, reference) if pooled_spread is None else pooled_spread
        if len(pooled) != len(features):
            raise ValueError(f"pooled_spread has {len(pooled)} values for {len(features)} features")
    center, spread = plate_statistics(
        values, plates, reference, SPREAD_SHRINKAGE if pooled is not None else 0.0, pooled
    )
    scaled = pd.DataFrame((values - center) / spread, columns=features, index=df.index)
    return pd.concat([df.drop(columns=features), scaled], axis=1)[list(df.columns)], pooled


def looks_normalized(
    df: pd.DataFrame,
    control: np.ndarray | pd.Series,
    plate_col: str = schema.PLATE,
    features: Sequence[str] | None = None,
) -> str | None:
    """Which reference the table is already centred on with unit robust spread, if any.

    References tried: the negative controls of each plate, all wells of each plate, all
    controls, all wells (at least 3 rows each). A reference matches when at least
    :data:`NORMALIZED_FRACTION` of the features have ``|median| <= NORMALIZED_CENTER`` and a
    1.4826 * MAD within :data:`NORMALIZED_SPREAD` (per-plate references: the median over plates
    of each).

    Parameters
    ----------
    df : DataFrame
        Feature table.
    control : array_like of bool, shape (n,)
        Negative-control rows.
    plate_col : str, default schema.PLATE
        Plate column (absent: one plate).
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).

    Returns
    -------
    str or None
        The matching reference, in words (``"each plate's negative controls"``, ...), or
        ``None``.
    """
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    if not features:
        return None
    values = df[features].to_numpy(dtype=np.float64)
    control = np.asarray(control, dtype=bool)
    everything = np.ones(len(df), dtype=bool)
    plates = df[plate_col].to_numpy() if plate_col in df.columns else np.zeros(len(df))
    for name, rows, per_plate in (
        ("each plate's negative controls", control, True),
        ("each plate's wells", everything, True),
        ("the negative controls", control, False),
        ("all wells", everything, False),
    ):
        centers, spreads = [], []
        groups = pd.Series(plates).groupby(plates, sort=False).indices.values() if per_plate else [np.arange(len(df))]
        for idx in groups:
            ref = idx[rows[idx]]
            if len(ref) >= 3:
                c, s = robust_scale(values[ref])
                centers.append(c)
                spreads.append(s)
        if not centers:
            continue
        c, s = np.median(centers, axis=0), np.median(spreads, axis=0)
        ok = (np.abs(c) <= NORMALIZED_CENTER) & (s >= NORMALIZED_SPREAD[0]) & (s <= NORMALIZED_SPREAD[1])
        if ok.mean() >= NORMALIZED_FRACTION:
            return name
    return None


def resolve_normalization(
    df: pd.DataFrame,
    method: str,
    control: np.ndarray | pd.Series,
    plate_col: str = schema.PLATE,
    features: Sequence[str] | None = None,
) -> str:
    """The normalisation to apply: ``auto`` becomes ``none``, ``pooled`` or ``plate``.

    ``auto``: ``none`` when :func:`looks_normalized` finds the table normalised already (with a
    warning), else ``pooled`` when every plate has negative controls, else ``plate`` (with a
    warning). An explicit ``pooled``, ``controls`` or ``plate`` on an already-normalised table
    is kept but warned about (:class:`AlreadyNormalizedWarning`, which tells the user to pass
    ``--normalize none``).

    Parameters
    ----------
    df : DataFrame
        Feature table.
    method : str
        One of :data:`NORMALIZATIONS`.
    control : array_like of bool, shape (n,)
        Negative-control rows.
    plate_col : str, default schema.PLATE
        Plate column.
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).

    Returns
    -------
    str
        ``none``, ``pooled``, ``controls`` or ``plate``.

    Raises
    ------
    ValueError
        If ``method`` is unknown.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {method!r}; expected one of {', '.join(NORMALIZATIONS)}")
    if method == "none":
        return method
    done = looks_normalized(df, control, plate_col=plate_col, features=features)
    if done is not None:
        if method == "auto":
            warnings.warn(
                f"features are already centred at 0 with unit robust spread over {done}; not normalising "
                "again (--normalize auto chose none)",
                AlreadyNormalizedWarning,
                stacklevel=3,
            )
            return "none"
        warnings.warn(
            f"features are already centred at 0 with unit robust spread over {done}: the table looks "
            f"normalised already; pass --normalize none (or auto) to avoid normalising it twice",
            AlreadyNormalizedWarning,
            stacklevel=3,
        )
        return method
    if method == "auto":
        control = np.asarray(control, dtype=bool)
        if plate_col in df.columns and pd.Series(control).groupby(df[plate_col].to_numpy()).any().all():
            return "pooled"
        warnings.warn(
            "not every plate has negative-control rows; normalising against all wells of each plate "
            "(--normalize auto chose plate)",
            UserWarning,
            stacklevel=3,
        )
        return "plate"
    return method


@dataclass
class NormalizedTable:
    """Result of :func:`normalize_table`.

    Parameters
    ----------
    table : DataFrame
        The normalised table.
    method : str
        The method applied (``auto`` resolved).
    control : ndarray of bool, shape (n,)
        The negative-control rows.
    note : str
        One line for reports.
    pooled_spread : ndarray, shape (p,), optional
        For ``pooled``: the pooled spread, to normalise new tables the same way.
    """

    table: pd.DataFrame
    method: str
    control: np.ndarray
    note: str
    pooled_spread: np.ndarray | None = None


NOTES = {
    "pooled": "Normalised per plate: robust z-score against the plate's negative-control wells, the spread "
    "shrunk toward the spread pooled over every plate's controls.",
    "controls": "Normalised per plate: robust z-score against the plate's negative-control wells.",
    "plate": "Normalised per plate: robust z-score against all of the plate's wells.",
    "none": "Not normalised (the table is used as given).",
}


def normalize_table(
    df: pd.DataFrame,
    method: str = DEFAULT_NORMALIZATION,
    *,
    plate: str = schema.PLATE,
    control: np.ndarray | None = None,
    features: Sequence[str] | None = None,
    pooled_spread: np.ndarray | None = None,
) -> NormalizedTable:
    """Choose the normalisation and apply it against the controls: the one call every stage makes.

    The resolved method (and pooled spread) is returned so a run can record it and normalise
    new data the same way.

    Parameters
    ----------
    df : DataFrame
        Feature table.
    method : str, default DEFAULT_NORMALIZATION
        As in :func:`normalize`.
    plate : str, default schema.PLATE
        Plate column.
    control : ndarray of bool, shape (n,), optional
        Negative-control rows (default: the standard rule,
        :func:`moa_features.columns.control_mask`; commands pass :meth:`Columns.controls
        <moa_features.columns.Columns.controls>` of the user's ``--control``).
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).
    pooled_spread : ndarray, shape (p,), optional
        As in :func:`normalize`.

    Returns
    -------
    NormalizedTable

    Raises
    ------
    ValueError
        If ``control`` does not have one entry per row.
    KeyError
        If the plate column is missing (and ``method`` is not ``none``).
    """
    control = control_mask(df) if control is None else np.asarray(control, dtype=bool)
    if len(control) != len(df):
        raise ValueError(f"control mask has {len(control)} entries for {len(df)} rows")
    if method != "none" and plate not in df.columns:
        raise KeyError(
            f"normalization needs the plate column {plate!r}, which the table lacks; "
            f"pass --normalize none or name the plate column"
        )
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    resolved = resolve_normalization(df, method, control, plate_col=plate, features=features)
    out, pooled = _apply(df, resolved, plate, control, features, pooled_spread)
    return NormalizedTable(out, resolved, control, NOTES[resolved], pooled)


def sphere(
    df: pd.DataFrame, control: np.ndarray | pd.Series, features: Sequence[str] | None = None, epsilon: float = 0.1
) -> pd.DataFrame:
    """Typical-variation normalisation (Ando et al. 2017): ZCA whitening fitted on control rows only.

    ``W = U diag(1 / sqrt(lambda + epsilon)) U^T`` from the eigendecomposition of the control
    rows' covariance; every row becomes ``(x - mean_control) W``, so the controls' variation is
    spherical and features that co-vary in untreated cells stop counting twice. Missing values
    take the control median.

    Parameters
    ----------
    df : DataFrame
        Feature table.
    control : array_like of bool, shape (n,)
        Negative-control rows (at least 2).
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).
    epsilon : float, default 0.1
        Regularises directions the controls barely span (there are fewer control wells than
        features on BBBC021).

    Returns
    -------
    DataFrame
        A new table, same columns and order; features whitened.

    Raises
    ------
    ValueError
        If there are fewer than 2 control rows.
    """
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    control = np.asarray(control, dtype=bool)
    if control.sum() < 2:
        raise ValueError(f"sphering needs at least 2 negative-control rows, got {int(control.sum())}")
    values = np.array(df[features].to_numpy(dtype=np.float64))
    values[~np.isfinite(values)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nan_to_num(np.nanmedian(values[control], axis=0))
    values = np.where(np.isnan(values), fill, values)
    ref = values[control]
    mean = ref.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov(ref - mean, rowvar=False).reshape(len(features), len(features)))
    whiten = (eigvec / np.sqrt(np.clip(eigval, 0, None) + epsilon)) @ eigvec.T
    sphered = pd.DataFrame((values - mean) @ whiten, columns=features, index=df.index)
    return pd.concat([df.drop(columns=features), sphered], axis=1)[list(df.columns)]


def well_profiles(
    df: pd.DataFrame, keys: Sequence[str] = (schema.PLATE, schema.WELL), features: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per well: the median of each feature over the well's rows (sites or cells).

    Parameters
    ----------
    df : DataFrame
        Feature table.
    keys : sequence of str, default (schema.PLATE, schema.WELL)
        Columns naming a well.
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).

    Returns
    -------
    DataFrame
        The ``keys``, the metadata columns constant within every well, ``Metadata_n_sites``
        (rows per well) and the features. A table without the ``keys``, or already one row per
        well, is returned unchanged (with a fresh index).
    """
    keys = list(keys)
    if not set(keys) <= set(df.columns):
        return df.reset_index(drop=True)
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    grouped = df.groupby(keys, sort=False, dropna=False)
    if grouped.ngroups == len(df):
        return df.reset_index(drop=True)
    meta_cols = [c for c in schema.metadata_columns(df.columns) if c not in keys]
    constant = [c for c in meta_cols if (grouped[c].nunique(dropna=False) <= 1).all()]
    meta = grouped[constant].first()
    meta["Metadata_n_sites"] = grouped.size()
    return pd.concat([meta, grouped[features].median()], axis=1).reset_index()


def consensus_profiles(
    df: pd.DataFrame,
    by: Sequence[str],
    features: Sequence[str] | None = None,
    well_keys: Sequence[str] = (schema.PLATE, schema.WELL),
) -> pd.DataFrame:
    """Consensus profile per ``by`` group (Ljosa et al. 2013): well medians, then their median.

    Parameters
    ----------
    df : DataFrame
        Feature table (sites or wells).
    by : sequence of str
        Columns of the groups (e.g. treatment and concentration).
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).
    well_keys : sequence of str, default (schema.PLATE, schema.WELL)
        Columns naming a well (:func:`well_profiles`).

    Returns
    -------
    DataFrame
        One row per group, sorted: the ``by`` columns, ``Metadata_n_wells`` and the features.

    Examples
    --------
    >>> import pandas as pd
    >>> sites = pd.DataFrame(
    ...     {
    ...         "Metadata_Plate": ["P1"] * 4,
    ...         "Metadata_Well": ["A01", "A01", "A02", "B01"],
    ...         "Metadata_treatment": ["x", "x", "x", "y"],
    ...         "f": [1.0, 3.0, 4.0, 10.0],
    ...     }
    ... )
    >>> consensus_profiles(sites, ["Metadata_treatment"])  # x: median of its wells' medians 2 and 4
      Metadata_treatment  Metadata_n_wells     f
    0                  x                 2   3.0
    1                  y                 1  10.0
    """
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    wells = well_profiles(df, well_keys, features)
    grouped = wells.groupby(list(by), sort=True, dropna=False)
    medians = grouped[features].median().copy()  # one block: the index insert below stays cheap
    return pd.concat([grouped.size().rename("Metadata_n_wells"), medians], axis=1).copy().reset_index()


def effect_sizes(
    df: pd.DataFrame,
    group_col: str = schema.MOA,
    control_value: str = schema.NEGATIVE_CONTROL_MOA,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Robust standardised difference of each group from the controls, per feature.

    ``(median(group) - median(control)) / (1.4826 * MAD(control))`` (falling back as in
    :func:`robust_scale`). On plate-normalised tables this is the per-plate effect pooled.

    Parameters
    ----------
    df : DataFrame
        Feature table.
    group_col : str, default schema.MOA
        Column of the groups.
    control_value : str, default schema.NEGATIVE_CONTROL_MOA
        The control group's value.
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).

    Returns
    -------
    DataFrame, shape (groups, features)
        Unitless effects; groups in descending size order, controls excluded.

    Raises
    ------
    KeyError
        If ``group_col`` is missing.
    ValueError
        If there are no control rows.
    """
    if group_col not in df.columns:
        raise KeyError(f"effect sizes need the column {group_col!r}, which the table lacks")
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    ctrl = df[group_col] == control_value
    if not ctrl.any():
        raise ValueError(f"no rows with {group_col} == {control_value!r} to compare against")
    center, spread = robust_scale(df.loc[ctrl, features].to_numpy(dtype=np.float64))
    groups = df.loc[~ctrl, group_col].value_counts().index
    rows = {}
    for g in groups:
        vals = df.loc[df[group_col] == g, features].to_numpy(dtype=np.float64)
        with np.errstate(all="ignore"):
            rows[g] = (np.nanmedian(vals, axis=0) - center) / spread
    return pd.DataFrame.from_dict(rows, orient="index", columns=features)
