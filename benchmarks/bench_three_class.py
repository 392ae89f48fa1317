"""The seed project's original 3-class setting on the demo screen, with the faithful Keras CNN baseline.

The original notebook classified GPCR agonist / Growth factor / Interleukin sites of RxRx2 with
a small Keras CNN and reported chance-level accuracy. Its labels were misaligned with its
images: the metadata was sorted by plate and well *as strings* (``AA04`` before ``B02``), while
the images were stacked in plate-row order (B..Z, then AA..AF). This benchmark runs, on the
demo screen (1536-well naming, rows A..AF) and under the demo's held-out-treatment split
(``moa_features.demo.TRAIN_OPTIONS``):

1. ``aligned``: the CNN baseline (``cnn``) beside XGBoost and kNN on correctly aligned labels;
2. ``misaligned``: the same CNN after reproducing the notebook's bug (string-sorted labels
   paired with row-ordered images), which should fall to chance.

Usage::

    PYTHONPATH=. python benchmarks/bench_three_class.py [--workdir DIR] [--train-args '...']

It reuses ``DIR/features/demo.parquet`` (+ thumbnails) when present, else runs the demo's
extraction first. Figures go into ``benchmarks/results_demo.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.demo import TRAIN_OPTIONS
from moa_features.io import read_table, write_table
from moa_features.synthetic import PLATE_ROWS, TREATMENTS

CLASSES = ("GPCR agonist", "Growth factor", "Interleukin")
OTHER_LABELS = sorted({t.moa for t in TREATMENTS} - set(CLASSES)) + [schema.NEGATIVE_CONTROL_MOA]


def plate_row_order(meta: pd.DataFrame) -> np.ndarray:
    """Row order of images stacked plate by plate, rows B..Z then AA..AF, then column and site."""
    well = meta[schema.WELL].astype(str)
    key = pd.DataFrame({
        "plate": meta[schema.PLATE].astype(str), "row": well.str[:-2].map(PLATE_ROWS.index),
        "col": well.str[-2:].astype(int), "site": meta[schema.SITE].astype(int),
    })  # fmt: skip
    return key.sort_values(["plate", "row", "col", "site"], kind="stable").index.to_numpy()


def string_order(meta: pd.DataFrame) -> np.ndarray:
    """Row order of metadata sorted by plate and well as strings (``AA04`` before ``B02``)."""
    key = pd.DataFrame({"plate": meta[schema.PLATE].astype(str), "well": meta[schema.WELL].astype(str),
                        "site": meta[schema.SITE].astype(int)})  # fmt: skip
    return key.sort_values(["plate", "well", "site"], kind="stable").index.to_numpy()


def misaligned_copy(table: pd.DataFrame, thumbs: np.ndarray, folder: Path) -> tuple[Path, Path, float]:
    """Write the notebook's misaligned pairing: row ``i`` of the table in string order with
    image ``i`` in plate-row order. Returns the table, the thumbnails and the fraction of
    rows whose image is not their own."""
    by_string, by_row = string_order(table), plate_row_order(table)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_table(table.iloc[by_string].reset_index(drop=True), folder / "misaligned.parquet")
    np.save(folder / "misaligned.thumbs.npy", np.ascontiguousarray(thumbs[by_row]))
    return path, folder / "misaligned.thumbs.npy", float(np.mean(by_string != by_row))


def run(table: Path, thumbs: Path, output: Path, models: str, extra: str) -> dict:
    """``moa-features train`` on the three classes with the demo's options; returns metrics.json."""
    from moa_features import train

    argv = [str(table), "--thumbs", str(thumbs), "-o", str(output), "--models", models, "--no-report",
            "--no-save-models", "--exclude-label", *OTHER_LABELS, *TRAIN_OPTIONS, *shlex.split(extra)]  # fmt: skip
    t0 = time.process_time()
    if train.main(argv):
        raise SystemExit(f"train failed: {shlex.join(argv)}")
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["cpu_s"] = round(time.process_time() - t0, 1)
    metrics["command"] = "moa-features train " + shlex.join(argv)
    return metrics


def headline(metrics: dict) -> dict:
    """Per model: the metrics.json figures a reader compares (site, well, treatment level, p-values)."""
    keep = ("macro_recall", "well_macro_recall", "treatment_accuracy", "treatment_macro_recall")
    return {m: {k: round(v, 3) for k, v in vals.items() if isinstance(v, float) and (k in keep or k.endswith("_p"))}
            for m, vals in metrics["models"].items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=".", help="folder with (or for) features/demo.parquet (default .)")
    p.add_argument("--train-args", default="", help="extra `moa-features train` options (appended)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    work = Path(args.workdir)
    table, thumbs = work / "features" / "demo.parquet", work / "features" / "demo.thumbs.npy"
    if not table.exists():
        from moa_features import extract

        extract.main(["--demo", "--demo-root", str(work / ".cache" / "screen-demo"), "-o", str(table),
                      "--no-report", "-q"])  # fmt: skip
    out = work / "models" / "three-class"
    aligned = run(table, thumbs, out / "aligned", "cnn,xgboost,knn", args.train_args)
    bad_table, bad_thumbs, moved = misaligned_copy(read_table(table), np.load(thumbs), out / "misaligned-input")
    misaligned = run(bad_table, bad_thumbs, out / "misaligned", "cnn", args.train_args)
    figures = {
        "classes": list(CLASSES), "train_options": list(TRAIN_OPTIONS) + shlex.split(args.train_args),
        "aligned": headline(aligned), "aligned_cpu_s": aligned["cpu_s"],
        "misaligned_rows_fraction": round(moved, 3), "misaligned_cnn": headline(misaligned).get("cnn"),
        "chance_models": {m: v for m, v in headline(aligned).items() if m not in ("cnn", "xgboost", "knn")},
        "commands": [aligned["command"], misaligned["command"]],
    }  # fmt: skip
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
