"""Class-weighted XGBoost on feature profiles, as a scikit-learn classifier.

Defaults (chosen for tables of a few hundred to a few hundred thousand rows and tens to
hundreds of features, and documented here because they matter):

- ``objective="multi:softprob"``, histogram trees (``tree_method="hist"``), depth 3,
  learning rate 0.1, row subsampling 0.8, column subsampling 0.3 per tree, L2 1.0 (shallow,
  column-subsampled trees suit a few hundred rows of many correlated profile features);
- class-balanced sample weights (``n / (k * count(class))``), so rare MoAs count as much as
  common ones (the original CNN predicted almost everything as the majority class);
- early stopping (30 rounds without improvement of the weighted validation log-loss, at most
  1000 rounds) on an inner validation split that mirrors the outer split: it holds out whole
  ``groups`` (the outer held-out unit: treatments, plates) and, when ``plates`` are given (an
  ``nsc-plate`` or ``nscb`` run: plates or batches), the validation treatments' plates too
  (one fold of :class:`~moa_features.models.splits.NSCPlateSplit`), so the stopping point is
  chosen on treatments and plates the trees never saw;
- ``refit=True``: the model is then refitted on all training rows for the chosen number of
  rounds, so no training plate is wasted on validation.

With ``scheduler="tcp://HOST:PORT"`` (a ``dask.distributed`` scheduler) training uses
XGBoost's Dask interface (``xgboost.dask.train``) on the cluster's workers with the same
parameters; prediction runs locally on the fitted booster.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from moa_features._optional import require
from moa_features.io import atomic_path
from moa_features.models.splits import NSCPlateSplit, first_fold, validation_split

_ATTR = "moa_features"  # booster attribute holding classes and parameters in the saved JSON


class XGBoostClassifier(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees with class-balanced weights and grouped early stopping.

    ``fit(X (n, p) float, y (n,), groups=None, plates=None)``; ``predict_proba`` returns (n, k) in
    ``classes_`` order. Fitted attributes: ``booster_``, ``classes_``, ``best_iteration_``
    (rounds kept minus one), ``evals_result_`` (validation curve), ``feature_importances_``
    (p,) total gain per feature normalised to sum 1, ``validation_rows_`` (the early-stopping
    validation row indices, or ``None``).
    """

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.1,
        max_depth: int = 3,
        min_child_weight: float = 1.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.3,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 30,
        validation_fraction: float = 0.2,
        class_weight: str | dict | None = "balanced",
        refit: bool = True,
        n_jobs: int = 1,
        random_state: int = 0,
        scheduler: str | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.scheduler = scheduler

    def _params(self, n_classes: int) -> dict:
        return {
            "objective": "multi:softprob",
            "num_class": int(n_classes),
            "eval_metric": "mlogloss",
            "tree_method": "hist",
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "nthread": self.n_jobs,
            "seed": self.random_state,
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # XGBoost routes missing values down a learned branch
        return tags

    def fit(self, X, y, groups=None, plates=None) -> XGBoostClassifier:
        """Fit on ``X`` (n, p) and labels ``y`` (n,) of any type; ``groups`` (n,) are held out whole
        by the early-stopping split (pass the outer split's held-out unit: plates, treatments);
        with ``plates`` (n,) no inner-training row shares a plate with a validation row.

        ``groups`` and ``plates`` reach ``fit`` inside a meta-estimator through metadata routing:
        ``XGBoostClassifier().set_fit_request(groups=True, plates=True)``.
        """
        X, y = validate_data(self, X, y, dtype=np.float32, ensure_all_finite="allow-nan")
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"XGBoost needs at least 2 classes in the training rows, got 1 class {self.classes_.tolist()}"
            )
        if self.class_weight is None:
            w = np.ones(len(y))
        elif self.class_weight == "balanced" or isinstance(self.class_weight, dict):
            w = compute_sample_weight(self.class_weight, y)
        else:
            raise ValueError(
                f"class_weight must be 'balanced', a dict {{label: weight}} or None, got {self.class_weight!r}"
            )
        params = self._params(len(self.classes_))
        split = None
        if self.early_stopping_rounds:
            split = self._validation_split(y_enc, groups, plates)
        self.validation_rows_ = None if split is None else split[1]
        self.evals_result_: dict = {}
        if split is None:
            booster = self._train(params, (X, y_enc, w), None, self.n_estimators)
            self.best_iteration_ = self.n_estimators - 1
        else:
            tr, va = split
            booster = self._train(params, (X[tr], y_enc[tr], w[tr]), (X[va], y_enc[va], w[va]), self.n_estimators)
            self.best_iteration_ = int(booster.best_iteration)
            if self.refit:
                booster = self._train(params, (X, y_enc, w), None, self.best_iteration_ + 1)
        self.booster_ = booster[: self.best_iteration_ + 1]
        self.feature_importances_ = self._gain()
        return self

    def _validation_split(self, y_enc: np.ndarray, groups, plates) -> tuple[np.ndarray, np.ndarray] | None:
        """Early-stopping (train, validation) rows: whole ``groups`` held out and, with ``plates``, their plates."""
        g = None if groups is None else np.asarray(groups).astype(str)
        if plates is None:
            return validation_split(y_enc, g, self.validation_fraction, self.random_state)
        p = np.asarray(plates).astype(str)
        if p.shape != y_enc.shape:
            raise ValueError(f"plates must have one entry per row ({len(y_enc)}), got shape {p.shape}")
        k = max(2, int(round(1 / self.validation_fraction)))
        fold = first_fold(NSCPlateSplit(k, self.random_state), None, y_enc, groups=g if g is not None else p, plates=p)
        if fold is not None:
            return fold
        split = validation_split(y_enc, g, self.validation_fraction, self.random_state)
        if split is None:
            return None
        tr, va = split
        tr = tr[~np.isin(p[tr], np.unique(p[va]))]
        return (tr, va) if len(tr) and len(np.unique(y_enc[tr])) > 1 else None

    def _train(self, params: dict, train: tuple, val: tuple | None, rounds: int) -> xgb.Booster:
        stop = self.early_stopping_rounds if val is not None else None
        if self.scheduler:
            return self._train_dask(params, train, val, rounds, stop)
        dtrain = xgb.DMatrix(train[0], label=train[1], weight=train[2])
        evals = [(xgb.DMatrix(val[0], label=val[1], weight=val[2]), "validation")] if val is not None else []
        result: dict = {}
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            early_stopping_rounds=stop,
            evals_result=result,
            verbose_eval=False,
        )
        if val is not None:
            self.evals_result_ = result
        return booster

    def _train_dask(self, params: dict, train: tuple, val: tuple | None, rounds: int, stop: int | None) -> xgb.Booster:
        da = require("dask.array", extra="dask", purpose="train --scheduler")
        Client = require("distributed", extra="dask", purpose="train --scheduler").Client
        from xgboost import dask as dxgb

        def dmatrix(client, part):
            chunk = max(1, int(np.ceil(len(part[1]) / 4)))
            return dxgb.DaskDMatrix(
                client,
                da.from_array(part[0], chunks=(chunk, part[0].shape[1])),
                da.from_array(part[1], chunks=chunk),
                weight=da.from_array(part[2], chunks=chunk),
            )

        with Client(self.scheduler) as client:
            evals = [(dmatrix(client, val), "validation")] if val is not None else []
            out = dxgb.train(
                client,
                params,
                dmatrix(client, train),
                num_boost_round=rounds,
                evals=evals,
                early_stopping_rounds=stop,
                verbose_eval=False,
            )
        if val is not None:
            self.evals_result_ = out["history"]
        return out["booster"]

    def _gain(self) -> np.ndarray:
        score = self.booster_.get_score(importance_type="total_gain")
        gain = np.zeros(self.n_features_in_)
        for name, value in score.items():
            gain[int(name[1:])] = value
        total = gain.sum()
        return gain / total if total > 0 else gain

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "booster_")
        X = validate_data(self, X, dtype=np.float32, ensure_all_finite="allow-nan", reset=False)
        proba = self.booster_.predict(xgb.DMatrix(X))
        return proba.reshape(len(X), len(self.classes_))

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def save(self, path: str | Path) -> Path:
        """Write the booster as XGBoost JSON, with classes and parameters in its attributes."""
        check_is_fitted(self, "booster_")
        path = Path(path)
        meta = {
            "classes": self.classes_.tolist(),
            "params": self.get_params(),
            "best_iteration": self.best_iteration_,
            "n_features_in": self.n_features_in_,
        }
        self.booster_.set_attr(**{_ATTR: json.dumps(meta)})
        with atomic_path(path) as tmp:
            json_tmp = tmp.with_suffix(".json")
            self.booster_.save_model(json_tmp)
            json_tmp.replace(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> XGBoostClassifier:
        """Load a model written by :meth:`save`."""
        booster = xgb.Booster()
        booster.load_model(str(path))
        raw = booster.attr(_ATTR)
        if raw is None:
            raise ValueError(f"{path}: not a moa_features XGBoost model (no {_ATTR!r} attribute)")
        meta = json.loads(raw)
        model = cls(**meta["params"])
        model.booster_ = booster
        model.classes_ = np.asarray(meta["classes"])
        model.best_iteration_ = meta["best_iteration"]
        model.n_features_in_ = meta["n_features_in"]
        model.evals_result_ = {}
        model.feature_importances_ = model._gain()
        return model
