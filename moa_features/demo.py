"""``moa-features demo``: the whole pipeline on the built-in demo screen.

generate the screen (real PNGs, RxRx2 layout) -> extract features and thumbnails ->
annotate treatments with MoAs -> train and evaluate every model on held-out plates ->
``reports/demo.html``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from moa_features import extract as extract_mod


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moa-features demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"], help="screen size (default demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the screen and the models (default 0)")
    p.add_argument("--n-jobs", type=int, default=-1, help="worker processes (default: all cores)")
    p.add_argument("--workdir", default=".", help="folder holding .cache/, features/, models/, reports/ (default .)")
    p.add_argument("--models", default="cnn,xgboost,ensemble,knn", help="models to train (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(args.workdir)
    name = "demo" if args.preset == "demo" else f"demo-{args.preset}"
    table = work / "features" / f"{name}.parquet"
    thumbs = table.with_name(f"{name}.thumbs.npy")
    run = work / "models" / name
    html = work / "reports" / f"{name}.html"
    t0 = time.perf_counter()

    print(f"[1/4] demo screen + feature extraction -> {table}", flush=True)
    status = extract_mod.main(
        ["--demo", "--demo-preset", args.preset, "--demo-root", str(work / ".cache" / f"screen-{args.preset}"),
         "--seed", str(args.seed), "--n-jobs", str(args.n_jobs), "-o", str(table), "--no-report"]
        + (["-q"] if args.quiet else [])
    )
    if status not in (extract_mod.EXIT_OK, extract_mod.EXIT_SITES_FAILED):
        return status

    print(f"[2/4] annotation: {table.with_name(f'{name}.treatment_moa.csv')} (filled Metadata_moa)", flush=True)
    print(f"[3/4] training and evaluation on held-out plates -> {run}", flush=True)
    from moa_features import train

    status = train.main([str(table), "--thumbs", str(thumbs), "-o", str(run), "--models", args.models,
                         "--seed", str(args.seed), "--no-report"])
    if status:
        return status

    print(f"[4/4] report -> {html}", flush=True)
    from moa_features.report import build_report

    build_report(table, run_dir=run, output=html)
    print(f"done in {time.perf_counter() - t0:.0f} s. Open the report: {html.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
