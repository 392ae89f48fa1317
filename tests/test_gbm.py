"""XGBoost estimator (local and Dask), 1-NN profile classifier and soft-vote ensemble."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier

from moa_features.models.ensemble import SoftVoteEnsemble, align_proba, simplex_grid
from moa_features.models.gbm import XGBoostClassifier, inner_validation_split
from moa_features.models.knn import ProfileKNNClassifier, cosine_similarity


def _blobs(n_per=(120, 120, 20), p=8, sep=2.0, seed=0):
    """Gaussian classes (means on axes) with a rare third class; plates as groups."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, n in enumerate(n_per):
        mu = np.zeros(p)
        mu[k] = sep
        X.append(rng.normal(size=(n, p)) + mu)
        y += [f"c{k}"] * n
    X = np.vstack(X)
    y = np.array(y)
    groups = rng.integers(0, 6, len(y)).astype(str)
    return X, y, groups


def test_inner_validation_split_holds_out_whole_groups():
    y = np.repeat(["a", "b"], 30)
    groups = np.tile(np.arange(6), 10)
    tr, va = inner_validation_split(y, groups, 0.25, 0)
    assert not set(groups[tr]) & set(groups[va])
    assert len(tr) + len(va) == len(y)
    tr, va = inner_validation_split(y, None, 0.25, 0)  # stratified by class
    assert set(y[va]) == {"a", "b"}


def test_xgboost_learns_balances_and_is_deterministic():
    X, y, g = _blobs()
    Xt, yt, _ = _blobs(seed=1)
    model = XGBoostClassifier(n_estimators=200).fit(X, y, groups=g)
    assert model.classes_.tolist() == ["c0", "c1", "c2"]
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(yt), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    acc = np.mean(model.predict(Xt) == yt)
    assert acc > 0.8
    assert 0 <= model.best_iteration_ < 200 and model.evals_result_["validation"]["mlogloss"]
    assert model.feature_importances_.sum() == pytest.approx(1.0)
    assert np.argsort(model.feature_importances_)[-3:].tolist().count(2) == 1  # the rare class's axis matters
    again = clone(model).fit(X, y, groups=g)
    assert np.array_equal(again.predict_proba(Xt), proba)
    # Balanced weights raise the rare class's recall compared with unweighted training.
    plain = XGBoostClassifier(n_estimators=200, class_weight=None).fit(X, y, groups=g)
    rare = yt == "c2"
    assert np.mean(model.predict(Xt[rare]) == "c2") >= np.mean(plain.predict(Xt[rare]) == "c2")


def test_xgboost_save_load_roundtrip(tmp_path):
    X, y, g = _blobs()
    model = XGBoostClassifier(n_estimators=50, early_stopping_rounds=None).fit(X, y)
    assert model.best_iteration_ == 49
    path = model.save(tmp_path / "xgboost.json")
    back = XGBoostClassifier.load(path)
    assert back.classes_.tolist() == model.classes_.tolist()
    assert back.get_params() == model.get_params()
    assert np.allclose(back.predict_proba(X), model.predict_proba(X))
    with pytest.raises(ValueError, match="expected"):
        back.predict_proba(X[:, :3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        XGBoostClassifier().fit(X, np.full(len(X), "a"))


def test_xgboost_dask_matches_local_structure():
    distributed = pytest.importorskip("distributed")
    X, y, g = _blobs()
    Xt, yt, _ = _blobs(seed=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask_model = XGBoostClassifier(n_estimators=100, scheduler=cluster.scheduler_address).fit(X, y, groups=g)
    local = XGBoostClassifier(n_estimators=100).fit(X, y, groups=g)
    assert dask_model.classes_.tolist() == local.classes_.tolist()
    assert dask_model.predict_proba(Xt).shape == local.predict_proba(Xt).shape
    assert np.mean(dask_model.predict(Xt) == yt) > 0.8
    assert abs(np.mean(dask_model.predict(Xt) == yt) - np.mean(local.predict(Xt) == yt)) < 0.1


def test_knn_matches_sklearn_cosine_1nn_on_profiles():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = np.repeat(["a", "b", "c"], 20)
    treatments = np.repeat([f"t{i}" for i in range(12)], 5)
    knn = ProfileKNNClassifier().fit(X, y, treatments=treatments)
    names = knn.profile_names_
    assert len(names) == 12
    med = np.array([np.median(X[treatments == t], axis=0) for t in names])
    assert np.allclose(knn.profiles_, med)
    ref = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(med, knn.profile_labels_)
    Q = rng.normal(size=(40, 5))
    assert knn.predict(Q).tolist() == ref.predict(Q).tolist()
    assert np.allclose(knn.predict_proba(Q).sum(axis=1), 1)
    groups = np.repeat(["q1", "q2"], 20)
    by_group = knn.predict_groups(Q, groups)
    q1 = np.median(Q[:20], axis=0, keepdims=True)
    assert by_group.loc["q1"] == ref.predict(q1)[0]
    assert cosine_similarity(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [3.0, 0.0]])).tolist() == [[0.0, 1.0]]


def test_soft_vote_picks_the_informative_member():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    y = rng.choice(classes, 300)
    onehot = np.eye(3)[np.searchsorted(classes, y)]
    good = 0.7 * onehot + 0.1
    noise = rng.dirichlet(np.ones(3), 300)
    ens = SoftVoteEnsemble(classes=classes, names=["noise", "good"]).fit([noise, good], y)
    assert ens.weights_.tolist() == [0.0, 1.0] or ens.weights_[1] >= 0.9
    assert (ens.predict([noise, good]) == y).mean() == 1.0
    assert simplex_grid(3, 0.5).tolist() == [[0, 0, 1], [0, 0.5, 0.5], [0, 1, 0], [0.5, 0, 0.5], [0.5, 0.5, 0], [1, 0, 0]]
    p = align_proba(np.array([[0.2, 0.8]]), ["b", "a"], ["a", "b", "c"])
    assert p.tolist() == [[0.8, 0.2, 0.0]]
    with pytest.raises(ValueError, match="expected 2 members"):
        ens.predict_proba([good])
