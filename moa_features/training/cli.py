"""``python -m moa_features.train`` / ``moa-features train``: the command line of a training run."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from moa_features import profiling, schema
from moa_features._optional import MissingDependencyError
from moa_features.columns import Columns, ControlQueryError, add_n_jobs_option, metadata_parent
from moa_features.io import OutputLockedError
from moa_features.models import registry, splits
from moa_features.models.preprocessing import RECIPES
from moa_features.training.fitting import _log
from moa_features.training.folds import LOO_MAX_TREATMENTS
from moa_features.training.metrics import N_PERMUTATIONS
from moa_features.training.run import run_training


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features train",
        description="Train and evaluate MoA models on held-out treatments (or plates), beside chance.",
        parents=[metadata_parent()],
    )
    p.add_argument("table", help="feature table (.parquet, .csv or .csv.gz) following the Metadata_ convention")
    p.add_argument(
        "--thumbs", help="(N, S, S, C) uint8 thumbnails row-aligned with TABLE (NAME.thumbs.npy); enables the CNNs"
    )
    p.add_argument("-o", "--output", help="run folder (default: models/<table name>)")
    p.add_argument("--group", dest="plate", help=argparse.SUPPRESS)  # the option's name before --plate
    p.add_argument(
        "--split",
        choices=("auto",) + splits.SPLITS,
        default="auto",
        help="what is held out. nsc ('not same compound'): whole treatments, all concentrations together; "
        "answers 'what is the MoA of a treatment the model has never seen?'. nsc-plate: nsc, and no "
        "training row from the test treatments' plates. nscb: nsc, and none from their batches "
        "(--batch). plate / experiment: held-out plates / experiments; the test treatments were seen "
        "in training, so this is treatment recognition, not MoA generalisation. auto (default): "
        "nsc-plate where the plate layout allows, else nsc, when TABLE has the --treatment column; "
        "plate otherwise",
    )
    p.add_argument(
        "--folds",
        default=None,
        metavar="K|loo",
        help=f"outer folds: K grouped folds or loo (leave one treatment/plate out). Default: loo for nsc/nscb "
        f"with up to {LOO_MAX_TREATMENTS} treatments and no CNN (the field's leave-one-compound-out protocol), "
        f"else {splits.DEFAULT_NSC_FOLDS} treatment-grouped folds stratified by class for nsc splits and "
        f"{splits.DEFAULT_GROUP_FOLDS} for plate/experiment",
    )
    p.add_argument(
        "--experiment", default=schema.EXPERIMENT, help="experiment column for --split experiment (default %(default)s)"
    )
    p.add_argument(
        "--exclude-label",
        action="append",
        default=[],
        metavar="VALUE[,VALUE...]",
        help="labels removed from training and evaluation (after normalisation); repeat the option or separate "
        "values by commas; default: none",
    )
    p.add_argument(
        "--active-only",
        action="store_true",
        help="train and score on phenotypically active treatments only (copairs mAP vs controls)",
    )
    p.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {','.join(registry.names(chance=False))} "
        "(default: all that apply; CNNs need --thumbs)",
    )
    p.add_argument(
        "--normalize",
        choices=profiling.NORMALIZATIONS,
        default=profiling.DEFAULT_NORMALIZATION,
        help="per-plate robust z-score: 'controls' (centre and spread of the plate's negative controls), "
        "'pooled' (plate's control centre, spread pooled over every plate's controls: well-conditioned with few "
        "controls), 'plate' (all plate rows), 'none'; 'auto' picks pooled (plate where a plate has no "
        "controls), or none for an already-normalised table (default %(default)s)",
    )
    p.add_argument(
        "--preprocess",
        choices=RECIPES,
        default="sphere",
        help="per-fold profile preparation, fitted on the training rows and the controls of the training plates: "
        "'sphere' (default; the field's recipe: robust z against negative controls, feature selection, sphering "
        "on negative controls; with it --normalize auto adds no per-plate step), 'scale' (without sphering), "
        "'select' (feature selection only, after the per-plate --normalize step)",
    )
    p.add_argument(
        "--sphere-epsilon",
        default="auto",
        metavar="auto|FLOAT",
        help="regularisation of the sphering (added to each control eigenvalue, in units of a control-scaled "
        "feature's variance); auto (default): chosen in each fold on an inner split of the outer split's kind",
    )
    p.add_argument(
        "--annotation", help="treatment -> MoA table (treatment_moa.csv) used when the label column is missing"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of every model and split (default %(default)s)")
    p.add_argument(
        "--cnn-epochs",
        type=int,
        default=100,
        help="upper bound of the CNN epoch search; the embedding CNN's budget is chosen on the inner "
        "validation split (default %(default)s)",
    )
    p.add_argument(
        "--cnn-patience", type=int, default=5, help="CNN early-stopping patience in epochs (default %(default)s)"
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=N_PERMUTATIONS,
        help="treatment-level label permutations for the p-values (default %(default)s)",
    )
    add_n_jobs_option(p)
    p.add_argument(
        "--scheduler", help="dask.distributed scheduler address (tcp://HOST:PORT): train XGBoost with xgboost.dask"
    )
    p.add_argument("--no-save-models", action="store_true", help="evaluate only; do not refit and save the models")
    p.add_argument("--no-report", action="store_true", help="do not build the HTML report")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder (a fresh folder is written and swapped in whole)",
    )
    return p


def _parse_folds(value: str | None) -> int | None:
    if value is None:
        return None
    if value.lower() == "loo":
        return 0
    if not value.isdigit() or int(value) < 2:
        raise ValueError(f"--folds must be an integer >= 2 or 'loo', got {value!r}")
    return int(value)


def _parse_epsilon(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        eps = float(value)
    except ValueError:
        eps = -1.0
    if not eps >= 0:
        raise ValueError(f"--sphere-epsilon must be 'auto' or a number >= 0, got {value!r}")
    return eps


def main(argv: list[str] | None = None) -> int:
    """``python -m moa_features.train``: train and evaluate, write the run folder (no report).

    Parameters
    ----------
    argv : list of str, optional
        ``TABLE [-o RUN] [--thumbs ...] [options]`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when the run folder is written; 2 for unusable input (table, columns, split, models
        or the output folder), the reason on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    stem = schema.sidecar_paths(args.table)["thumbs"].name.removesuffix(".thumbs.npy")
    output = args.output or str(Path("models") / stem)
    models = None if args.models is None else tuple(m.strip() for m in args.models.split(",") if m.strip())
    try:
        run_training(
            args.table,
            output,
            args.thumbs,
            columns=Columns.from_args(args),
            split=args.split,
            folds=_parse_folds(args.folds),
            exclude_labels=[v.strip() for value in args.exclude_label for v in value.split(",") if v.strip()],
            models=models,
            normalize=args.normalize,
            annotation=args.annotation,
            active_only=args.active_only,
            seed=args.seed,
            cnn_epochs=args.cnn_epochs,
            cnn_patience=args.cnn_patience,
            n_permutations=args.permutations,
            scheduler=args.scheduler,
            n_jobs=args.n_jobs,
            save_models=not args.no_save_models,
            overwrite=args.overwrite,
            preprocess=args.preprocess,
            sphere_epsilon=_parse_epsilon(args.sphere_epsilon),
            command="python -m moa_features.train " + " ".join(shlex.quote(a) for a in argv),
        )
    except (
        FileNotFoundError,
        KeyError,
        ValueError,
        TypeError,
        OutputLockedError,
        MissingDependencyError,
        ControlQueryError,
    ) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"moa-features train: error: {message}", file=sys.stderr)
        return 2
    _log(f"wrote {output}/")
    return 0
