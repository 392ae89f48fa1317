"""Feature selection and cleaning of profiles, fitted on training folds only.

Plate normalisation (robust z-score against each plate's negative controls) is a per-plate
transform that uses no other plate and no label: it lives in :mod:`moa_features.profiling`
and is applied once to the whole table. Everything here is *fitted*, so it is fitted inside
each training fold (:func:`make_preprocessor`).

Feature selection follows pycytominer's ``feature_select`` with the operations of the
profiling recipe (``drop_na_columns``, ``variance_threshold``, ``correlation_threshold``,
``blocklist``; :data:`DEFAULT_OPERATIONS`), with pycytominer's defaults:

- ``na``: drop a feature whose fraction of missing values exceeds ``na_cutoff`` (0.05);
- ``variance``: drop a feature whose population variance is below ``min_variance`` (1e-6);
- ``correlation``: for every pair of features with absolute Pearson correlation above
  ``corr_threshold`` (0.9), drop the one with the larger sum of absolute correlations to all
  features;
- ``blocklist``: drop features whose name matches ``blocklist`` (a regular expression; default
  :data:`BLOCKLIST`, CellProfiler measurements of where an object lies in the image rather than
  what it looks like); only applies when the columns have names (a DataFrame);
- ``frequency`` (opt-in, pycytominer's ``frequency_threshold``): drop near-constant features.
  It is not a default because after per-plate median centring every plate with an odd number of
  reference wells contributes an exact 0 to each feature, which the frequency rule reads as a
  dominant value and drops every feature.

What this selection (fitted on training folds, no labels) is worth on BBBC021's raw well
means: ``benchmarks/results_bbbc021.md``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

OPERATIONS = ("na", "variance", "frequency", "correlation", "blocklist")
DEFAULT_OPERATIONS = ("na", "variance", "correlation", "blocklist")
# Order of application: names first; correlation last, as it depends on the kept set.
OPERATIONS_ORDER = ("blocklist", "na", "variance", "frequency", "correlation")
BLOCKLIST = r"(^|_)Location_|AreaShape_Center_[XYZ]|AreaShape_Orientation|_Number_Object_Number$|ObjectNumber$"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's floating-point errors and all-NaN-slice RuntimeWarnings."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _as_float(X) -> np.ndarray:
    """``X`` as a float64 array with infinities turned into NaN."""
    arr = np.array(X, dtype=np.float64)
    arr[~np.isfinite(arr)] = np.nan
    return arr


def na_excluded(X: np.ndarray, cutoff: float = 0.05) -> np.ndarray:
    """Boolean mask (p,) of columns of ``X`` (n, p) whose NaN fraction exceeds ``cutoff``."""
    return np.mean(np.isnan(X), axis=0) > cutoff


def variance_excluded(X: np.ndarray, min_variance: float = 1e-6) -> np.ndarray:
    """Boolean mask (p,) of columns whose population variance (NaNs ignored) is below ``min_variance``."""
    with _quiet():
        var = np.nanvar(X, axis=0)
    return ~(var >= min_variance)


def frequency_excluded(X: np.ndarray, freq_cut: float = 0.05, unique_cut: float = 0.01) -> np.ndarray:
    """Boolean mask (p,) of near-constant columns (pycytominer ``frequency_threshold``).

    A column is excluded when it has fewer than two distinct values, when (count of its
    second most common value) / (count of its most common value) < ``freq_cut``, or when
    (number of distinct values) / (number of rows) < ``unique_cut``. NaNs are not values.
    """
    n, p = X.shape
    out = np.zeros(p, dtype=bool)
    for j in range(p):
        col = X[:, j]
        _, counts = np.unique(col[~np.isnan(col)], return_counts=True)
        if len(counts) < 2:
            out[j] = True
            continue
        top2 = np.sort(counts)[-2:]
        out[j] = top2[0] / top2[1] < freq_cut or len(counts) / n < unique_cut
    return out


def correlation_excluded(X: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Boolean mask (p,) of columns dropped by pycytominer's ``correlation_threshold``.

    For each pair with ``|r| > threshold`` (Pearson, NaNs imputed by the column median), the
    member with the larger sum of absolute correlations is dropped. Constant columns have
    correlation 0 with everything.
    """
    p = X.shape[1]
    if p < 2:
        return np.zeros(p, dtype=bool)
    with _quiet():
        med = np.nanmedian(X, axis=0)
    filled = np.where(np.isnan(X), np.where(np.isnan(med), 0.0, med), X)
    centered = filled - filled.mean(axis=0)
    norms = np.sqrt((centered**2).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    corr = np.abs((centered / safe).T @ (centered / safe))
    corr[:, norms == 0] = 0.0
    corr[norms == 0, :] = 0.0
    np.fill_diagonal(corr, 1.0)
    total = corr.sum(axis=0)
    # Rank in pycytominer's order: ascending total |r| (stable), the higher rank is dropped.
    rank = np.empty(p, dtype=int)
    rank[np.argsort(total, kind="stable")] = np.arange(p)
    i, j = np.nonzero(np.triu(corr > threshold, k=1))
    out = np.zeros(p, dtype=bool)
    out[np.where(rank[i] > rank[j], i, j)] = True
    return out


class FeatureSelector(TransformerMixin, BaseEstimator):
    """pycytominer-style feature selection as a scikit-learn transformer.

    Fitted on training rows only; ``support_`` (p,) marks the kept input columns and
    ``excluded_`` maps each operation to the feature names it removed. Accepts arrays or
    DataFrames (column names are kept in ``feature_names_in_``).
    """

    def __init__(
        self,
        na_cutoff: float = 0.05,
        min_variance: float = 1e-6,
        freq_cut: float = 0.05,
        unique_cut: float = 0.01,
        corr_threshold: float = 0.9,
        blocklist: str = BLOCKLIST,
        operations: Sequence[str] = DEFAULT_OPERATIONS,
    ) -> None:
        self.na_cutoff = na_cutoff
        self.min_variance = min_variance
        self.freq_cut = freq_cut
        self.unique_cut = unique_cut
        self.corr_threshold = corr_threshold
        self.blocklist = blocklist
        self.operations = operations

    def _masks(self, names: np.ndarray) -> dict:
        """Operation name -> function of the (n, p_kept) array and its names giving the dropped mask."""
        pattern = re.compile(self.blocklist)
        return {
            "na": lambda A, _: na_excluded(A, self.na_cutoff),
            "variance": lambda A, _: variance_excluded(A, self.min_variance),
            "frequency": lambda A, _: frequency_excluded(A, self.freq_cut, self.unique_cut),
            "correlation": lambda A, _: correlation_excluded(A, self.corr_threshold),
            "blocklist": lambda A, cols: (
                np.array([bool(pattern.search(str(c))) for c in cols], dtype=bool)
                if hasattr(self, "feature_names_in_")
                else np.zeros(A.shape[1], dtype=bool)
            ),
        }

    def fit(self, X, y=None) -> FeatureSelector:
        """Find the kept columns of ``X`` (n, p) from its rows alone (``y`` is ignored)."""
        unknown = sorted(set(self.operations) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"unknown feature-selection operation(s) {unknown}; choose from {', '.join(OPERATIONS)}")
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        arr = _as_float(X)
        if arr.ndim != 2 or arr.shape[0] < 2:
            raise ValueError(f"feature selection needs a 2-D table with >= 2 rows, got shape {arr.shape}")
        self.n_features_in_ = arr.shape[1]
        names = self._names()
        keep = np.ones(arr.shape[1], dtype=bool)
        self.excluded_: dict[str, list[str]] = {op: [] for op in OPERATIONS}
        masks = self._masks(names)
        for op in sorted(self.operations, key=OPERATIONS_ORDER.index):
            idx = np.flatnonzero(keep)
            drop = idx[masks[op](arr[:, idx], names[idx])]
            keep[drop] = False
            self.excluded_[op] = [str(names[k]) for k in drop]
        if not keep.any():
            raise ValueError(
                "feature selection removed every feature (all near-constant, NaN-heavy or "
                "duplicated in the training rows); check the table's feature columns"
            )
        self.support_ = keep
        return self

    def _names(self) -> np.ndarray:
        if hasattr(self, "feature_names_in_"):
            return self.feature_names_in_
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "support_")
        arr = _as_float(X)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} feature columns, got array of shape {arr.shape}")
        return arr[:, self.support_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self._names()[self.support_]


def make_preprocessor(**selector_params) -> Pipeline:
    """Feature selection (:class:`FeatureSelector`) then median imputation, both fit on training rows.

    Input: the (n, p) feature columns (array or DataFrame); output (n, p_kept) float64.
    """
    return Pipeline(
        [
            ("select", FeatureSelector(**selector_params)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ]
    )
