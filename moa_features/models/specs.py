"""What a model is (:class:`ModelSpec`) and the specs of the models the ensemble is made of.

:mod:`moa_features.models.registry` lists every model, the ensemble included; this module holds
the parts the ensemble itself builds its members from, so that
:mod:`moa_features.models.ensemble` needs no registry (which builds the ensemble).
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


MEMBERS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("cnn", "Keras CNN (baseline)", "#0072B2", "thumbnails", "cnn.keras", _cnn("baseline")),
        ModelSpec("xgboost", "XGBoost (features)", "#E69F00", "features", "xgboost.json", _xgboost),
        ModelSpec("cnn_embedding", "CNN embedding", "#009E73", "thumbnails", "cnn_embedding.keras", _cnn("embedding")),
        ModelSpec("knn", "k-NN (features)", "#CC79A7", "features", "knn.joblib", _knn),
        ModelSpec("majority", "Class prior (DummyClassifier)", "#999999", "features", None, _majority, chance=True),
    )
}
"""Every model but the ensemble, by name."""
ENSEMBLE_MEMBERS = ("xgboost", "knn", "cnn_embedding")  # the ensemble's members, those whose input is available
