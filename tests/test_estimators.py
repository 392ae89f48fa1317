"""The public estimators honour scikit-learn's contract (issue 13 #1).

``CNNClassifier`` is a documented exception: it takes (N, S, S, C) uint8 thumbnails, while
scikit-learn's checks feed 2-d float tables, so every check would fail on its input alone;
``tests/test_cnn.py`` covers its clone/get_params/pickle/label-type behaviour instead.
"""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from moa_features.models.ensemble import MoAEnsemble
from moa_features.models.gbm import XGBoostClassifier
from moa_features.models.knn import ProfileKNNClassifier
from moa_features.models.preprocessing import make_preprocessor
from moa_features.models.splits import NSCSplit

FAST_XGB = dict(n_estimators=20, early_stopping_rounds=5)

ESTIMATORS = [
    XGBoostClassifier(**FAST_XGB),
    ProfileKNNClassifier(),
    # the ensemble with the members that need no images (no images given: the CNN embedding is dropped)
    MoAEnsemble(members=(("xgboost", XGBoostClassifier(**FAST_XGB)), "knn", "cnn_embedding")),
]


@parametrize_with_checks(ESTIMATORS)  # every check passes: no expected failures to declare
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


def _screen(seed: int = 0):
    """Integer MoA labels, 4 treatments per class, 3 wells per treatment, informative features."""
    rng = np.random.default_rng(seed)
    X, y, treatment = [], [], []
    for k in range(3):
        for t in range(4):
            centre = rng.normal(0, 0.3, 12)
            centre[k] += 3.0
            for _ in range(3):
                X.append(centre + rng.normal(0, 1, 12))
                y.append(k * 10)
                treatment.append(f"t{k}_{t}")
    return np.array(X), np.array(y), np.array(treatment)


def test_grid_search_on_integer_labels_with_nsc_and_routed_groups():
    X, y, treatments = _screen()
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(make_preprocessor(), XGBoostClassifier(n_estimators=50).set_fit_request(groups=True))
        search = GridSearchCV(pipe, {"xgboostclassifier__max_depth": [2, 3]}, cv=NSCSplit(n_splits=4))
        search.fit(X, y, groups=treatments)
    assert np.isfinite(search.best_score_) and search.best_score_ > 0.5
    assert search.classes_.dtype.kind == "i"
    assert set(search.predict(X)) <= {0, 10, 20}


def test_cnn_parameter_contract():
    """The checks that do not feed 2-d tables apply to the CNN too (no Keras needed: nothing is fitted)."""
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    from moa_features.models.cnn import CNNClassifier

    for check in (
        check_parameters_default_constructible,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
    ):
        check("CNNClassifier", CNNClassifier())
