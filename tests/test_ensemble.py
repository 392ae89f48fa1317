"""MoAEnsemble: weights on an inner split of the outer kind, metadata routing, fallback, one code path with train."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import cross_val_score

from moa_features import train
from moa_features.io import read_table
from moa_features.models.ensemble import (
    MoAEnsemble,
    align_proba,
    balanced_log_loss,
    choose_weights,
    fit_temperature,
    simplex_grid,
    temper,
    unit_losses,
)
from moa_features.models.gbm import XGBoostClassifier
from moa_features.models.splits import NSCSplit
from moa_features.training.folds import inner_cv

from _helpers import constructed_screen

FAST = (("xgboost", XGBoostClassifier(n_estimators=30, early_stopping_rounds=5)), "knn")


def _screen(seed: int = 0, n_treatments: int = 5, noise: float = 1.0):
    """3 MoAs x ``n_treatments`` treatments x 3 wells x 2 sites; each treatment has its own offset."""
    rng = np.random.default_rng(seed)
    X, y, treatments, wells = [], [], [], []
    for k in range(3):
        for t in range(n_treatments):
            centre = rng.normal(0, 0.5, 10)
            centre[k] += 3.0
            for w in range(3):
                for _ in range(2):
                    X.append(centre + rng.normal(0, noise, 10))
                    y.append(f"moa{k}")
                    treatments.append(f"t{k}_{t}")
                    wells.append(f"t{k}_{t}_w{w}")
    return np.array(X), np.array(y), np.array(treatments), np.array(wells)


def test_choose_weights_picks_the_informative_member_or_blends():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    onehot = np.eye(3)[y]
    good, noise = 0.7 * onehot + 0.1, rng.dirichlet(np.ones(3), 300)
    weights, _, fallback = choose_weights([noise, good], y, 0.1)
    assert weights.tolist() == [0.0, 1.0] and fallback == 1  # no blend beats the good member
    # complementary members (each knows different classes): a blend beats both
    half_a = np.where((y == 0)[:, None], onehot * 0.8 + 0.066, 1 / 3)
    half_b = np.where((y > 0)[:, None], onehot * 0.8 + 0.066, 1 / 3)
    weights, loss, fallback = choose_weights([half_a, half_b], y, 0.1)
    assert fallback is None and 0 < weights[0] < 1
    losses = [unit_losses(y, w * half_a + (1 - w) * half_b) for w in np.linspace(0, 1, 11)]
    best = min(losses, key=np.mean)
    assert loss <= best.mean() + best.std(ddof=1) / np.sqrt(len(y)) + 1e-9  # within one SE of the best blend
    assert simplex_grid(3, 0.5).tolist() == [
        [0, 0, 1],
        [0, 0.5, 0.5],
        [0, 1, 0],
        [0.5, 0, 0.5],
        [0.5, 0.5, 0],
        [1, 0, 0],
    ]
    assert align_proba(np.array([[0.2, 0.8]]), ["b", "a"], ["a", "b", "c"]).tolist() == [[0.8, 0.2, 0.0]]


def test_inner_split_is_of_the_outer_kind_and_metadata_reach_the_members():
    X, y, treatments, wells = _screen()
    ens = MoAEnsemble(members=FAST, cv=NSCSplit(4)).fit(X, y, groups=treatments, treatments=treatments, wells=wells)
    inner, val = ens.inner_split_
    assert len(val) and not set(treatments[inner]) & set(treatments[val])  # held-out treatments, like NSC
    # the kNN got the treatments: one consensus profile per training treatment, not one per row
    assert len(ens.members_["knn"].profile_names_) == len(np.unique(treatments))
    assert sum(ens.weights_.values()) == pytest.approx(1) and set(ens.weights_) == {"xgboost", "knn"}
    assert ens.dropped_ == {} and ens.notes_ == {}
    # without treatments the kNN compares rows, and the ensemble says so; no images: no CNN embedding
    rows = MoAEnsemble(members=(*FAST, "cnn_embedding")).fit(X, y, groups=treatments)
    assert len(rows.members_["knn"].profile_names_) == len(y)
    assert "rows" in rows.notes_["knn"] and rows.dropped_ == {"cnn_embedding": "no images given"}
    with pytest.raises(TypeError, match="unexpected metadata"):
        MoAEnsemble(members=FAST).fit(X, y, sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match="one entry per row"):
        MoAEnsemble(members=FAST).fit(X, y, treatments=treatments[:-1])


def test_routing_inside_nested_cross_validation():
    """Under a caller's metadata routing, cross_val_score routes groups to the outer splitter and to the
    ensemble, which routes them on to its inner splitter and XGBoost, and treatments to the kNN."""
    X, y, treatments, wells = _screen()
    with sklearn.config_context(enable_metadata_routing=True):
        scores = cross_val_score(
            MoAEnsemble(members=FAST, cv=NSCSplit(3)),
            X,
            y,
            cv=NSCSplit(3),
            params={"groups": treatments, "treatments": treatments, "wells": wells},
        )
    assert len(scores) == 3 and scores.mean() > 0.8


def test_falls_back_to_its_best_member_and_the_ablation_reuses_the_inner_split():
    X, y, treatments, _ = _screen(noise=0.5)
    junk = ("junk", DummyClassifier(strategy="prior"))  # knows nothing but the class priors
    ens = MoAEnsemble(members=(*FAST, junk), cv=NSCSplit(4)).fit(X, y, groups=treatments, treatments=treatments)
    # on the inner validation rows, within one standard error (over treatments) of the best single member
    tempered = {n: temper(p, ens.temperatures_[n]) for n, p in ens.inner_proba_.items()}
    best = min(tempered, key=lambda n: balanced_log_loss(ens.inner_y_, tempered[n]))
    per = unit_losses(ens.inner_y_, tempered[best], ens.inner_units_)
    assert ens.validation_loss_ <= per.mean() + per.std(ddof=1) / np.sqrt(len(per)) + 1e-9
    assert len(per) == len(np.unique(treatments[ens.inner_split_[1]]))  # the units are the held-out treatments
    assert ens.weights_["junk"] < max(ens.weights_["xgboost"], ens.weights_["knn"])
    sub = ens.without(["junk"])
    assert set(sub.weights_) == {"xgboost", "knn"} and sub.members_["knn"] is ens.members_["knn"]
    assert sub.inner_split_ is ens.inner_split_ and sum(sub.weights_.values()) == pytest.approx(1)
    assert np.allclose(sub.predict_proba(X).sum(axis=1), 1)
    with pytest.raises(ValueError, match="no member left"):
        ens.without(["xgboost", "knn", "junk"])


def test_train_and_the_estimator_are_one_path(tmp_path):
    """fit_fold/predict_fold give exactly the predictions of MoAEnsemble fitted directly on the same rows."""
    table, _ = constructed_screen(tmp_path)
    data = train.load_training_data(read_table(table), exclude_labels=["Negative control"])
    settings = train.Settings(models=("ensemble",), split="nsc")
    folds, params = train.outer_folds(data, settings.split, settings.n_splits)
    tr, te = folds[0]
    fitted, _ = train.fit_fold(data, tr, settings, params)
    via_train = train.predict_fold(fitted, data, te)["ensemble"]

    pre = fitted["preprocess"]
    direct = MoAEnsemble(seed=settings.seed, cv=inner_cv("nsc", settings.seed), member_options={"n_jobs": 1})
    direct.fit(
        pre.transform(data.X[tr]),
        data.y[tr],
        groups=params["groups"][tr],
        treatments=data.profiles[tr],
        wells=data.wells[tr],
    )
    queries = {"treatments": data.profiles[te], "wells": data.wells[te]}  # held-out consensus profiles
    proba = align_proba(direct.predict_proba(pre.transform(data.X[te]), **queries), direct.classes_, data.classes)
    assert np.allclose(proba, via_train)
    assert direct.weights_ == fitted["ensemble"].weights_
    # the fold's xgboost and knn are the ensemble's members (one fit each)
    assert fitted["xgboost"] is fitted["ensemble"].members_["xgboost"]


def _sharp_member(n: int = 4000, sharpness: float = 5.0, seed: int = 0):
    """Rows whose class is drawn from softmax(z); a member that reports softmax(sharpness * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 4))
    truth = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in truth])
    return y, truth, temper(truth, 1 / sharpness)


def test_temperature_scaling_recovers_a_members_overconfidence():
    y, truth, sharp = _sharp_member(sharpness=5.0)
    assert np.allclose(temper(truth, 0.2), sharp)  # temper divides the logits by the temperature
    assert np.array_equal(temper(sharp, 3.0).argmax(axis=1), sharp.argmax(axis=1))  # never changes the answer
    t = fit_temperature(sharp, y)
    assert 4.0 < t < 6.0  # the member is 5x too sharp: a temperature near 5 undoes it
    assert 0.8 < fit_temperature(truth, y) < 1.25  # a calibrated member stays as it is
    assert balanced_log_loss(y, temper(sharp, t)) < balanced_log_loss(y, sharp)
    assert temper(np.array([[0.0, 0.4, 0.6]]), 2.0)[0, 0] == 0  # classes a member never saw stay at 0


def test_one_standard_error_rule_prefers_even_blends_that_the_units_cannot_tell_apart():
    """Member ``a`` is excellent on 3 of 6 treatments and poor on the others, ``b`` middling on all.
    With the rows as independent units ``a``'s lower loss is clear and it takes all the weight; with
    the 6 treatments as units the difference is within one standard error and the blend is even."""
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 3, n)
    onehot = np.eye(3)[y]
    treatments = np.repeat(np.arange(6), n // 6)
    qa = np.array([0.9, 0.9, 0.9, 0.4, 0.4, 0.4])[treatments, None]
    a = qa * onehot + (1 - qa) * rng.dirichlet(np.ones(3), n)
    b = 0.45 * onehot + 0.55 * rng.dirichlet(np.ones(3), n)
    assert balanced_log_loss(y, a) < balanced_log_loss(y, b)
    w_rows, _, fb_rows = choose_weights([a, b], y, 0.1)
    assert w_rows.tolist() == [1.0, 0.0] and fb_rows == 0
    w_units, _, fb_units = choose_weights([a, b], y, 0.1, treatments)
    assert w_units.tolist() == [0.5, 0.5] and fb_units is None
    # a member far worse than the other gets little weight, even with few units
    junk = rng.dirichlet(np.ones(3), n)
    w, _, _ = choose_weights([junk, a], y, 0.1, treatments)
    assert w[0] <= 0.1
    # the per-unit losses average to the balanced log-loss
    assert unit_losses(y, a, treatments).mean() == pytest.approx(balanced_log_loss(y, a))


def test_members_are_calibrated_before_the_blend_on_the_inner_split():
    X, y, treatments, wells = _screen(noise=1.5)
    meta = {"groups": treatments, "treatments": treatments, "wells": wells}
    ens = MoAEnsemble(members=FAST, cv=NSCSplit(4)).fit(X, y, **meta)
    # each temperature is the one that minimises that member's loss on the inner validation rows
    for name, p in ens.inner_proba_.items():
        assert ens.temperatures_[name] == pytest.approx(fit_temperature(p, ens.inner_y_))
        # tempering never makes a member worse there (which way it goes depends on the inner split, whose
        # groups scikit-learn releases order differently: a 1-NN right everywhere is sharpened, else flattened)
        assert (
            balanced_log_loss(ens.inner_y_, temper(p, ens.temperatures_[name]))
            <= balanced_log_loss(ens.inner_y_, p) + 1e-12
        )
    # predictions blend the tempered members with the chosen weights
    members = {
        n: align_proba(m.predict_proba(X, **({"treatments": treatments, "wells": wells} if n == "knn" else {})),
                       m.classes_, ens.classes_)
        for n, m in ens.members_.items()
    }  # fmt: skip
    expected = sum(w * temper(members[n], ens.temperatures_[n]) for n, w in ens.weights_.items())
    assert np.allclose(ens.predict_proba(X, treatments=treatments, wells=wells), expected)
    assert np.allclose(ens.blend(members), expected)
    raw = MoAEnsemble(members=FAST, cv=NSCSplit(4), calibrate=False).fit(X, y, **meta)
    assert set(raw.temperatures_.values()) == {1.0}


def test_saved_ensemble_keeps_its_temperatures(tmp_path):
    X, y, treatments, wells = _screen(noise=1.5)
    meta = {"treatments": treatments, "wells": wells}
    ens = MoAEnsemble(members=FAST, cv=NSCSplit(4)).fit(X, y, groups=treatments, **meta)
    assert ens.temperatures_["knn"] != 1.0
    ens.save(tmp_path / "ensemble.joblib")
    loaded = MoAEnsemble.load(tmp_path / "ensemble.joblib", ens.members_)
    assert loaded.temperatures_ == ens.temperatures_
    assert np.allclose(loaded.predict_proba(X, **meta), ens.predict_proba(X, **meta))
