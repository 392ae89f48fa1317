"""The one list of models: name, how each is built, what input it needs, how it is displayed.

``train``, ``predict``, the report and the plots read :data:`MODELS` (in display order)
instead of keeping their own name tuples. Inputs: ``"features"`` (the preprocessed feature
table), ``"thumbnails"`` ((N, S, S, C) uint8 site thumbnails), ``"probabilities"`` (other
models' class probabilities: the ensemble). ``chance`` marks reference baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Input = Literal["features", "thumbnails", "probabilities"]


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry.

    Parameters
    ----------
    name : str
        The model's key (``metrics.json``, ``--models``).
    display : str
        Display name.
    color : str
        Hex colour of its plots.
    input : {"features", "thumbnails", "probabilities"}
        What it is fitted on.
    file : str or None
        The file a run saves it to (``None``: not saved).
    build : callable, optional
        ``build(seed, **options)`` -> unfitted estimator (for the ensemble a
        :class:`~moa_features.models.ensemble.MoAEnsemble` whose members get the same options).
    chance : bool, default False
        Whether it is a chance baseline.
    """

    name: str
    display: str
    color: str
    input: Input
    file: str | None
    build: Callable[..., Any] | None = field(default=None, compare=False)
    chance: bool = False


def _xgboost(seed: int = 0, n_jobs: int = 1, scheduler: str | None = None, **_: Any):
    from moa_features.models.gbm import XGBoostClassifier

    return XGBoostClassifier(random_state=seed, n_jobs=n_jobs, scheduler=scheduler)


def _knn(**_: Any):
    from moa_features.models.knn import ProfileKNNClassifier

    return ProfileKNNClassifier()


def _majority(**_: Any):
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior")


def _ensemble(seed: int = 0, **options: Any):
    from moa_features.models.ensemble import MoAEnsemble

    return MoAEnsemble(seed=seed, member_options=dict(options))


def _cnn(architecture: str):
    def build(seed: int = 0, cnn_epochs: int = 100, cnn_patience: int = 5, cnn_batch_size: int = 32, **_: Any):
        from moa_features.models.cnn import CNNClassifier

        return CNNClassifier(
            architecture=architecture,
            epochs=cnn_epochs,
            batch_size=cnn_batch_size,
            patience=cnn_patience,
            random_state=seed,
        )

    return build


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("cnn", "Keras CNN (baseline)", "#0072B2", "thumbnails", "cnn.keras", _cnn("baseline")),
        ModelSpec("xgboost", "XGBoost (features)", "#E69F00", "features", "xgboost.json", _xgboost),
        ModelSpec("cnn_embedding", "CNN embedding", "#009E73", "thumbnails", "cnn_embedding.keras", _cnn("embedding")),
        ModelSpec("ensemble", "Ensemble", "#D55E00", "probabilities", "ensemble.joblib", _ensemble),
        ModelSpec("knn", "k-NN (features)", "#CC79A7", "features", "knn.joblib", _knn),
        ModelSpec("majority", "Class prior (DummyClassifier)", "#999999", "features", None, _majority, chance=True),
    )
}
ENSEMBLE_MEMBERS = ("xgboost", "knn", "cnn_embedding")  # the ensemble's members, those whose input is available


def names(input: Input | None = None, chance: bool | None = None) -> tuple[str, ...]:
    """Model names in display order, optionally only of one input kind or chance status.

    Parameters
    ----------
    input : {"features", "thumbnails", "probabilities"}, optional
        Keep the models fitted on this input only.
    chance : bool, optional
        Keep only the chance baselines (``True``) or only the real models (``False``).

    Returns
    -------
    tuple of str
        Model names.

    Examples
    --------
    >>> names(input="thumbnails")
    ('cnn', 'cnn_embedding')
    """
    return tuple(
        m.name
        for m in MODELS.values()
        if (input is None or m.input == input) and (chance is None or m.chance == chance)
    )


def get(name: str) -> ModelSpec:
    """The spec of one model.

    Parameters
    ----------
    name : str
        A model name (:func:`names`).

    Returns
    -------
    ModelSpec

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the known names.

    Examples
    --------
    >>> get("knn").input
    'features'
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]
