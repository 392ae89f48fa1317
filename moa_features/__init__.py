"""moa-features: mechanism-of-action prediction from multi-channel cell images.

The pipeline, one module (or subpackage) per stage, data flowing one way::

    datasets/synthetic/annotate -> extract (features/) -> profiling/activity -> models/
        -> train (models/RUN) -> predict -> report (reports/) -> app

:mod:`moa_features.pipeline` and the CLI chain the stages; no stage imports a later one.

Importing the package is cheap and changes nothing in the environment: the public functions
below are loaded on first use (PEP 562), and no deep-learning framework is imported until a
CNN is built.

Examples
--------
>>> import moa_features
>>> moa_features.open_dataset.__module__
'moa_features.datasets'
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_EXPORTS = {
    "open_dataset": "moa_features.datasets",
    "read_image": "moa_features.datasets",
    "DatasetError": "moa_features.datasets",
    "SiteReadError": "moa_features.datasets",
    "make_screen": "moa_features.synthetic",
    "annotate_treatments": "moa_features.annotate",
    "FeatureParams": "moa_features.features",
    "measure": "moa_features.features",
    "ExtractResult": "moa_features.extraction.core",  # the function is moa_features.extract.extract (name = module)
    "normalize": "moa_features.profiling",
    "run_training": "moa_features.training",
    "load_run": "moa_features.predict",
    "predict_table": "moa_features.predict",
    "build_report": "moa_features.report",
    "read_table": "moa_features.io",
    "write_table": "moa_features.io",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'moa_features' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # cache: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
