"""How the report names, orders and colours models: an adapter over the model registry.

Display names, order, colours and which models are chance references come from
:data:`moa_features.models.registry.MODELS`; models a run names that the registry does not
know (a user's own) follow, alphabetically, with a colour from the same palette.

Examples
--------
>>> model_order(["knn", "majority", "xgboost", "mine"])
['xgboost', 'knn', 'majority', 'mine']
>>> model_label("cnn"), model_label("mine")
('Keras CNN (baseline)', 'mine')
"""

from __future__ import annotations

from collections.abc import Sequence

from moa_features.models import registry

# Okabe-Ito colours for models (a different role from MoA, so a different set); registered models use their own.
MODEL_COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
# metrics.json entries that are not registered models: an ablation of the ensemble (wt-science, issue 19)
ABLATIONS = {"ensemble_no_embedding": "Ensemble without the CNN embedding"}
MODEL_ORDER = (*registry.MODELS, *ABLATIONS)
MODEL_LABELS = {name: spec.display for name, spec in registry.MODELS.items()} | ABLATIONS
MAIN_MODELS = ("cnn", "xgboost", "ensemble")  # confusion matrices shown for these when present
CHANCE_MODELS = registry.names(chance=True)  # chance references: never "best", no per-class figures


def model_order(models: Sequence[str]) -> list[str]:
    """Model names with the known ones first in :data:`MODEL_ORDER`, others alphabetically."""
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(m for m in models if m not in MODEL_ORDER)


def model_palette(models: Sequence[str]) -> dict[str, str]:
    """One Okabe-Ito colour per model, assigned in :func:`model_order`."""
    return {
        m: registry.MODELS[m].color if m in registry.MODELS else MODEL_COLORS[i % len(MODEL_COLORS)]
        for i, m in enumerate(model_order(models))
    }


def model_label(model: str) -> str:
    """Display name of a model (its key when unknown)."""
    return MODEL_LABELS.get(model, model)


def is_chance(model: str) -> bool:
    """Whether ``model`` is a chance reference (the registry's class-prior baseline) rather than a real model."""
    return model in CHANCE_MODELS
