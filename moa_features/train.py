"""Train and evaluate MoA models on held-out treatments or plates: ``python -m moa_features.train``.

This module is the command's entry point; the code lives in :mod:`moa_features.training` (one
module per concern). Running it is the same program as ``moa-features train``: train, then the
report of the run.

Models come from :mod:`moa_features.models.registry` and are evaluated on the same folds:

``cnn``            the original Keras CNN on 100x100x6 thumbnails (class weights), faithful;
``xgboost``        class-weighted XGBoost on selected, plate-normalised features;
``knn``            1-nearest-neighbour (cosine, centred) on Ljosa consensus profiles;
``cnn_embedding``  a small batch-normalised CNN on per-plate normalised thumbnails, trained once
                   per fold on the inner-training rows with early stopping on the inner
                   validation rows;
``ensemble``       :class:`~moa_features.models.ensemble.MoAEnsemble`, the one ensemble: a weighted
                   soft vote of ``xgboost``, ``knn`` and (with thumbnails) ``cnn_embedding``
                   (its members are the fold's models of those names), temperature-scaled and
                   weighted on the inner split (the most even blend within one standard error of
                   the best); when that is one member alone ``metrics.json`` says so;
                   ``ensemble_no_embedding`` is the same ensemble without the embedding (what the
                   embedding adds);
``majority``       scikit-learn's ``DummyClassifier(strategy="prior")`` (reference only).

Which question (``--split``, :mod:`moa_features.models.splits`): ``nsc`` ("not same
compound") holds out whole treatments, all concentrations together: the MoA of treatments
the model has never seen, what a user of a screen asks. ``nsc-plate`` also keeps the test
treatments' plates out of training; ``nscb`` their batches. ``plate``/``experiment`` hold
out plates: the test treatments were seen on other plates, so this measures *treatment
recognition*. ``auto`` (default): ``nsc-plate`` where the layout allows, else ``nsc``, when
the table has a treatment column; ``plate`` otherwise. The inner validation split (early
stopping, CNN epochs, ensemble weights) is the first fold of the same kind of split on the
training rows, so an NSC run validates on held-out treatments too.

Scoring (:mod:`moa_features.models.evaluation`): one convention for every model, probability
averaging site -> well -> treatment; pooled held-out figures with bootstrap 95 % CIs over
treatments, treatment-level permutation p-values and expected chance from class priors.
Under a held-out-treatment split, classes with fewer than two treatments cannot be scored
(they are never in training when tested): they stay in training, are left out of scoring
with a warning and are listed in ``metrics.json``.

What each fold sees: plate normalisation is a per-plate transform (a test plate normalised by
its own controls only); feature selection, imputation, every model and the ensemble weights
are fitted on the fold's training rows only (``tests/test_leakage.py``). Finally every model
is refitted on all rows and saved for ``moa-features predict`` (:func:`save_run` writes the
run folder; ``docs/architecture.md`` "Training run" is the contract).
"""

from moa_features.training import *  # noqa: F403  (the public names of the training package)
from moa_features.training import __all__ as _training_names
from moa_features.training.cli import build_parser, main

__all__ = [*_training_names, "build_parser", "main"]

if __name__ == "__main__":  # the same program as `moa-features train`: train, then the report
    from moa_features.io import format_warnings
    from moa_features.pipeline import train_command

    format_warnings("train")
    raise SystemExit(train_command())
