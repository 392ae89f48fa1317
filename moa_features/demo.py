"""``moa-features demo``: the whole pipeline on the built-in demo screen, a mini RxRx2.

generate the screen (real PNGs, RxRx2 layout, 40 soluble factors in 8 MoA classes at 4
concentrations, a quarter of them inactive in HUVEC) -> extract features and thumbnails ->
annotate treatments with MoAs -> train and score MoA on held-out treatments -> report.

What the numbers mean: every test treatment was never seen in training (all its
concentrations leave together), so the figures answer "what is the MoA of a new treatment?".
The answer key is the screen's ``ground_truth_treatments.csv`` (``moa_features.synthetic``).

How the demo trains is said in one place, :data:`TRAIN_OPTIONS` (``moa-features train``
options); ``--train-args`` appends more for one run (later options win).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from moa_features import extract as extract_mod

# How the demo trains and scores: `moa-features train` options, the one place to change them.
# Held-out treatments (nsc); a short CNN budget keeps the Keras baseline affordable on 2 cores.
TRAIN_OPTIONS: tuple[str, ...] = (
    "--split", "auto", "--folds", "5", "--active-only", "--cnn-epochs", "8", "--cnn-patience", "3", "--overwrite",
)  # fmt: skip
# The tiny preset (tests) has too few replicate wells per treatment for an activity call: it trains on all.
UNUSED_OPTIONS = {"tiny": ("--active-only",)}
# The seed's model, the ensemble (class-weighted XGBoost, consensus kNN, CNN embedding), with its
# members, the ensemble without the embedding and the Keras baseline, on the same folds.
DEFAULT_MODELS = "cnn,xgboost,ensemble,knn"
# Expected wall time on an idle 2-core machine (s), and each stage's share of it, for the
# progress lines' estimate (benchmarks/results_demo.md has the measured figures).
EXPECTED_SECONDS = {"tiny": 45.0, "demo": 120.0, "full": 1500.0}
STAGE_SHARES = {"extract": 0.35, "train": 0.55, "report": 0.10}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moa-features demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--preset",
        default="demo",
        choices=["tiny", "demo", "full"],
        help="screen size: tiny (tests, ~1 min), demo (default), full (1024x1024 sites, slow)",
    )
    p.add_argument("--full", dest="preset", action="store_const", const="full", help="same as --preset full")
    p.add_argument("--seed", type=int, default=0, help="seed of the screen and the models (default 0)")
    p.add_argument("--n-jobs", type=int, default=-1, help="worker processes (default: all cores)")
    p.add_argument("--workdir", default=".", help="folder holding .cache/, features/, models/, reports/ (default .)")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"models to train (default {DEFAULT_MODELS})")
    p.add_argument(
        "--train-args",
        default="",
        metavar="'ARGS'",
        help=f"extra `moa-features train` options, appended to {' '.join(TRAIN_OPTIONS)!r}",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p  # fmt: skip


def train_options(preset: str) -> list[str]:
    """:data:`TRAIN_OPTIONS` less those the preset cannot use (:data:`UNUSED_OPTIONS`)."""
    return [o for o in TRAIN_OPTIONS if o not in UNUSED_OPTIONS.get(preset, ())]


def train_argv(
    table: Path, thumbs: Path, run: Path, models: str, seed: int, extra: str = "", preset: str = "demo", n_jobs: int = 1
) -> list[str]:
    """The ``moa-features train`` command line of the demo: the demo's cores (``--n-jobs``; with 2 or more,
    the Keras baseline trains in a second process beside the other models), :func:`train_options`, then
    ``extra`` (a shell-quoted string; later options override earlier ones)."""
    return [str(table), "--thumbs", str(thumbs), "-o", str(run), "--models", models, "--seed", str(seed),
            "--no-report", "--n-jobs", str(n_jobs), *train_options(preset), *shlex.split(extra)]  # fmt: skip


def progress(stage: str, message: str, elapsed: float, expected: float) -> str:
    """One progress line: ``[i/3] message`` with the elapsed time and the estimated time left.

    The estimate scales ``expected`` (s, the whole run) by the share of the stages done so
    far (:data:`STAGE_SHARES`), corrected by how fast the finished stages actually went.
    """
    stages = list(STAGE_SHARES)
    done = sum(STAGE_SHARES[s] for s in stages[: stages.index(stage)])
    total = expected if done == 0 else max(expected * 0.25, elapsed / done)
    left = max(0.0, total - elapsed)
    return f"[{stages.index(stage) + 1}/{len(stages)}] {message}  ({elapsed:.0f} s so far, about {left:.0f} s left)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(args.workdir)
    name = "demo" if args.preset == "demo" else f"demo-{args.preset}"
    table = work / "features" / f"{name}.parquet"
    thumbs = table.with_name(f"{name}.thumbs.npy")
    run = work / "models" / name
    html = work / "reports" / f"{name}.html"
    expected = EXPECTED_SECONDS[args.preset]
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    print(progress("extract", f"demo screen ({args.preset}) + feature extraction + annotation -> {table}",
                   0.0, expected), flush=True)  # fmt: skip
    status = extract_mod.main(
        ["--demo", "--demo-preset", args.preset, "--demo-root", str(work / ".cache" / f"screen-{args.preset}"),
         "--seed", str(args.seed), "--n-jobs", str(args.n_jobs), "-o", str(table), "--no-report"]
        + (["-q"] if args.quiet else [])
    )  # fmt: skip
    if status not in (extract_mod.EXIT_OK, extract_mod.EXIT_SITES_FAILED):
        return status
    timings["extract_s"] = time.perf_counter() - t0

    command = train_argv(table, thumbs, run, args.models, args.seed, args.train_args, args.preset, args.n_jobs)
    print(progress("train", f"MoA of held-out treatments: moa-features train {shlex.join(command)}",
                   time.perf_counter() - t0, expected), flush=True)  # fmt: skip
    from moa_features.training import cli as train

    status = train.main(command)
    if status:
        return status
    timings["train_s"] = time.perf_counter() - t0 - timings["extract_s"]

    print(progress("report", f"report -> {html}", time.perf_counter() - t0, expected), flush=True)
    from moa_features.report import build_report

    options = shlex.join([*train_options(args.preset), *shlex.split(args.train_args)])
    provenance = {"demo": f"moa-features demo --preset {args.preset} --seed {args.seed}", "demo train options": options}
    build_report(table, run_dir=run, output=html, provenance=provenance | {k: round(v, 1) for k, v in timings.items()},
                 n_jobs=args.n_jobs)  # fmt: skip
    print(f"done in {time.perf_counter() - t0:.0f} s. Open the report: {html.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
