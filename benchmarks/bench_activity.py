"""Phenotypic activity and MoA consistency on BBBC021 (moa_features.activity, copairs 0.5).

Two inputs, each through the command's own route (:func:`moa_features.activity.main`:
normalisation ``auto``, label-free feature selection, then copairs):

- ``processed``: ``BBBC021_feature_selected_mad_robustize.csv`` (pycytominer profiles; ``auto``
  detects they are normalised and leaves them); also with ``--no-select``, the copairs
  reference setting (all 189 features as given): 102 of 103 treatments active at q < 0.05,
  per-MoA consistency mAP from 0.57 (Protein degradation) to 1.0 (Protein synthesis);
- ``raw``: Ljosa et al.'s raw per-well means joined with the image and MoA tables
  (``bench_bbbc021.raw_well_table``); ``auto`` normalises against each plate's DMSO wells.

Reports treatments active, the MoA consistency range and the CPU seconds of the whole command
(``time.process_time``, all threads; the done-when is < 60 s on 2 cores).

Usage: ``python benchmarks/bench_activity.py [-o OUT_DIR]``; writes ``OUT_DIR/activity_results.json``
(default ``models/bench_activity``) and the tables beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bbbc021 import PROFILES, TREATMENT, raw_well_table

from moa_features import activity


def run(table: Path, out: Path, *extra: str) -> dict:
    """One ``moa-features activity`` run; its figures and cost."""
    t0, w0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = activity.main([str(table), "-o", str(out), "--treatment", TREATMENT, *extra])
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    if code != 0:
        raise RuntimeError(f"moa-features activity failed on {table} (exit {code})")
    act = pd.read_csv(out)
    cons = pd.read_csv(activity.consistency_path(out)).sort_values("mean_average_precision")
    return {
        "table": table.name,
        "options": list(extra),
        "treatments": len(act),
        "active": int(act["active"].sum()),
        "active_fraction": round(float(act["active"].mean()), 4),
        "inactive": act.loc[~act["active"], "treatment"].tolist(),
        "consistency": {r.moa: round(float(r.mean_average_precision), 3) for r in cons.itertuples()},
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="models/bench_activity", help="output folder (default %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "bbbc021_raw_wells.csv"
    raw_well_table().to_csv(raw, index=False)
    results = {
        "processed": run(PROFILES, out / "processed.csv"),
        "processed_no_select": run(PROFILES, out / "processed_no_select.csv", "--no-select"),
        "raw": run(raw, out / "raw.csv"),
    }
    print(json.dumps(results, indent=2))
    (out / "activity_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
