"""XGBoost estimator (local and Dask) and 1-NN profile classifier (the ensemble: tests/test_ensemble.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier

from moa_features.models.gbm import XGBoostClassifier
from moa_features.models.knn import ProfileKNNClassifier, consensus_profiles


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


def test_xgboost_learns_balances_and_is_deterministic():
    X, y, g = _blobs()
    Xt, yt, _ = _blobs(seed=1)
    model = XGBoostClassifier(n_estimators=200).fit(X, y, groups=g)
    assert model.classes_.tolist() == ["c0", "c1", "c2"]
    ints = XGBoostClassifier(n_estimators=20).fit(X, np.searchsorted(["c0", "c1", "c2"], y) * 7)
    assert ints.classes_.tolist() == [0, 7, 14] and ints.score(Xt, np.searchsorted(["c0", "c1", "c2"], yt) * 7) > 0.8
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


def test_xgboost_early_stopping_holds_out_treatments_and_plates():
    # nsc-plate layout: 24 treatments of 10 rows; each plate holds 2 treatments
    X, y, _ = _blobs(n_per=(96, 96, 48))
    treatments = np.repeat(np.arange(24), 10).astype(str)
    plates = np.repeat(np.arange(12), 20).astype(str)
    model = XGBoostClassifier(n_estimators=30).fit(X, y, groups=treatments, plates=plates)
    y_enc = np.searchsorted(model.classes_, y)
    inner_tr, inner_va = model._validation_split(y_enc, treatments, plates)
    assert np.array_equal(model.validation_rows_, inner_va) and len(inner_va)
    assert not set(plates[inner_tr]) & set(plates[inner_va])  # no validation plate in inner training
    assert not set(treatments[inner_tr]) & set(treatments[inner_va])
    # without plates only treatments are held out: validation plates stay in inner training
    g_tr, g_va = model._validation_split(y_enc, treatments, None)
    assert not set(treatments[g_tr]) & set(treatments[g_va]) and set(plates[g_tr]) & set(plates[g_va])


def test_knn_consensus_query_known_answer():
    # Training: treatments "a1", "a2" (class A, direction e0) and "b1", "b2" (class B, direction e1),
    # two wells of two sites each. The query treatment "q" has three wells: two along e0 + small e1,
    # one outlier well along e1. Row by row, the outlier's sites are nearest to B; its consensus
    # (well medians -> treatment median) points along e0, so every row of "q" gets class A.
    e0, e1 = np.eye(3)[0], np.eye(3)[1]
    rows, y, treat, wells = [], [], [], []
    for t, label, d in (("a1", "A", e0), ("a2", "A", e0 + 0.1 * e1), ("b1", "B", e1), ("b2", "B", e1 + 0.1 * e0)):
        for w in range(2):
            for _ in range(2):
                rows.append(d + 0.01 * w)
                y.append(label)
                treat.append(t)
                wells.append(f"{t}-{w}")
    knn = ProfileKNNClassifier(center=False).fit(np.array(rows), np.array(y), treatments=treat, wells=wells)
    Q = np.array([e0 + 0.3 * e1] * 2 + [e0 + 0.2 * e1] * 2 + [e1 + 0.05 * e0] * 2)
    q_wells = np.repeat(["q-0", "q-1", "q-2"], 2)
    q_treat = np.full(6, "q")
    assert knn.predict(Q).tolist() == ["A", "A", "A", "A", "B", "B"]  # each row its own query
    assert knn.predict(Q, treatments=q_treat, wells=q_wells).tolist() == ["A"] * 6
    proba = knn.predict_proba(Q, treatments=q_treat, wells=q_wells)
    assert proba.shape == (6, 2) and np.allclose(proba, proba[0]) and proba[0, 0] > 0.5
    # the consensus is the per-feature median of the well medians: e0 + 0.3 e1
    expected = np.median([np.median(Q[q_wells == w], axis=0) for w in ("q-0", "q-1", "q-2")], axis=0)
    sim = knn.similarity(Q, treatments=q_treat, wells=q_wells)[0]
    P = knn.profiles_
    cos = P @ expected / np.linalg.norm(P, axis=1) / np.linalg.norm(expected)
    assert np.allclose(expected, e0 + 0.3 * e1)
    assert sim == pytest.approx([cos[:2].max(), cos[2:].max()])  # profiles sorted: a1, a2, b1, b2
    nearest = knn.profile_names_[knn.nearest_profile(Q, treatments=q_treat, wells=q_wells)]
    assert nearest.tolist() == ["a2"] * 6  # e0 + 0.1 e1 is the closest direction to e0 + 0.3 e1
    # two query treatments at once: rows keep their own treatment's answer, in row order
    both = np.vstack([Q, np.array([e1] * 2)])
    labels = knn.predict(both, treatments=np.r_[q_treat, ["r", "r"]], wells=np.r_[q_wells, ["r-0", "r-0"]])
    assert labels.tolist() == ["A"] * 6 + ["B"] * 2
    with pytest.raises(ValueError, match="one entry per row"):
        knn.predict_proba(Q, treatments=q_treat[:3])


def test_xgboost_save_load_roundtrip(tmp_path):
    X, y, g = _blobs()
    model = XGBoostClassifier(n_estimators=50, early_stopping_rounds=None).fit(X, y)
    assert model.best_iteration_ == 49
    path = model.save(tmp_path / "xgboost.json")
    back = XGBoostClassifier.load(path)
    assert back.classes_.tolist() == model.classes_.tolist()
    assert back.get_params() == model.get_params()
    assert np.allclose(back.predict_proba(X), model.predict_proba(X))
    with pytest.raises(ValueError, match="features"):
        back.predict_proba(X[:, :3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        XGBoostClassifier().fit(X, np.full(len(X), "a"))


def test_xgboost_dask_matches_local_structure():
    distributed = pytest.importorskip("distributed")
    X, y, g = _blobs()
    Xt, yt, _ = _blobs(seed=1)
    cluster_kw = dict(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with distributed.LocalCluster(**cluster_kw) as cluster:
        dask_model = XGBoostClassifier(n_estimators=100, scheduler=cluster.scheduler_address).fit(X, y, groups=g)
    local = XGBoostClassifier(n_estimators=100).fit(X, y, groups=g)
    assert dask_model.classes_.tolist() == local.classes_.tolist()
    assert dask_model.predict_proba(Xt).shape == local.predict_proba(Xt).shape
    assert np.mean(dask_model.predict(Xt) == yt) > 0.8
    assert abs(np.mean(dask_model.predict(Xt) == yt) - np.mean(local.predict(Xt) == yt)) < 0.1


@pytest.mark.parametrize("center", [False, True])
def test_knn_matches_sklearn_cosine_1nn_on_consensus_profiles(center):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = np.repeat(["a", "b", "c"], 20)
    treatments = np.repeat([f"t{i}" for i in range(12)], 5)
    wells = np.arange(60) // 5 * 10 + np.arange(60) % 5 // 2  # wells of 2, 2 and 1 rows within each treatment
    knn = ProfileKNNClassifier(center=center).fit(X, y, treatments=treatments, wells=wells)
    names = knn.profile_names_
    assert len(names) == 12
    # Ljosa consensus: median over wells of the well medians
    med = np.array(
        [
            np.median([np.median(X[wells == w], axis=0) for w in np.unique(wells[treatments == t])], axis=0)
            for t in names
        ]
    )
    assert np.allclose(consensus_profiles(X, treatments, wells)[1], med)
    shift = med.mean(axis=0) if center else np.zeros(5)
    assert np.allclose(knn.profiles_, med - shift)
    labels = knn.classes_[knn.profile_codes_]
    ref = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(med - shift, labels)
    Q = rng.normal(size=(40, 5))
    assert knn.predict(Q).tolist() == ref.predict(Q - shift).tolist()
    assert np.allclose(knn.predict_proba(Q).sum(axis=1), 1)


def test_centred_knn_predicts_the_control_class():
    # after control normalisation the control consensus is ~0: plain cosine can never choose it
    rng = np.random.default_rng(0)
    X = np.vstack(
        [
            rng.normal(0, 0.05, (10, 4)),
            rng.normal(0, 0.05, (10, 4)) + [3, 0, 0, 0],
            rng.normal(0, 0.05, (10, 4)) + [0, 3, 0, 0],
        ]
    )
    y = np.repeat(["control", "a", "b"], 10)
    treatments = np.repeat(["dmso", "ta", "tb"], 10)
    query = rng.normal(0, 0.05, (20, 4))  # new control wells
    plain = ProfileKNNClassifier(center=False).fit(X, y, treatments=treatments)
    auto = ProfileKNNClassifier().fit(X, y, treatments=treatments)
    assert (plain.predict(query) == "control").mean() < 0.5
    assert auto.centred_ and (auto.predict(query) == "control").all()
    # without a near-zero profile "auto" keeps the plain cosine
    treated = np.isin(y, ["a", "b"])
    assert not ProfileKNNClassifier().fit(X[treated], y[treated], treatments=treatments[treated]).centred_
