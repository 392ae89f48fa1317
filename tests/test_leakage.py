"""No-leakage guarantees: a held-out plate's (or treatment's) rows reach no fitted step.

Method: perturbation. The test rows (features, labels, thumbnails) are replaced with garbage
in the *raw table*, then the whole path runs again: plate normalisation, feature selection,
imputation, XGBoost (with its inner early-stopping split), kNN profiles, the class-prior
baseline, both CNNs (and the embedding CNN's per-plate input reference) and the ensemble
weights. If any step had seen a test row, some
fitted parameter or some prediction on the training rows would change. Everything must be
identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_features import schema
from moa_features.train import Settings, fit_fold, fold_data, load_training_data, outer_folds, predict_fold

from _helpers import CLASSES, constructed_screen

TEST_PLATE = "exp1_2"
TEST_TREATMENT = "drug1_0"


def _perturb(table: pd.DataFrame, thumbs: np.ndarray, value: str, column: str = schema.PLATE, seed: int = 1):
    """Copies with the rows where ``column == value`` given garbage features, labels and thumbnails.

    Outside a held-out plate, labels are drawn among the treated classes: which wells are
    negative controls is design metadata (it sets every plate's normalisation), not a label.
    """
    rng = np.random.default_rng(seed)
    t, th = table.copy(), thumbs.copy()
    rows = np.flatnonzero(t[column].to_numpy() == value)
    feats = schema.feature_columns(t.columns)
    t.loc[rows, feats] = rng.normal(1e3, 1e3, size=(len(rows), len(feats)))
    t.loc[rows[::2], feats[0]] = np.nan
    moa = t[schema.MOA].to_numpy().copy()
    pool = np.array(CLASSES if column == schema.PLATE else CLASSES[1:])
    moa[rows] = rng.permutation(pool[rng.integers(0, len(pool), len(rows))])
    t[schema.MOA] = moa
    th[rows] = rng.integers(0, 256, size=th[rows].shape, dtype=np.uint8)
    return t, th


def _fitted_state(fitted: dict) -> dict:
    """Every fitted parameter that a leak would move, as comparable arrays."""
    pre = fitted["preprocess"]
    state = {
        "support": pre.named_steps["select"].support_,
        "impute": pre.named_steps["impute"].statistics_,
        "xgboost": np.frombuffer(bytes(fitted["xgboost"].booster_.save_raw("json")), dtype=np.uint8),
        "knn": fitted["knn"].profiles_,
        "majority": fitted["majority"].class_prior_,
        "ensemble": np.array(list(fitted["ensemble"].weights_.values())),
    }
    for name in ("cnn", "cnn_embedding"):
        for i, w in enumerate(fitted[name].model_.get_weights() if name in fitted else []):
            state[f"{name}_{i}"] = np.asarray(w)
    return state


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    table, thumbs = constructed_screen(tmp_path_factory.mktemp("leak"), n_plates=4, wells_per_class=2, size=8)
    return pd.read_parquet(table), np.load(thumbs)


def test_normalisation_of_training_plates_ignores_the_test_plate(screen):
    table, thumbs = screen
    bad, bad_thumbs = _perturb(table, thumbs, TEST_PLATE)
    for method in ("controls", "plate"):
        a = load_training_data(table, thumbs=thumbs, normalize=method)
        b = load_training_data(bad, thumbs=thumbs, normalize=method)
        train = a.plates != TEST_PLATE
        assert np.array_equal(a.X[train], b.X[train]), method
        assert not np.allclose(a.X[~train], b.X[~train])  # the perturbation did reach the test plate
        # The embedding CNN's per-plate input reference: the test plate's own controls only.
        c = load_training_data(table, thumbs=bad_thumbs, normalize=method)
        assert np.array_equal(a.thumb_reference[train], c.thumb_reference[train]), method
        assert not np.allclose(a.thumb_reference[~train], c.thumb_reference[~train])
    # pooled: each plate's own control centre, the spread pooled over the fold's training plates only
    a, b = (
        fold_data(d, np.flatnonzero(d.plates != TEST_PLATE))
        for d in (load_training_data(table, normalize="pooled"), load_training_data(bad, normalize="pooled"))
    )
    train = a.plates != TEST_PLATE
    assert np.array_equal(a.X[train], b.X[train])
    assert not np.allclose(a.X[~train], b.X[~train])


@pytest.mark.parametrize(
    "with_images,split",
    [(False, "plate"), (False, "nsc"), pytest.param(True, "plate", marks=pytest.mark.slow, id="with-cnns")],
)
def test_no_fitted_step_sees_the_test_rows(screen, with_images, split):
    table, thumbs = screen
    column, value = (schema.PLATE, TEST_PLATE) if split == "plate" else (schema.TREATMENT, TEST_TREATMENT)
    bad_table, bad_thumbs = _perturb(table, thumbs, value, column)
    models = ("cnn", "xgboost", "ensemble", "knn") if with_images else ("xgboost", "ensemble", "knn")
    settings = Settings(models=models, cnn_epochs=2, cnn_patience=1, split=split)
    clean = load_training_data(table, thumbs=thumbs if with_images else None)
    dirty = load_training_data(bad_table, thumbs=bad_thumbs if with_images else None)
    folds, params = outer_folds(clean, split, None)
    ((train, test),) = [(tr, te) for tr, te in folds if value in set(clean.meta[column].iloc[te])]
    assert value not in set(clean.meta[column].iloc[train])

    clean, dirty = fold_data(clean, train), fold_data(dirty, train)  # the default (pooled) pools training plates
    fitted_clean, _ = fit_fold(clean, train, settings, params)
    fitted_dirty, _ = fit_fold(dirty, train, settings, params)
    a, b = _fitted_state(fitted_clean), _fitted_state(fitted_dirty)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), f"fitted step {key!r} changed when only the test plate changed"
    pa, pb = predict_fold(fitted_clean, clean, train), predict_fold(fitted_dirty, dirty, train)
    images = {"cnn", "cnn_embedding", "ensemble_no_embedding"}
    expected = {"xgboost", "knn", "ensemble", "majority"} | (images if with_images else set())
    assert pa.keys() == expected
    for name in pa:
        assert np.array_equal(pa[name], pb[name]), name
    # Control: the same perturbation on a training plate does change the fitted models.
    other, other_thumbs = _perturb(table, thumbs, clean.meta[column].iloc[train[0]], column)
    moved = load_training_data(other, thumbs=other_thumbs if with_images else None)
    fitted_moved, _ = fit_fold(moved, train, Settings(models=("xgboost",), split=split), params)
    assert not np.array_equal(_xgb_bytes(fitted_moved), _xgb_bytes(fitted_clean))


def _xgb_bytes(fitted: dict) -> bytes:
    return bytes(fitted["xgboost"].booster_.save_raw("json"))
