"""The one list of models: name, how each is built, what input it needs, how it is displayed.

``train``, ``predict``, the report and the plots read :data:`MODELS` (in display order)
instead of keeping their own name tuples. Inputs: ``"features"`` (the preprocessed feature
table), ``"thumbnails"`` ((N, S, S, C) uint8 site thumbnails), ``"probabilities"`` (other
models' class probabilities: the ensemble). ``chance`` marks reference baselines.
"""

from __future__ import annotations

from typing import Any

from moa_features.models.specs import ENSEMBLE_MEMBERS, MEMBERS, Input, ModelSpec

__all__ = ["ENSEMBLE_MEMBERS", "MODELS", "Input", "ModelSpec", "get", "names"]


def _ensemble(seed: int = 0, **options: Any):
    from moa_features.models.ensemble import MoAEnsemble

    return MoAEnsemble(seed=seed, member_options=dict(options))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        MEMBERS["cnn"],
        MEMBERS["xgboost"],
        MEMBERS["cnn_embedding"],
        ModelSpec("ensemble", "Ensemble", "#D55E00", "probabilities", "ensemble.joblib", _ensemble),
        MEMBERS["knn"],
        MEMBERS["majority"],
    )
}


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
