"""How the report names, orders and colours models: the one place the report reads this from.

When the models engineer's registry (``moa_features.models.registry``) lands, these values
come from it (each registered model's display name and colour) and this module becomes a thin
adapter; until then it is the single local mapping that figures and tables share.

Examples
--------
>>> model_order(["knn", "majority", "xgboost", "mine"])
['xgboost', 'knn', 'majority', 'mine']
>>> model_label("cnn"), model_label("mine")
('Keras CNN (baseline)', 'mine')
"""

from __future__ import annotations

from collections.abc import Sequence

# Okabe-Ito colours for models (a different role from MoA, so a different set).
MODEL_COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MODEL_ORDER = ("cnn", "xgboost", "cnn_embedding", "ensemble", "knn", "majority", "shuffled")
MODEL_LABELS = {
    "cnn": "Keras CNN (baseline)",
    "xgboost": "XGBoost (features)",
    "cnn_embedding": "CNN embedding",
    "ensemble": "Ensemble",
    "knn": "k-NN (features)",
    "majority": "Majority class",
    "shuffled": "Shuffled labels",
}
MAIN_MODELS = ("cnn", "xgboost", "ensemble")  # confusion matrices shown for these when present
CHANCE_MODELS = ("majority", "shuffled", "dummy")  # chance references: never "best", no per-class figures


def model_order(models: Sequence[str]) -> list[str]:
    """Model names with the known ones first in :data:`MODEL_ORDER`, others alphabetically."""
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(m for m in models if m not in MODEL_ORDER)


def model_palette(models: Sequence[str]) -> dict[str, str]:
    """One Okabe-Ito colour per model, assigned in :func:`model_order`."""
    return {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(model_order(models))}


def model_label(model: str) -> str:
    """Display name of a model (its key when unknown)."""
    return MODEL_LABELS.get(model, model)


def is_chance(model: str) -> bool:
    """Whether ``model`` is a chance reference (majority/shuffled/dummy) rather than a real model."""
    return model in CHANCE_MODELS
