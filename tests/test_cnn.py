"""Tests for moa_features.models.cnn: architectures, training, persistence, determinism."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.class_weight import compute_class_weight

REPO = Path(__file__).resolve().parents[1]

# Keras 3.15 calls np.array(jax_array, copy=False) on every weight read (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def blob_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 (size, size, 6) images of background noise; class ``c`` (0, 1, 2) has
    four bright Gaussian blobs (sigma 1.5 px) in channel ``2 c``. Labels cycle 0, 1, 2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(30.0, 8.0, (n, size, size, 6))
    y = np.arange(n) % 3
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        for cy, cx in rng.uniform(3, size - 3, (4, 2)):
            X[i, :, :, 2 * y[i]] += 150.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
    return np.clip(np.rint(X), 0, 255).astype(np.uint8), y


NAMES = np.array(["actin", "dna", "mito"])


@pytest.fixture(scope="module")
def cnn():
    from moa_features.models import cnn

    return cnn


@pytest.fixture(scope="module")
def data():
    X, y = blob_images(90, 32, seed=0)
    X_test, y_test = blob_images(45, 32, seed=1)
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def baseline(cnn, data):
    """Baseline CNN fitted on string labels."""
    X, y, _, _ = data
    return cnn.CNNClassifier("baseline", epochs=15, random_state=0).fit(X, NAMES[y])


@pytest.fixture(scope="module")
def embedding(cnn, data):
    """Embedding CNN fitted on integer labels."""
    X, y, _, _ = data
    return cnn.CNNClassifier("embedding", epochs=10, random_state=0).fit(X, y)


def test_import_does_not_pull_keras():
    code = "import sys, moa_features, moa_features.models; print('keras' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


def test_import_changes_no_environment():
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = (
        "import os, sys, moa_features.train, moa_features.models.cnn as c; "
        "print(os.environ.get('KERAS_BACKEND'), 'keras' in sys.modules); "
        "c.baseline_model((8, 8, 1), 2); print(os.environ.get('KERAS_BACKEND'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    assert out.stdout.split() == ["None", "False", "jax"]  # set only when Keras is first needed


def test_refuses_keras_on_another_backend():
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    code = "import keras; from moa_features.models import cnn; cnn.baseline_model((8, 8, 1), 2)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode != 0
    assert "JAX backend" in out.stderr and "'numpy'" in out.stderr


def test_backend_is_jax(cnn):
    assert cnn.keras.backend.backend() == "jax"


def test_baseline_architecture_is_the_original(cnn):
    keras = cnn.keras
    model = cnn.baseline_model((100, 100, 6), 3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Rescaling",
        "Conv2D",
        "LeakyReLU",
        "MaxPooling2D",
        "Conv2D",
        "LeakyReLU",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "LeakyReLU",
        "Dropout",
        "Dense",
        "LeakyReLU",
        "Dense",
    ]
    rescale = model.get_layer("rescale")
    assert rescale.scale == pytest.approx(1 / 255) and rescale.offset == 0
    assert model.inputs[0].dtype == "uint8"
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32]
    for conv in convs:
        assert conv.kernel_size == (3, 3) and conv.strides == (1, 1) and conv.padding == "same"
        assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal)
        assert conv.activation is keras.activations.linear  # LeakyReLU is the next layer
    for pool in (model.get_layer("pool1"), model.get_layer("pool2")):
        assert pool.pool_size == (2, 2)
    assert [layer.negative_slope for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)] == [0.2] * 4
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [64, 8, 3]
    assert dense[-1].activation is keras.activations.softmax
    assert model.get_layer("dropout").rate == pytest.approx(0.1)
    # Parameter count by hand: 3*3*6*16+16, 3*3*16*32+32, (25*25*32)*64+64, 64*8+8, 8*3+3.
    per_layer = {
        "conv1": 880,
        "conv2": 4640,
        "dense1": 1_280_064,
        "dense2": 520,
        "probabilities": 27,
    }
    assert {name: model.get_layer(name).count_params() for name in per_layer} == per_layer
    assert model.count_params() == 1_286_131
    assert model.get_layer(cnn.EMBEDDING_LAYER).output.shape == (None, 8)
    assert model.output.shape == (None, 3)


def test_embedding_architecture(cnn):
    keras = cnn.keras
    model = cnn.embedding_model((100, 100, 6), 5)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {
        "BatchNormalization",
        "ReLU",
        "GlobalAveragePooling2D",
        "RandomFlip",
        "RandomRot90",
    } <= kinds
    assert model.get_layer(cnn.EMBEDDING_LAYER).output.shape == (None, 64)
    assert model.output.shape == (None, 5)
    assert model.count_params() < 150_000
    plain = cnn.embedding_model((48, 48, 6), 5, augment=False)
    assert not any(isinstance(layer, (keras.layers.RandomFlip, cnn.RandomRot90)) for layer in plain.layers)
    assert plain.count_params() == model.count_params()  # global pooling: size-independent
    assert [i.name for i in model.inputs] == ["thumbnail", "reference"]
    assert {model.get_layer(f"bn{i}").momentum for i in range(1, 5)} == {0.6}


def test_random_rot90_draws_every_quarter_turn(cnn):
    rng = np.random.default_rng(0)
    x = rng.random((64, 5, 5, 2)).astype("float32")
    layer = cnn.RandomRot90(seed=3)
    out = np.asarray(layer(x, training=True))
    turns = []
    for xi, oi in zip(x, out):
        matches = [k for k in range(4) if np.array_equal(oi, np.rot90(xi, k, axes=(0, 1)))]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {0, 1, 2, 3}
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    with pytest.raises(ValueError, match="square"):
        cnn.RandomRot90()(np.zeros((1, 4, 6, 1), "float32"), training=True)


@pytest.mark.slow
@pytest.mark.parametrize("fitted", ["baseline", "embedding"])
def test_learns_which_channel_has_blobs(fitted, data, request):
    est = request.getfixturevalue(fitted)
    _, _, X_test, y_test = data
    truth = NAMES[y_test] if fitted == "baseline" else y_test
    assert np.mean(est.predict(X_test) == truth) > 0.9
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(est.history_)
    assert len(est.history_["loss"]) == len(est.history_["val_loss"]) <= est.epochs


def test_outputs_shapes_and_label_order(baseline, embedding, data):
    _, y, X_test, _ = data
    np.testing.assert_array_equal(baseline.classes_, NAMES)
    np.testing.assert_array_equal(embedding.classes_, [0, 1, 2])
    for est, dim in ((baseline, 8), (embedding, 64)):
        proba = est.predict_proba(X_test)
        assert proba.shape == (len(X_test), 3)
        assert np.all(proba >= 0)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(est.predict(X_test), est.classes_[proba.argmax(axis=1)])
        emb = est.transform(X_test)
        assert emb.shape == (len(X_test), dim) and np.all(np.isfinite(emb))
    assert baseline.predict(X_test).dtype.kind == "U"  # string labels come back as strings
    # Training labels were balanced, so "balanced" weights are all 1.
    np.testing.assert_allclose(baseline.class_weight_, 1.0)
    assert is_classifier(baseline) and 0.9 < baseline.score(X_test, NAMES[data[3]]) <= 1.0


@pytest.mark.slow
def test_imbalanced_class_weights_and_validation_data(cnn, data):
    X, y, X_test, y_test = data
    keep = np.concatenate([np.flatnonzero(y == 0)[:30], np.flatnonzero(y == 1)[:12], np.flatnonzero(y == 2)[:6]])
    est = cnn.CNNClassifier("baseline", epochs=1).fit(X[keep], y[keep], validation_data=(X_test, y_test))
    expected = len(keep) / (3 * np.array([30, 12, 6]))
    np.testing.assert_allclose(est.class_weight_, expected)
    np.testing.assert_allclose(
        est.class_weight_, compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=y[keep])
    )
    assert len(est.history_["val_loss"]) == 1
    manual = cnn.CNNClassifier(class_weight={0: 2.0, 2: 0.5})._class_weights(np.array([0, 1, 2]), y)
    np.testing.assert_array_equal(manual, [2.0, 1.0, 0.5])


def test_validation_split_keeps_groups_whole_or_stratifies(cnn):
    y = np.repeat([0, 1, 2], 20)
    plates = np.tile(np.arange(10), 6)
    est = cnn.CNNClassifier(validation_fraction=0.2, random_state=1)
    train, val = est._validation_split(y, plates, None)
    assert len(np.intersect1d(plates[train], plates[val])) == 0
    assert len(np.unique(plates[val])) == 2 and len(train) + len(val) == len(y)
    train, val = est._validation_split(y, None, None)
    np.testing.assert_array_equal(np.bincount(y[val]), [4, 4, 4])
    assert est._validation_split(y, None, (None, None)) == (None, None)
    with pytest.raises(ValueError, match="at least 2 distinct groups"):
        est._validation_split(y, np.zeros(len(y)), None)
    with pytest.raises(ValueError, match="at least 2 images per class"):
        est._validation_split(np.array([0, 0, 0, 1]), None, None)


@pytest.mark.parametrize("fitted", ["baseline", "embedding"])
def test_save_load_and_pickle_round_trip(fitted, cnn, data, tmp_path, request):
    est = request.getfixturevalue(fitted)
    _, _, X_test, _ = data
    path = tmp_path / "models" / "cnn.keras"
    est.save(path)
    assert path.exists() and (tmp_path / "models" / "cnn.keras.json").exists()
    loaded = cnn.CNNClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), est.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.transform(X_test), est.transform(X_test))
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    assert loaded.get_params() == est.get_params()
    assert loaded.history_ == est.history_
    unpickled = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(unpickled.predict_proba(X_test), est.predict_proba(X_test))
    with pytest.raises(ValueError, match=r"\.keras"):
        est.save(tmp_path / "cnn.h5")
    with pytest.raises(FileNotFoundError, match="cnn.keras.json"):
        (tmp_path / "models" / "cnn.keras.json").unlink()
        cnn.CNNClassifier.load(path)


@pytest.mark.slow
@pytest.mark.parametrize("fitted", ["baseline", "embedding"])
def test_same_seed_same_predictions_and_clone(fitted, data, request):
    est = request.getfixturevalue(fitted)
    X, y, X_test, _ = data
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "model_")
    twin.fit(X, NAMES[y] if fitted == "baseline" else y)
    np.testing.assert_array_equal(twin.predict_proba(X_test), est.predict_proba(X_test))
    assert twin.history_ == est.history_
    assert clone(est).set_params(epochs=3).get_params()["epochs"] == 3


def test_clear_errors(cnn, baseline, data):
    X, y, _, _ = data
    est = cnn.CNNClassifier()
    with pytest.raises(ValueError, match="4-d"):
        est.fit(X[0], y[:1])
    with pytest.raises(ValueError, match="uint8"):
        est.fit(X.astype(np.float32), y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        est.fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="one label per image"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="architecture"):
        cnn.CNNClassifier(architecture="resnet").fit(X, y)
    with pytest.raises(ValueError, match="square"):
        cnn.CNNClassifier(augment=True).fit(X[:, :, :30], y)
    with pytest.raises(ValueError, match="not seen in y"):
        est.fit(X, y, validation_data=(X[:3], np.array([0, 1, 7])))
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(ValueError, match="trained on"):
        baseline.predict(X[:, :16, :16])


def dark_plate_screen(n_plates: int, per_class: int, size: int, seed: int):
    """Dark uint8 (size, size, 3) images (means ~3-20 DN, like RxRx thumbnails) on plates with a
    per-channel gain (0.5-2x): class ``c`` of 3 has bright puncta in channel ``c``; class 0 is
    the control. Returns images, labels, plates."""
    rng = np.random.default_rng(seed)
    X, y, plates = [], [], []
    yy, xx = np.mgrid[:size, :size]
    for p in range(n_plates):
        gain = np.exp(rng.uniform(np.log(0.5), np.log(2.0), 3))
        for c in range(3):
            for _ in range(per_class):
                img = rng.normal(4.0, 1.0, (size, size, 3))
                for cy, cx in rng.uniform(2, size - 2, (3, 2)):
                    img[..., c] += 12.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
                X.append(img * gain)
                y.append(c)
                plates.append(f"plate{p}")
    X = np.clip(np.rint(np.stack(X)), 0, 255).astype(np.uint8)
    return X, np.array(y), np.array(plates)


def test_plate_reference_is_each_plates_control_median(cnn):
    X, y, plates = dark_plate_screen(3, 4, 16, seed=0)
    ref = cnn.plate_reference(X, plates, y == 0)
    assert ref.shape == (len(X), 3) and ref.dtype == np.float32
    for p in np.unique(plates):
        rows = plates == p
        means = X[rows & (y == 0)].astype(float).mean(axis=(1, 2))
        np.testing.assert_allclose(ref[rows], np.tile(np.median(means, axis=0), (rows.sum(), 1)), rtol=1e-6)
    # Per plate only: changing another plate's images leaves a plate's reference unchanged.
    X2 = X.copy()
    X2[plates == "plate2"] = 200
    ref2 = cnn.plate_reference(X2, plates, y == 0)
    np.testing.assert_array_equal(ref2[plates != "plate2"], ref[plates != "plate2"])
    assert np.all(ref2[plates == "plate2"] == 200)
    # A plate gain cancels: X / reference barely moves when a plate gets half the gain.
    X3 = X.copy()
    X3[plates == "plate0"] //= 2  # halve the gain
    ref3 = cnn.plate_reference(X3, plates, y == 0)
    rows = plates == "plate0"
    ratio = X3[rows] / ref3[rows][:, None, None, :]
    assert abs(np.median(ratio) - np.median(X[rows] / ref[rows][:, None, None, :])) < 0.1
    assert np.all(cnn.plate_reference(np.zeros_like(X), plates, y == 0) == cnn.MIN_REFERENCE)
    with pytest.raises(ValueError, match="plate 'plate1' has no reference"):
        cnn.plate_reference(X, plates, (y == 0) & (plates != "plate1"))
    with pytest.raises(ValueError, match="one entry per thumbnail"):
        cnn.plate_reference(X, plates[:-1], y == 0)


@pytest.mark.slow
def test_embedding_fits_dark_images_with_plate_gains(cnn):
    """The regression test of the demo's failure: dark thumbnails with per-plate gains.

    Before the fix (batch-norm momentum 0.99, input /255) the network predicted a single class
    at inference (training accuracy ~1/3) while its training loss fell. With fast batch-norm
    statistics and the per-plate reference it fits its training rows and generalises to a
    held-out plate with its own gain.
    """
    X, y, plates = dark_plate_screen(5, 12, 20, seed=0)
    ref = cnn.plate_reference(X, plates, y == 0)
    train, val, test = plates < "plate3", plates == "plate3", plates == "plate4"
    est = cnn.CNNClassifier("embedding", epochs=25, patience=4, batch_size=16, random_state=0)
    est.fit(X[train], y[train], reference=ref[train], validation_data=(X[val], y[val], ref[val]))
    assert est.uses_reference_
    assert np.mean(est.predict(X[train], ref[train]) == y[train]) > 0.9
    assert np.mean(est.predict(X[test], ref[test]) == y[test]) > 0.8
    with pytest.raises(ValueError, match="needs reference"):
        est.predict(X[test])
    model = est.model_
    assert [i.name for i in model.inputs] == ["thumbnail", "reference"]
    with pytest.raises(ValueError, match="only for architecture='embedding'"):
        cnn.CNNClassifier("baseline").fit(X, y, reference=ref)
