"""Training runs: MoA models evaluated on held-out treatments (or plates), refitted, saved.

One module per concern, in the order a run uses them:

- :mod:`~moa_features.training.data`: the labelled, plate-normalised rows (:func:`load_training_data`);
- :mod:`~moa_features.training.folds`: which question (:func:`resolve_split`), the outer folds and the
  inner split of the same kind;
- :mod:`~moa_features.training.fitting`: every model fitted on a fold's training rows, predictions
  (:func:`fit_fold`, :func:`evaluate_folds`);
- :mod:`~moa_features.training.metrics`: one scoring convention, CIs, p-values, chance (:func:`compute_metrics`);
- :mod:`~moa_features.training.writing`: the run folder (:func:`save_run`);
- :mod:`~moa_features.training.run`: the whole run (:func:`run_training`);
- :mod:`~moa_features.training.cli`: ``python -m moa_features.train`` (:func:`~moa_features.training.cli.main`).
"""

from moa_features.training.data import TrainingData, fold_data, load_training_data
from moa_features.training.fitting import Settings, evaluate_folds, fit_final, fit_fold, predict_fold
from moa_features.training.folds import outer_folds, resolve_split
from moa_features.training.metrics import compute_metrics, summary_table
from moa_features.training.run import run_training
from moa_features.training.writing import save_run

__all__ = [
    "Settings",
    "TrainingData",
    "compute_metrics",
    "evaluate_folds",
    "fit_final",
    "fit_fold",
    "fold_data",
    "load_training_data",
    "outer_folds",
    "predict_fold",
    "resolve_split",
    "run_training",
    "save_run",
    "summary_table",
]
