"""Estimators, splitters and the model registry of moa-features.

Names are imported lazily on first access, so ``import moa_features.models`` pulls in neither
XGBoost nor Keras (optional dependencies). Public names:

- estimators: :class:`XGBoostClassifier` (``gbm``), :class:`ProfileKNNClassifier` (``knn``),
  :class:`MoAEnsemble` (``ensemble``, the one ensemble), :class:`CNNClassifier`
  (``cnn``, needs Keras);
- splitters (scikit-learn ``BaseCrossValidator``\\ s): :class:`PlateSplit`, :class:`ExperimentSplit`,
  :class:`NSCSplit`, :class:`NSCBSplit`, :class:`NSCPlateSplit`, :func:`make_splitter` (``splits``);
- the registry: :data:`MODELS`, :class:`ModelSpec` (``registry``).

Examples
--------
>>> from moa_features.models import NSCSplit, MODELS
>>> NSCSplit(n_splits=5).get_n_splits()
5
>>> MODELS["knn"].display
'k-NN (features)'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "XGBoostClassifier": "gbm",
    "ProfileKNNClassifier": "knn",
    "MoAEnsemble": "ensemble",
    "CNNClassifier": "cnn",
    "PlateSplit": "splits",
    "ExperimentSplit": "splits",
    "NSCSplit": "splits",
    "NSCBSplit": "splits",
    "NSCPlateSplit": "splits",
    "make_splitter": "splits",
    "MODELS": "registry",
    "ModelSpec": "registry",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
