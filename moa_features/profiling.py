"""Profile operations on feature tables: plate normalisation, well aggregation, effect sizes.

All functions take and return pandas DataFrames that follow the ``Metadata_`` convention
(see :mod:`moa_features.schema`); feature columns are every non-``Metadata_`` column.

Plate normalisation is a *per-plate transform*: a plate's reference statistics come from that
plate's own sites (its negative-control wells, or all its sites), never from other plates and
never from labels, so applying it to a held-out plate leaks nothing from training data.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from moa_features import schema

NORMALIZATIONS = ("controls", "plate", "none")
MAD_TO_SD = 1.4826  # MAD of a normal distribution * 1.4826 = its standard deviation


def is_control(
    df: pd.DataFrame, moa_col: str = schema.MOA, treatment_col: str = schema.TREATMENT
) -> pd.Series:
    """Boolean mask of negative-control rows (MoA ``Negative control`` or an empty treatment)."""
    mask = pd.Series(False, index=df.index)
    if moa_col in df.columns:
        mask |= df[moa_col].astype(str) == schema.NEGATIVE_CONTROL_MOA
    if treatment_col in df.columns:
        names = {t.upper() for t in schema.NEGATIVE_CONTROL_TREATMENTS}
        mask |= df[treatment_col].astype(str).str.upper().isin(names)
    return mask


def robust_scale(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread (1.4826 * MAD) per column of ``ref`` (n, p), NaNs ignored.

    Where the MAD is 0 (a feature constant in most reference rows) the standard deviation is
    used; where that is 0 too the spread is 1, so the feature becomes ``x - median``.
    """
    with np.errstate(all="ignore"):
        center = np.nanmedian(ref, axis=0)
        spread = MAD_TO_SD * np.nanmedian(np.abs(ref - center), axis=0)
        sd = np.nanstd(ref, axis=0)
    spread = np.where((spread > 0) & np.isfinite(spread), spread, sd)
    spread = np.where((spread > 0) & np.isfinite(spread), spread, 1.0)
    return center, spread


def normalize(
    df: pd.DataFrame,
    method: str = "controls",
    plate_col: str = schema.PLATE,
    control: pd.Series | None = None,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Robust z-score of every feature within each plate.

    method: ``controls`` (reference = the plate's negative-control rows, the field's standard),
    ``plate`` (reference = all rows of the plate) or ``none`` (a copy). ``control`` is a boolean
    mask of control rows (default :func:`is_control`). Returns a new table; metadata unchanged.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {method!r}; expected one of {', '.join(NORMALIZATIONS)}")
    out = df.copy()
    if method == "none":
        return out
    if plate_col not in df.columns:
        raise KeyError(f"normalization needs the plate column {plate_col!r}, which the table lacks")
    features = list(features) if features is not None else schema.feature_columns(df.columns)
    if control is None:
        control = is_control(df)
    values = df[features].to_numpy(dtype=np.float64)
    result = np.empty_like(values)
    for plate, idx in df.groupby(plate_col, sort=False).indices.items():
        ref_rows = idx
        if method == "controls":
            ref_rows = idx[np.asarray(control)[idx]]
            if len(ref_rows) == 0:
                raise ValueError(
                    f"plate {plate!r} has no negative-control rows to normalize against; "
                    "use --normalize plate, or check the treatment/MoA columns"
                )
        center, spread = robust_scale(values[ref_rows])
        result[idx] = (values[idx] - center) / spread
    out[features] = result
    return out


def aggregate_wells(
    df: pd.DataFrame, keys: Sequence[str] = (schema.PLATE, schema.WELL), how: str = "median"
) -> pd.DataFrame:
    """One row per well: the ``how`` (median or mean) of each feature over the well's sites.

    Metadata columns constant within a well are kept; the others are dropped.
    """
    keys = list(keys)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise KeyError(f"well aggregation needs column(s) {missing}, which the table lacks")
    features = schema.feature_columns(df.columns)
    grouped = df.groupby(keys, sort=True, dropna=False)
    agg = getattr(grouped[features], how)()
    meta_cols = [c for c in schema.metadata_columns(df.columns) if c not in keys]
    constant = [c for c in meta_cols if (grouped[c].nunique(dropna=False) <= 1).all()]
    meta = grouped[constant].first()
    meta["Metadata_n_sites"] = grouped.size()
    return pd.concat([meta, agg], axis=1).reset_index()


def effect_sizes(
    df: pd.DataFrame,
    group_col: str = schema.MOA,
    control_value: str = schema.NEGATIVE_CONTROL_MOA,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Robust standardised difference of each group from the controls, per feature.

    ``(median(group) - median(control)) / (1.4826 * MAD(control))`` (falling back as in
    :func:`robust_scale`): a (groups x features) frame, groups in descending size order,
    controls excluded. On plate-normalised tables this is the per-plate effect pooled.
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
