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

Sphering (typical variation normalisation, Ando et al. 2017; pycytominer's
``normalize(method="spherize")``): :class:`ControlSphering` whitens the profiles with the
covariance of the negative-control wells, so that the variation untreated cells show (plate and
batch effects among it) is spherical and no longer dominates distances. It is regularised
(``epsilon`` added to every eigenvalue) and fitted on the controls of the training plates only.

:class:`ProfilePreprocessor` is the field's profiling recipe in one fitted step (robust z-score
of every feature against the training plates' negative controls, feature selection, median
imputation, control sphering); :func:`make_preprocessor` builds it. Which steps run and the
sphering's ``epsilon`` are recorded in ``metrics.json`` (``preprocessing``). What the
selection and the recipe are worth on BBBC021: ``benchmarks/results_bbbc021.md``.
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


SPHERING_METHODS = ("ZCA", "PCA", "ZCA-cor", "PCA-cor")


class ControlSphering(TransformerMixin, BaseEstimator):
    """Whitening fitted on negative-control profiles (pycytominer ``Spherize`` semantics, regularised).

    ``fit(X)`` takes the (m, p) control profiles: ``mean_`` (p,) their mean; for the ``-cor``
    methods each feature is also divided by its control SD (``scale_``). With the eigenvalues
    ``lambda`` and eigenvectors ``V`` of their covariance (from the SVD of the centred controls,
    directions with ``lambda`` below 1e-10 of the largest dropped, at most ``n_components``),
    ``PCA``: ``W = V diag(1 / sqrt(lambda + epsilon))``, ``ZCA``: ``W V^T`` (the whitening closest to
    the input features, so columns keep their meaning). ``transform(X)`` = ``((X - mean_) / scale_) W``:
    (n, p) for ZCA, (n, k) for PCA. With ``epsilon=0`` and more controls than features this is
    exactly pycytominer's ``Spherize(method, epsilon)`` (which adds no epsilon); ``epsilon > 0``
    shrinks the weight of directions the controls barely span.
    """

    def __init__(self, method: str = "ZCA", epsilon: float = 0.1, n_components: int | None = None) -> None:
        self.method = method
        self.epsilon = epsilon
        self.n_components = n_components

    def fit(self, X, y=None) -> ControlSphering:
        """Learn the whitening from ``X`` (m, p), the negative-control profiles (``y`` ignored)."""
        if self.method not in SPHERING_METHODS:
            raise ValueError(f"unknown sphering method {self.method!r}; choose from {', '.join(SPHERING_METHODS)}")
        if self.epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2 or not np.isfinite(X).all():
            raise ValueError(f"sphering needs a finite 2-D array of >= 2 control rows, got shape {X.shape}")
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0, ddof=1)
        self.scale_ = np.where(sd > 0, sd, 1.0) if self.method.endswith("-cor") else np.ones(X.shape[1])
        _, S, Vt = np.linalg.svd((X - self.mean_) / self.scale_, full_matrices=False)
        lam = S**2 / (len(X) - 1)
        keep = lam > 1e-10 * lam[0] if lam[0] > 0 else np.zeros(len(lam), dtype=bool)
        k = int(keep.sum()) if self.n_components is None else min(int(self.n_components), int(keep.sum()))
        if k < 1:
            raise ValueError("the control profiles do not vary: nothing to sphere")
        self.eigenvalues_ = lam[:k]
        W = Vt[:k].T / np.sqrt(lam[:k] + self.epsilon)
        self.components_ = W @ Vt[:k] if self.method.startswith("ZCA") else W
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "components_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} feature columns, got array of shape {X.shape}")
        return ((X - self.mean_) / self.scale_) @ self.components_


class ProfilePreprocessor(TransformerMixin, BaseEstimator):
    """The profiling recipe fitted on one fold's training rows and training plates' controls.

    Steps (each fitted on training data only, none on labels):

    1. ``scale``: robust z-score of every feature against the negative controls, ``(x - median) /
       (1.4826 MAD)`` over all control wells of the training plates (:func:`moa_features.profiling.robust_scale`;
       over the training rows when there are no controls), so features in any unit become
       comparable before selection and sphering;
    2. ``select``: :class:`FeatureSelector` on training rows and controls;
    3. ``impute``: median imputation;
    4. ``sphere``: :class:`ControlSphering` (ZCA, ``epsilon``) fitted on the controls, when
       ``sphere`` is true and there are at least :data:`MIN_SPHERING_CONTROLS` control rows.

    ``fit(X (n, p), y=None, controls=None)``: ``controls`` (m, p) are the negative-control rows of
    the training plates (in the input features). ``transform(X)`` -> (n, p_kept) float64.
    Fitted: ``named_steps`` (dict of the fitted steps), ``support_`` (p,) kept features,
    ``sphered_`` and ``reference_`` ("controls" or "training rows").
    """

    def __init__(
        self,
        sphere: bool = True,
        epsilon: float = 0.1,
        scale: bool = True,
        corr_threshold: float = 0.9,
        operations: Sequence[str] = DEFAULT_OPERATIONS,
        n_components: int | None = None,
    ) -> None:
        self.sphere = sphere
        self.epsilon = epsilon
        self.n_components = n_components
        self.scale = scale
        self.corr_threshold = corr_threshold
        self.operations = operations

    def fit(self, X, y=None, controls=None) -> ProfilePreprocessor:
        """Fit every step on the training rows ``X`` (n, p) and the control rows ``controls`` (m, p) or ``None``."""
        from moa_features.profiling import robust_scale

        arr = _as_float(X)
        ctrl = None if controls is None else _as_float(controls)
        if ctrl is not None and (ctrl.ndim != 2 or ctrl.shape[1] != arr.shape[1]):
            raise ValueError(f"controls must be (m, {arr.shape[1]}), got shape {ctrl.shape}")
        has_controls = ctrl is not None and len(ctrl) >= 2
        self.reference_ = "controls" if has_controls else "training rows"
        if self.scale:
            self.center_, self.spread_ = robust_scale(ctrl if has_controls else arr)
            self.center_ = np.nan_to_num(self.center_)
        else:
            self.center_, self.spread_ = np.zeros(arr.shape[1]), np.ones(arr.shape[1])
        both = arr if ctrl is None else np.vstack([arr, ctrl])
        frame = (both - self.center_) / self.spread_
        if isinstance(X, pd.DataFrame):
            frame = pd.DataFrame(frame, columns=X.columns)
        select = FeatureSelector(corr_threshold=self.corr_threshold, operations=self.operations).fit(frame)
        impute = SimpleImputer(strategy="median", keep_empty_features=True).fit(select.transform(frame))
        self.named_steps = {"select": select, "impute": impute}
        self.support_ = select.support_
        self.n_features_in_ = arr.shape[1]
        self.sphered_ = bool(self.sphere and ctrl is not None and len(ctrl) >= MIN_SPHERING_CONTROLS)
        if self.sphered_:
            kept = impute.transform(select.transform((ctrl - self.center_) / self.spread_))
            self.named_steps["sphere"] = ControlSphering("ZCA", self.epsilon, self.n_components).fit(kept)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "named_steps")
        arr = _as_float(X)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} feature columns, got array of shape {arr.shape}")
        out = self.named_steps["impute"].transform(
            self.named_steps["select"].transform((arr - self.center_) / self.spread_)
        )
        return self.named_steps["sphere"].transform(out) if self.sphered_ else out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.named_steps["select"].get_feature_names_out()


RECIPES = ("sphere", "scale", "select")
MIN_SPHERING_CONTROLS = 10  # fewer control rows than this: no sphering (a covariance needs them)


def make_preprocessor(recipe: str = "select", epsilon: float = 0.1, **selector_params):
    """The preprocessing fitted in each fold, by ``recipe`` (one of :data:`RECIPES`).

    ``"select"``: feature selection (:class:`FeatureSelector`, ``selector_params``) then median
    imputation (a :class:`~sklearn.pipeline.Pipeline`). ``"sphere"``: :class:`ProfilePreprocessor`
    (robust z against controls, selection, imputation, ZCA sphering on controls with ``epsilon``);
    ``"scale"``: the same without sphering. Input (n, p) array or DataFrame; output (n, p_kept) float64.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown preprocessing recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    if recipe != "select":
        return ProfilePreprocessor(sphere=recipe == "sphere", epsilon=epsilon, **selector_params)
    return Pipeline(
        [
            ("select", FeatureSelector(**selector_params)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ]
    )
