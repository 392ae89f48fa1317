"""Keras CNNs on site thumbnails: the original baseline and a small embedding CNN.

Both networks take ``(N, S, S, C)`` uint8 thumbnails (``features/NAME.thumbs.npy``,
S=100, C=6 by default) and scale them to float inside the model, so the saved ``.keras``
file is self-contained and a large thumbnail array is never copied to float32 as a whole.

- :func:`baseline_model` is the original project's network, layer for layer (input
  scaled to [0, 1] by a ``Rescaling`` layer, two 3x3 conv + max-pool stages, Dense 64 ->
  Dropout 0.1 -> Dense 8 -> softmax, LeakyReLU 0.2, He-normal conv initialisation); its
  8-d Dense output is its "embedding". It stays faithful: no per-plate input normalisation.
- :func:`embedding_model` is a small, better-regularised CNN (conv blocks with batch
  normalisation + ReLU, global average pooling, a 64-d Dense embedding, random flips
  and 90-degree rotations during training) whose embedding feeds the ensemble. It has a
  second input, the per-channel *reference intensity* of the image's plate (DN), and
  divides every pixel by it (:class:`ChannelReference`).

Per-plate input normalisation (embedding CNN only). Screens carry strong per-plate and
per-experiment intensity batch effects (a per-channel gain of the microscope and stains),
larger than most phenotypes. Exactly like the feature normalisation in
:mod:`moa_features.profiling`, :func:`plate_reference` computes, for each plate on its own,
the median over the plate's negative-control sites of each site's mean intensity per
channel; the network sees ``pixel / reference``, i.e. brightness relative to the plate's
untreated cells (1.0 = an average control pixel). It is a per-plate transform (no
statistics cross plates, none come from labels), so a held-out plate is normalised by its
own controls and leaks nothing into training. It also brings the dark 8-bit thumbnails
(channel means ~5-20 of 255, i.e. 0.02-0.08 after a /255 rescaling) to unit scale, where
batch normalisation's initial moving statistics (mean 0, variance 1) are close to the real
ones. Without a reference, the embedding CNN divides by 255 (the baseline's [0, 1]).

- :class:`CNNClassifier` wraps either in a scikit-learn estimator (``fit``,
  ``predict``, ``predict_proba``, ``transform``, ``get_params``/``set_params``,
  ``clone``) with class-balanced loss weights, early stopping on a held-out split
  (grouped, e.g. by plate, when ``groups`` is given) and ``save``/``load``.

Keras is imported lazily, on the first model built, fitted or loaded (importing this module
changes no environment variable); ``KERAS_BACKEND`` defaults to ``jax`` at that moment and
any other backend is refused. The code is backend-neutral (``keras.ops`` only). Nothing
else in ``moa_features`` imports Keras.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from moa_features import profiling
from moa_features._optional import require
from moa_features.io import write_json
from moa_features.models.splits import validation_split

if TYPE_CHECKING:
    import keras


def _keras():
    """Keras on the JAX backend, imported on first use (``KERAS_BACKEND`` defaults to ``jax`` then).

    Importing this module changes nothing; the first model built, loaded or fitted imports
    Keras. Raises ImportError when Keras was already imported with another backend.
    """
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = require("keras", extra="cnn", purpose="the CNN models")

    backend = keras.backend.backend()
    if backend != "jax":
        raise ImportError(
            f"moa_features.models.cnn needs Keras on the JAX backend, but Keras runs on the {backend!r} "
            "backend; set KERAS_BACKEND=jax before importing keras"
        )
    _compilation_cache()
    return keras


JAX_CACHE_ENV = "MOA_FEATURES_JAX_CACHE"  # folder of JAX's persistent compilation cache; "off" disables it


@functools.cache
def _compilation_cache() -> str | None:
    """Switch on JAX's persistent compilation cache, unless the user configured one; returns its folder.

    Compiling the CNNs' XLA steps costs more CPU than training them on a few hundred thumbnails;
    with the cache, every later model of the same architecture and batch shape (the next fold,
    the final refit, the next run) loads the compiled steps. Folder: ``$MOA_FEATURES_JAX_CACHE``,
    else ``$XDG_CACHE_HOME/moa-features/jax`` (``~/.cache/...``); ``off`` leaves JAX as it is.
    """
    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    where = os.environ.get(JAX_CACHE_ENV)
    if where is None:
        where = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moa-features" / "jax")
    if where.strip().lower() in ("", "0", "off", "none", "false"):
        return None
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return where


def __getattr__(name: str) -> Any:
    """``keras`` and the custom layers (:class:`RandomRot90`, :class:`ChannelReference`), built lazily."""
    if name == "keras":
        return _keras()
    if name in ("RandomRot90", "ChannelReference"):
        return _custom_layers()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CNNClassifier",
    "baseline_model",
    "embedding_model",
    "plate_reference",
    "thumbnail_reference",
]

ARCHITECTURES = ("baseline", "embedding")
EMBEDDING_LAYER = "embedding"  # name of the layer whose output `transform` returns
_SIDECAR_FORMAT = "moa_features.models.cnn.CNNClassifier/2"
UNIT_REFERENCE = 255.0  # DN that maps to 1.0 without a plate reference (scaling to [0, 1])
MIN_REFERENCE = 1.0  # DN; floor of a plate reference, so a black control channel cannot divide by ~0
_DATA_FORMAT = "channels_last"


@functools.cache
def _custom_layers() -> dict[str, type]:
    """The module's Keras layers, defined (and registered for ``.keras`` loading) on first use."""
    keras = _keras()
    layers, ops = keras.layers, keras.ops

    @keras.saving.register_keras_serializable(package="moa_features")
    class RandomRot90(layers.Layer):
        """Rotate each image by a random multiple of 90 degrees (training only).

        Input ``(B, H, W, C)`` with ``H == W``; each image gets ``k`` in {0, 1, 2, 3}
        counter-clockwise quarter turns (``np.rot90(image, k)``), drawn uniformly. At
        inference the layer is the identity. Combined with random horizontal and vertical
        flips this samples the whole dihedral group of the square uniformly.
        """

        def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.seed = seed
            self.generator = keras.random.SeedGenerator(seed)

        def build(self, input_shape: tuple) -> None:
            if len(input_shape) != 4 or input_shape[1] != input_shape[2]:
                raise ValueError(f"RandomRot90 needs square images (B, S, S, C), got input shape {input_shape}")
            super().build(input_shape)

        def call(self, inputs, training: bool | None = None):
            if not training:
                return inputs
            batch = ops.shape(inputs)[0]
            k = keras.random.randint((batch, 1, 1, 1), 0, 4, seed=self.generator)
            # rot90(x, k): transpose for odd k, then flip rows for k in {1, 2}, columns for {2, 3}.
            x = ops.where(k % 2 == 1, ops.transpose(inputs, (0, 2, 1, 3)), inputs)
            x = ops.where((k == 1) | (k == 2), ops.flip(x, axis=1), x)
            return ops.where(k >= 2, ops.flip(x, axis=2), x)

        def compute_output_shape(self, input_shape: tuple) -> tuple:
            return input_shape

        def get_config(self) -> dict:
            return {**super().get_config(), "seed": self.seed}

    @keras.saving.register_keras_serializable(package="moa_features")
    class ChannelReference(layers.Layer):
        """Divide each image's channels by its reference intensities: ``x / reference``.

        Inputs ``[images (B, H, W, C), reference (B, C)]`` (any numeric image dtype, reference
        in the same units, > 0); output ``(B, H, W, C)`` float32. The same at training and
        inference (no state).
        """

        def call(self, inputs):
            images, reference = inputs
            images = ops.cast(images, "float32")
            reference = ops.cast(reference, "float32")
            return images / reference[:, None, None, :]

        def compute_output_shape(self, input_shapes: list) -> tuple:
            return tuple(input_shapes[0])

    return {"RandomRot90": RandomRot90, "ChannelReference": ChannelReference}


def plate_reference(thumbs: Any, plates: Any, reference_rows: Any) -> np.ndarray:
    """Per-row reference intensity of its plate, in DN (grey levels).

    For each plate separately: the median, over that plate's rows where ``reference_rows``
    is true (its negative controls, or all its rows), of each thumbnail's mean intensity per
    channel; floored at ``MIN_REFERENCE`` DN. Rows of a plate share its reference; no
    statistic crosses plates.

    Parameters
    ----------
    thumbs : array_like of uint8, shape (N, S, S, C)
        Thumbnails (a memory map is read one plate's reference rows at a time).
    plates : array_like, shape (N,)
        Plate of each row.
    reference_rows : array_like of bool, shape (N,)
        Rows that make their plate's reference.

    Returns
    -------
    ndarray of float32, shape (N, C)
        The reference of each row's plate.

    Raises
    ------
    ValueError
        If the shapes disagree or a plate has no reference row.
    """
    thumbs = _check_images(thumbs, "thumbs")
    plates = np.asarray(plates)
    reference_rows = np.asarray(reference_rows, dtype=bool)
    if plates.shape != (len(thumbs),) or reference_rows.shape != (len(thumbs),):
        raise ValueError(
            f"plates and reference_rows must have one entry per thumbnail ({len(thumbs)}), "
            f"got shapes {plates.shape} and {reference_rows.shape}"
        )
    out = np.empty((len(thumbs), thumbs.shape[-1]), dtype=np.float32)
    names, codes = np.unique(plates, return_inverse=True)
    for k, plate in enumerate(names):
        rows = np.flatnonzero(codes == k)
        ref = rows[reference_rows[rows]]
        if len(ref) == 0:
            raise ValueError(
                f"plate {str(plate)!r} has no reference (negative-control) thumbnails to normalise "
                "the CNN input against"
            )
        means = np.stack([thumbs[i].mean(axis=(0, 1), dtype=np.float64) for i in ref])
        out[rows] = np.maximum(np.median(means, axis=0), MIN_REFERENCE)
    return out


def thumbnail_reference(thumbs: np.ndarray, plates: np.ndarray, control: Any, normalize: str) -> np.ndarray | None:
    """Per-row channel reference of the embedding CNN's input, the analogue of ``normalize``.

    Per plate, like :func:`moa_features.profiling.normalize`, so held-out plates leak nothing.

    Parameters
    ----------
    thumbs : ndarray of uint8, shape (N, S, S, C)
        Thumbnails.
    plates : ndarray, shape (N,)
        Plate of each row.
    control : array_like of bool, shape (N,)
        Negative-control rows.
    normalize : str
        One of :data:`~moa_features.profiling.NORMALIZATIONS`: ``controls`` and ``pooled``: each
        plate's median control-site intensity per channel; ``none``: no reference; otherwise
        (``plate``) the median over all the plate's sites.

    Returns
    -------
    ndarray of float32, shape (N, C), or None
        :func:`plate_reference` of the chosen rows, in DN; ``None`` for ``none`` (input scaled
        to [0, 1]).

    Raises
    ------
    ValueError
        If ``normalize`` is unknown.
    """
    if normalize not in profiling.NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalize!r}; expected one of {', '.join(profiling.NORMALIZATIONS)}")
    if normalize == "none":
        return None
    rows = np.asarray(control, dtype=bool) if normalize in ("controls", "pooled") else np.ones(len(plates), dtype=bool)
    return plate_reference(thumbs, plates, rows)


def _inputs(input_shape: tuple[int, int, int]):
    """uint8 ``(S, S, C)`` input and its [0, 1] float32 rescaling."""
    keras = _keras()
    layers = keras.layers
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (S, S, C), got {tuple(input_shape)}")
    inputs = keras.Input(shape=tuple(int(v) for v in input_shape), dtype="uint8", name="thumbnail")
    return inputs, layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


def _augmentation(x):
    """Random horizontal/vertical flips and quarter turns, active only in training.

    Seeds come from Keras' global seed (``keras.utils.set_random_seed``).
    """
    keras = _keras()
    layers = keras.layers
    x = layers.RandomFlip("horizontal_and_vertical", data_format=_DATA_FORMAT, name="flip")(x)
    return _custom_layers()["RandomRot90"](name="rot90")(x)


def baseline_model(input_shape: tuple[int, int, int], n_classes: int, *, augment: bool = False) -> keras.Model:
    """The original project's CNN (uncompiled).

    uint8 ``(S, S, C)`` input scaled to [0, 1] -> Conv2D(16, 3x3, same, He normal) ->
    LeakyReLU(0.2) -> MaxPool 2x2 -> Conv2D(32, 3x3, same, He normal) -> LeakyReLU(0.2) ->
    MaxPool 2x2 -> Flatten -> Dense(64) -> LeakyReLU(0.2) -> Dropout(0.1) -> Dense(8) ->
    LeakyReLU(0.2) (layer ``"embedding"``) -> Dense(n_classes, softmax). For (100, 100, 6)
    and 3 classes it has 1,286,131 parameters.

    Parameters
    ----------
    input_shape : tuple of int
        ``(S, S, C)``: thumbnail side in pixels and channels.
    n_classes : int
        Number of classes (softmax outputs).
    augment : bool, default False
        Insert random flips and quarter turns after the rescaling (off in the original).

    Returns
    -------
    keras.Model
        Input uint8 ``(batch, S, S, C)``, output ``(batch, n_classes)`` probabilities.

    Raises
    ------
    ValueError
        If ``input_shape`` is not ``(S, S, C)``.
    """
    keras = _keras()
    layers = keras.layers
    inputs, x = _inputs(input_shape)
    if augment:
        x = _augmentation(x)
    conv = dict(kernel_size=(3, 3), padding="same", kernel_initializer="he_normal", data_format=_DATA_FORMAT)
    x = layers.Conv2D(16, name="conv1", **conv)(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="conv1_act")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2), data_format=_DATA_FORMAT, name="pool1")(x)
    x = layers.Conv2D(32, name="conv2", **conv)(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="conv2_act")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2), data_format=_DATA_FORMAT, name="pool2")(x)
    x = layers.Flatten(data_format=_DATA_FORMAT, name="flatten")(x)
    x = layers.Dense(64, name="dense1")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="dense1_act")(x)
    x = layers.Dropout(0.1, name="dropout")(x)
    x = layers.Dense(8, name="dense2")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name=EMBEDDING_LAYER)(x)
    outputs = layers.Dense(int(n_classes), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn_baseline")


def embedding_model(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    augment: bool = True,
    embedding_dim: int = 64,
    bn_momentum: float = 0.6,
) -> keras.Model:
    """A small CNN whose ``embedding_dim``-d penultimate layer is a site embedding (uncompiled).

    Inputs ``[thumbnail uint8 (S, S, C), reference float32 (C,)]``: the thumbnail divided
    by the reference per channel (:class:`ChannelReference`; reference = the plate's control
    intensity from :func:`plate_reference`, or 255 for plain [0, 1] scaling) ->
    [random flips + quarter turns in training] -> four blocks of Conv2D (same padding, no bias) + BatchNorm + ReLU: a
    5x5 stride-2 stem with 16 filters, then 3x3 convs with 32, 64, 128 filters, 2x2
    max-pooling after the 32- and 64-filter blocks (100 -> 50 -> 25 -> 12 px) -> global average
    pooling -> Dropout(0.2) -> Dense(embedding_dim, ReLU) (layer ``"embedding"``) ->
    Dropout(0.2) -> Dense(n_classes, softmax). About 100k parameters; global pooling
    makes it independent of the thumbnail size.

    Inference uses the batch-norm moving statistics, so they must follow the weights, which
    move fast when a few hundred images train for a few epochs: Keras' default momentum 0.99
    (a ~100-batch window) leaves the initial statistics in place for tens of epochs and the
    network predicts one class at inference while it fits in training (on the demo screen
    validation accuracy stays flat and validation loss high while the training loss falls).
    0.6 averages over ~2-3 batches; each batch's statistics already pool 32 images x thousands
    of pixels per channel, so they are precise.

    Parameters
    ----------
    input_shape : tuple of int
        ``(S, S, C)``: thumbnail side in pixels and channels.
    n_classes : int
        Number of classes (softmax outputs).
    augment : bool, default True
        Random flips and quarter turns in training.
    embedding_dim : int, default 64
        Width of the embedding layer.
    bn_momentum : float, default 0.6
        Batch-norm moving-average momentum.

    Returns
    -------
    keras.Model
        Inputs ``[uint8 (batch, S, S, C), float32 (batch, C)]``, output ``(batch, n_classes)``
        probabilities.

    Raises
    ------
    ValueError
        If ``input_shape`` is not ``(S, S, C)``.
    """
    keras = _keras()
    layers = keras.layers
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (S, S, C), got {tuple(input_shape)}")
    shape = tuple(int(v) for v in input_shape)
    image = keras.Input(shape=shape, dtype="uint8", name="thumbnail")
    reference = keras.Input(shape=(shape[-1],), dtype="float32", name="reference")
    x = _custom_layers()["ChannelReference"](name="reference_scale")([image, reference])
    if augment:
        x = _augmentation(x)
    # (filters, kernel, stride, max-pool after): the stride-2 stem sees every pixel but
    # halves the resolution before the costlier layers (~40% less time per step than a
    # full-resolution 3x3 block + pooling, with a similar receptive field).
    blocks = ((16, 5, 2, False), (32, 3, 1, True), (64, 3, 1, True), (128, 3, 1, False))
    for i, (filters, kernel, stride, pool) in enumerate(blocks, start=1):
        x = layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            data_format=_DATA_FORMAT,
            name=f"conv{i}",
        )(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if pool:
            x = layers.MaxPooling2D((2, 2), data_format=_DATA_FORMAT, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(data_format=_DATA_FORMAT, name="gap")(x)
    x = layers.Dropout(0.2, name="dropout1")(x)
    x = layers.Dense(int(embedding_dim), activation="relu", name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(0.2, name="dropout2")(x)
    outputs = layers.Dense(int(n_classes), activation="softmax", name="probabilities")(x)
    return keras.Model([image, reference], outputs, name="cnn_embedding")


def _sidecar_path(path: Path) -> Path:
    """``cnn.keras`` -> ``cnn.keras.json`` (estimator parameters, classes, history)."""
    return path.with_name(path.name + ".json")


def _check_images(X: Any, what: str = "X") -> np.ndarray:
    """``X`` as an ``(N, H, W, C)`` uint8 array (no copy), or a ValueError saying what is wrong."""
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"{what} must be a 4-d array of thumbnails (N, S, S, C), got shape {X.shape}")
    if X.dtype != np.uint8:
        raise ValueError(
            f"{what} must be uint8 thumbnails (0-255, scaled to [0, 1] inside the model), got dtype {X.dtype}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{what} has no rows (shape {X.shape})")
    return X


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """Scikit-learn classifier around the Keras CNNs of this module.

    Parameters
    ----------
    architecture : {"baseline", "embedding"}, default "baseline"
        :func:`baseline_model` (the original network) or :func:`embedding_model`.
    epochs : int, default 30
        Maximum number of training epochs (early stopping usually ends sooner).
    batch_size : int, default 32
        Images per gradient step (and per inference batch).
    learning_rate : float, default 1e-3
        Adam's initial learning rate; halved by ``ReduceLROnPlateau`` after
        ``max(1, patience // 2)`` epochs without improvement (floor 1e-6).
    class_weight : "balanced", dict or None, default "balanced"
        ``"balanced"`` (``n_rows / (n_classes * count(class))``, sklearn's
        ``compute_class_weight`` on the ``y`` given to ``fit``), ``None`` (all 1), or a dict
        ``{label: weight}`` (missing labels weigh 1). Weights the training loss.
    validation_fraction : float, default 0.2
        Share of rows held out for early stopping when no ``validation_data`` is given:
        grouped (``GroupShuffleSplit``) when ``fit`` gets ``groups``, stratified by label
        otherwise. ``0`` trains on every row for ``epochs`` epochs, with the callbacks watching
        the training loss instead.
    patience : int, default 5
        ``EarlyStopping`` patience in epochs (on ``val_loss``, best weights restored).
    augment : bool, optional
        Random flips and quarter turns in training; ``None`` = the architecture's default (off
        for ``"baseline"``, on for ``"embedding"``). Needs square thumbnails.
    random_state : int, optional, default 0
        Seed for ``keras.utils.set_random_seed`` and the validation split; the same seed and
        data give the same predictions. ``None`` leaves them unseeded.
    verbose : {0, 1, 2}, default 0
        Keras ``fit`` verbosity.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
        Sorted labels; ``predict_proba`` columns follow this order.
    class_weight_ : ndarray of float, shape (n_classes,)
        Loss weights, in ``classes_`` order.
    history_ : dict of str to list of float
        ``{"loss": [...], "val_loss": [...], ...}``, one value per epoch.
    model_ : keras.Model
        The trained network (uint8 ``(S, S, C)`` in, probabilities out).
    input_shape_ : tuple of int
        ``(S, S, C)`` of the training thumbnails.
    uses_reference_ : bool
        Whether ``fit`` got a plate ``reference`` (then ``predict*`` and ``transform`` need one
        too).
    """

    def __init__(
        self,
        architecture: str = "baseline",
        epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        class_weight: str | dict | None = "balanced",
        validation_fraction: float = 0.2,
        patience: int = 5,
        augment: bool | None = None,
        random_state: int | None = 0,
        verbose: int = 0,
    ) -> None:
        self.architecture = architecture
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.class_weight = class_weight
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.random_state = random_state
        self.verbose = verbose

    # ---- fitting -----------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        groups: Any = None,
        validation_data: tuple | None = None,
        reference: Any = None,
    ) -> CNNClassifier:
        """Train on ``X`` ``(N, S, S, C)`` uint8 with labels ``y`` ``(N,)``.

        Early stopping watches ``validation_data=(Xv, yv)`` (``(Xv, yv, reference_v)``
        with a reference) when given, else an inner split of ``validation_fraction`` of the
        rows (whole groups held out when ``groups`` ``(N,)`` is given, e.g. plates;
        stratified by label otherwise). ``reference`` ``(N, C)`` (embedding CNN only): each
        row's per-channel plate reference intensity in DN (:func:`plate_reference`); the
        network sees ``X / reference``. Without it the input is scaled to [0, 1]. A model
        fitted with a reference needs one at prediction too.
        """
        keras = _keras()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        X = _check_images(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be 1-d with one label per image ({len(X)}), got shape {y.shape}")
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"need at least 2 classes to train a classifier, got {classes.tolist()}")
        augment = (self.architecture == "embedding") if self.augment is None else bool(self.augment)
        if augment and X.shape[1] != X.shape[2]:
            raise ValueError(f"augmentation (quarter turns) needs square thumbnails, got {X.shape[1:3]}")
        weights = self._class_weights(classes, y)
        self.uses_reference_ = reference is not None
        inputs = self._model_inputs(X, reference, "reference")

        train, val = self._validation_split(y_idx, groups, validation_data)
        if validation_data is not None:
            if len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (images, labels) or (images, labels, reference)")
            Xv = _check_images(validation_data[0], "validation_data[0]")
            if Xv.shape[1:] != X.shape[1:]:
                raise ValueError(f"validation images have shape {Xv.shape[1:]}, training images {X.shape[1:]}")
            yv = self._encode(np.asarray(validation_data[1]), classes, "validation_data[1]")
            ref_v = validation_data[2] if len(validation_data) == 3 else None
            fit_val = (
                self._model_inputs(Xv, ref_v, "validation_data[2]"),
                _one_hot(yv, len(classes)),
            )
        elif val is not None:
            fit_val = (_take(inputs, val), _one_hot(y_idx[val], len(classes)))
        else:
            fit_val = None
        if fit_val is not None:
            fit_val = _padded_validation(*fit_val, self.batch_size)
        X_train = inputs if train is None else _take(inputs, train)
        y_train = y_idx if train is None else y_idx[train]

        if self.random_state is not None:
            keras.utils.set_random_seed(int(self.random_state))
        if self.architecture == "baseline":
            model = baseline_model(X.shape[1:], len(classes), augment=augment)
        else:
            model = embedding_model(X.shape[1:], len(classes), augment=augment)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        monitor = "val_loss" if fit_val is not None else "loss"
        callbacks = [
            keras.callbacks.EarlyStopping(monitor=monitor, patience=self.patience, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=max(1, self.patience // 2), min_lr=1e-6
            ),
        ]
        batches = _full_batches(keras)(
            X_train,
            _one_hot(y_train, len(classes)),
            weights[y_train].astype(np.float32),  # the class weights, as per-row loss weights
            self.batch_size,
            self.random_state,
        )
        history = model.fit(
            batches,
            epochs=self.epochs,
            validation_data=fit_val,
            validation_batch_size=self.batch_size,
            callbacks=callbacks,
            verbose=self.verbose,
        )
        self.classes_ = classes
        self.class_weight_ = weights
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        self.model_ = model
        self.input_shape_ = tuple(int(v) for v in X.shape[1:])
        return self

    def _model_inputs(self, X: np.ndarray, reference: Any, what: str):
        """What the Keras model takes: ``X`` (baseline) or ``{"thumbnail", "reference"}``.

        A missing reference of the embedding CNN is ``UNIT_REFERENCE`` (255) per channel.
        After ``fit``, the reference must be given exactly when it was given to ``fit``.
        """
        if self.architecture == "baseline":
            if reference is not None:
                raise ValueError(
                    f"{what}: the baseline CNN is the original network, which scales its input "
                    "to [0, 1]; a plate reference is only for architecture='embedding'"
                )
            return X
        if (reference is not None) != self.uses_reference_:
            raise ValueError(
                f"{what}: this embedding CNN was fitted "
                + (
                    "on plate-normalised input and needs reference=plate_reference(...)"
                    if self.uses_reference_
                    else "without a reference (input scaled to [0, 1]); pass none"
                )
            )
        if reference is None:
            ref = np.full((len(X), X.shape[-1]), UNIT_REFERENCE, dtype=np.float32)
        else:
            ref = np.asarray(reference, dtype=np.float32)
            if ref.shape != (len(X), X.shape[-1]):
                raise ValueError(
                    f"{what} must be (N, C) = {(len(X), X.shape[-1])}, one reference intensity "
                    f"per image and channel, got shape {ref.shape}"
                )
            if not np.all(np.isfinite(ref) & (ref > 0)):
                raise ValueError(f"{what} must be finite and > 0 (DN)")
        return {"thumbnail": X, "reference": ref}

    def _class_weights(self, classes: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Loss weight per class, ``(n_classes,)`` in ``classes`` order."""
        if self.class_weight is None:
            return np.ones(len(classes))
        if isinstance(self.class_weight, str):
            if self.class_weight != "balanced":
                raise ValueError(f"class_weight must be 'balanced', None or a dict, got {self.class_weight!r}")
            return compute_class_weight("balanced", classes=classes, y=y)
        if isinstance(self.class_weight, dict):
            return np.array([float(self.class_weight.get(c, 1.0)) for c in classes.tolist()])
        raise ValueError(f"class_weight must be 'balanced', None or a dict, got {type(self.class_weight).__name__}")

    def _validation_split(
        self, y_idx: np.ndarray, groups: Any, validation_data: tuple | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(train rows, validation rows) of the inner split; ``(None, None)`` when there is none."""
        if validation_data is not None or not self.validation_fraction:
            return None, None
        frac = float(self.validation_fraction)
        if not 0 < frac < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        rows = np.arange(len(y_idx))
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != y_idx.shape:
                raise ValueError(f"groups must have one entry per image ({len(y_idx)}), got shape {groups.shape}")
            if len(np.unique(groups)) < 2:
                raise ValueError(
                    "a grouped validation split needs at least 2 distinct groups, got 1; "
                    "pass validation_data or validation_fraction=0"
                )
            groups_for_split = groups
        else:
            groups_for_split = None
            counts = np.bincount(y_idx)
            if counts.min() < 2:
                raise ValueError(
                    f"a stratified validation split needs at least 2 images per class, but class "
                    f"#{int(np.argmin(counts))} (in sorted label order) has {int(counts.min())}; "
                    f"pass groups, validation_data or validation_fraction=0"
                )
        split = validation_split(y_idx, groups_for_split, frac, self.random_state or 0)
        if split is None:
            raise ValueError(f"cannot make a validation split of {len(rows)} images")
        return split

    @staticmethod
    def _encode(y: np.ndarray, classes: np.ndarray, what: str) -> np.ndarray:
        """Labels -> indices into ``classes``; a ValueError names unknown labels."""
        idx = np.searchsorted(classes, y)
        idx = np.clip(idx, 0, len(classes) - 1)
        unknown = classes[idx] != y
        if np.any(unknown):
            raise ValueError(f"{what} has labels not seen in y: {np.unique(y[unknown]).tolist()}")
        return idx

    # ---- inference ---------------------------------------------------------------
    def _check_predict_input(self, X: Any, reference: Any):
        check_is_fitted(self, "model_")
        X = _check_images(X)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X has images of shape {X.shape[1:]}, the model was trained on {self.input_shape_}")
        return self._model_inputs(X, reference, "reference")

    def predict_proba(self, X: Any, reference: Any = None) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``, columns in ``classes_`` order; rows sum to 1.

        ``reference`` ``(N, C)``: as given to ``fit`` (embedding CNN with plate normalisation).
        """
        inputs = self._check_predict_input(X, reference)
        proba = np.asarray(_predict(self.model_, inputs, self.batch_size), dtype=np.float64)
        return proba / proba.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only within ~1e-7

    def predict(self, X: Any, reference: Any = None) -> np.ndarray:
        """Most probable label per image, ``(N,)`` with ``classes_``'s dtype."""
        proba = self.predict_proba(X, reference)
        return self.classes_[np.argmax(proba, axis=1)]

    def transform(self, X: Any, reference: Any = None) -> np.ndarray:
        """Penultimate-layer embedding ``(N, D)`` float32 (D = 8 baseline, 64 embedding)."""
        keras = _keras()
        inputs = self._check_predict_input(X, reference)
        encoder = keras.Model(self.model_.inputs, self.model_.get_layer(EMBEDDING_LAYER).output)
        return np.asarray(_predict(encoder, inputs, self.batch_size))

    # ---- persistence -------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the Keras model to ``path`` (``*.keras``, Keras' native format) and the
        estimator's parameters, ``classes_``, ``class_weight_``, ``history_``,
        ``input_shape_`` and ``uses_reference_`` to ``path + ".json"`` (e.g. ``cnn.keras`` + ``cnn.keras.json``).

        Labels must be JSON scalars (str, int, float, bool). Both files are written atomically.
        """
        keras = _keras()
        check_is_fitted(self, "model_")
        path = Path(path)
        if path.suffix != ".keras":
            raise ValueError(f"{path}: a CNN is saved as a .keras file (got suffix {path.suffix!r})")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
        try:
            self.model_.save(tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        params = self.get_params(deep=False)
        if isinstance(params["class_weight"], dict):
            params["class_weight"] = {"pairs": [[k, float(w)] for k, w in params["class_weight"].items()]}
        write_json(
            {
                "format": _SIDECAR_FORMAT,
                "keras_version": keras.__version__,
                "params": params,
                "classes": self.classes_.tolist(),
                "class_weight": self.class_weight_.tolist(),
                "input_shape": list(self.input_shape_),
                "uses_reference": self.uses_reference_,
                "history": self.history_,
            },
            _sidecar_path(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> CNNClassifier:
        """Read an estimator written by :meth:`save` (``path`` and ``path + ".json"``)."""
        keras = _keras()
        path = Path(path)
        sidecar = _sidecar_path(path)
        for p in (path, sidecar):
            if not p.exists():
                raise FileNotFoundError(f"{p}: not found (CNNClassifier.save writes {path.name} and {sidecar.name})")
        meta = json.loads(sidecar.read_text())
        if meta.get("format") != _SIDECAR_FORMAT:
            raise ValueError(f"{sidecar}: format {meta.get('format')!r}, expected {_SIDECAR_FORMAT!r}")
        params = dict(meta["params"])
        if isinstance(params["class_weight"], dict):
            params["class_weight"] = {k: w for k, w in params["class_weight"]["pairs"]}
        est = cls(**params)
        est.classes_ = np.asarray(meta["classes"])
        est.class_weight_ = np.asarray(meta["class_weight"], dtype=float)
        est.input_shape_ = tuple(meta["input_shape"])
        est.uses_reference_ = bool(meta["uses_reference"])
        est.history_ = meta["history"]
        est.model_ = keras.saving.load_model(path)
        return est


def _take(inputs, rows: np.ndarray):
    """Rows of the model's inputs (an array, or a dict of row-aligned arrays)."""
    if isinstance(inputs, dict):
        return {k: v[rows] for k, v in inputs.items()}
    return inputs[rows]


def _one_hot(y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices ``(N,)`` -> one-hot float32 ``(N, n_classes)``."""
    return np.eye(n_classes, dtype=np.float32)[y_idx]


# ---- batches of one shape ----------------------------------------------------------
# XLA compiles one program per batch shape, and compiling, not computing, dominates the cost of
# these small CNNs on a few hundred thumbnails (about 20 CPU s for the embedding CNN's steps
# against about 1 s per epoch). Every batch therefore has ``batch_size`` rows: training draws
# full batches only (a new shuffle each epoch, the remainder left to the next epochs' draws),
# validation and prediction pad the last batch and drop the padding. With JAX's persistent
# compilation cache (:func:`_keras`) the next model of the same architecture and input shape
# reuses the compiled steps instead of compiling them again.


def _n_padded(n: int, batch_size: int) -> int:
    return -(-n // batch_size) * batch_size


def _pad(inputs, n_to: int):
    """Rows of ``inputs`` (array or dict) padded to ``n_to`` by repeating the first row."""

    def pad(a):
        a = np.asarray(a)
        return a if len(a) == n_to else np.concatenate([a, np.repeat(a[:1], n_to - len(a), axis=0)])

    return {k: pad(v) for k, v in inputs.items()} if isinstance(inputs, dict) else pad(inputs)


def _padded_validation(inputs, y_onehot: np.ndarray, batch_size: int) -> tuple:
    """``(inputs, y, sample_weight)`` padded to whole batches; padding weighs 0 and real rows
    ``n_padded / n``, so Keras' validation loss (a mean over the padded rows) is the mean over the real ones."""
    n = len(y_onehot)
    n_to = _n_padded(n, batch_size)
    weight = np.zeros(n_to, dtype=np.float32)
    weight[:n] = n_to / n
    return _pad(inputs, n_to), _pad(y_onehot, n_to), weight


def _predict(model, inputs, batch_size: int) -> np.ndarray:
    """``model.predict`` on whole batches (the last one padded), padding dropped."""
    n = len(inputs["thumbnail"] if isinstance(inputs, dict) else inputs)
    out = model.predict(_pad(inputs, _n_padded(n, batch_size)), batch_size=batch_size, verbose=0)
    return np.asarray(out)[:n]


@functools.cache
def _full_batches(keras) -> type:
    """A ``keras.utils.PyDataset`` of full, shuffled training batches ``(inputs, y, sample_weight)``."""

    class FullBatches(keras.utils.PyDataset):
        def __init__(self, inputs, y, weight, batch_size: int, seed: int | None) -> None:
            super().__init__()
            self.inputs, self.y, self.weight = inputs, y, weight
            self.size = min(int(batch_size), len(y))
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(y))

        def __len__(self) -> int:
            return len(self.y) // self.size

        def __getitem__(self, i: int):
            rows = np.sort(self.order[i * self.size : (i + 1) * self.size])
            return _take(self.inputs, rows), self.y[rows], self.weight[rows]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(self.y))

    return FullBatches
