"""The CNNs run on batches of one shape (compiled once) and share compiled steps through JAX's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")  # Keras itself is imported on the JAX backend by cnn._keras()

from moa_features.models import cnn

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def test_padding_keeps_predictions_and_the_validation_loss_exact():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (45, 12, 12, 6), dtype=np.uint8)
    y = np.arange(45) % 3
    Xv, yv = X[:13], y[:13]  # 13 rows: one padded batch of 8 + 5
    est = cnn.CNNClassifier(architecture="embedding", epochs=1, batch_size=8, patience=5, random_state=0)
    est.fit(X, y, validation_data=(Xv, yv))
    proba = est.predict_proba(Xv)
    assert proba.shape == (13, 3)
    # the reported validation loss is the mean cross-entropy over the 13 real rows, not over the padding
    expected = -np.mean(np.log(np.clip(proba[np.arange(13), yv], 1e-7, 1)))
    assert est.history_["val_loss"][0] == pytest.approx(expected, rel=1e-3)
    # a row's prediction does not depend on the rows padded after it
    assert np.allclose(est.predict_proba(Xv[:1]), proba[:1], atol=1e-6)
    # training draws full batches only: 45 rows at 8 per batch = 5 batches of 8 per epoch
    batches = cnn._full_batches(cnn._keras())(X, np.eye(3)[y], np.ones(45), 8, 0)
    assert len(batches) == 5 and {len(batches[i][1]) for i in range(len(batches))} == {8}
    first = batches[0][1].copy()
    batches.on_epoch_end()
    assert not np.array_equal(first, batches[0][1])  # a new shuffle each epoch


def test_compilation_cache_follows_the_environment(tmp_path):
    """The cache folder comes from MOA_FEATURES_JAX_CACHE (``off`` disables it); a fit writes compiled steps there."""
    code = (
        "import numpy as np, jax; from moa_features.models import cnn; "
        "X = np.random.default_rng(0).integers(0, 255, (16, 12, 12, 6), dtype=np.uint8); "
        "cnn.CNNClassifier(epochs=1, batch_size=8, validation_fraction=0).fit(X, np.arange(16) % 2); "
        "print(jax.config.jax_compilation_cache_dir)"
    )
    env = os.environ | {"PYTHONPATH": str(REPO), "MOA_FEATURES_JAX_CACHE": str(tmp_path / "jax")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "jax")
    assert any((tmp_path / "jax").iterdir())
    env["MOA_FEATURES_JAX_CACHE"] = "off"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "None"
