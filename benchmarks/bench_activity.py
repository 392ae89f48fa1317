"""Phenotypic activity on BBBC021 without batch leakage (moa_features.activity, copairs 0.5).

Every figure comes from the command itself (:func:`moa_features.activity.main`, defaults:
``--normalize auto`` = profiles centred on each plate's DMSO wells, label-free feature
selection, each replicate well ranked against the DMSO wells of its own plate). Two tables:

- ``processed``: ``BBBC021_feature_selected_mad_robustize.csv`` (pycytominer profiles,
  normalised against all wells of each plate, so ``auto`` centres them on the plate's DMSO);
- ``raw``: Ljosa et al.'s raw per-well means joined with the image and MoA tables
  (``bench_bbbc021.raw_well_table``).

For each table: real activity (103 compound x concentration treatments), and the
pseudo-treatment check (issue 19): DMSO wells regrouped as 51 pseudo-treatments, one well from
each of 3 plates of one imaging week (:func:`moa_features.activity.pseudo_treatments`), the other
DMSO wells kept as controls. A pseudo-treatment has no phenotype; calling it active measures
plate or week similarity. Beside the defaults: ``--batch Metadata_Week`` (ranked against the
DMSO wells of the whole week), every DMSO well of the screen as a negative (``--batch`` on a
constant column), and that with the normalisation ``auto`` chose before the fix (pycytominer's
profiles as given): the behaviour before the fix.

Usage: ``python benchmarks/bench_activity.py [-o OUT_DIR]``; writes ``OUT_DIR/activity_results.json``
(default ``models/bench_activity``) and the tables beside it; ``results_activity.md`` is written from it by hand.
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

WEEK = "Metadata_Week"
EVERYTHING = "Metadata_Screen"
ROUTES = {"defaults (own plate)": [], "--batch week": ["--batch", WEEK], "every DMSO well": ["--batch", EVERYTHING]}
# Before the fix: every DMSO well of the screen a negative, and `auto` left pycytominer's profiles as given.
BEFORE = {"processed": ["--batch", EVERYTHING, "--normalize", "none"], "raw": ["--batch", EVERYTHING]}


def with_pseudo(table: pd.DataFrame) -> pd.DataFrame:
    """The table with 51 DMSO pseudo-treatments (3 per group of 3 plates of one week), week and screen columns."""
    week = table["Metadata_Plate"].str.split("_").str[0]
    pseudo, _ = activity.pseudo_treatments(table, week, (table[TREATMENT] == "DMSO").to_numpy(), treatment=TREATMENT)
    return pseudo.assign(**{WEEK: week, EVERYTHING: "all"})


def run(table: pd.DataFrame, out: Path, *extra: str) -> dict:
    """One ``moa-features activity`` run on ``table`` (written to ``out``'s folder); its figures and cost."""
    path = out.with_suffix(".input.csv")
    table.to_csv(path, index=False)
    t0, w0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = activity.main([str(path), "-o", str(out), "--treatment", TREATMENT, *extra])
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    if code != 0:
        raise RuntimeError(f"moa-features activity failed on {path} (exit {code})")
    act = pd.read_csv(out)
    cons = pd.read_csv(activity.consistency_path(out)).sort_values("mean_average_precision")
    pseudo = act["treatment"].str.startswith("pseudo-")
    real = act[~pseudo]
    return {
        "options": list(extra),
        "real_treatments": len(real),
        "real_active": int(real["active"].sum()),
        "real_inactive": real.loc[~real["active"], "treatment"].tolist(),
        "pseudo_treatments": int(pseudo.sum()),
        "pseudo_active": int(act.loc[pseudo, "active"].sum()),
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
    results: dict = {}
    for name, table in (("processed", pd.read_csv(PROFILES)), ("raw", raw_well_table())):
        plain = table.assign(**{WEEK: table["Metadata_Plate"].str.split("_").str[0], EVERYTHING: "all"})
        pseudo = with_pseudo(table)
        for route, extra in {**ROUTES, "before the fix": BEFORE[name]}.items():
            key = f"{name} / {route}"
            results[key] = {
                "real": run(plain, out / f"{name}-{len(results)}-real.csv", *extra),
                "pseudo": run(pseudo, out / f"{name}-{len(results)}-pseudo.csv", *extra),
            }
            print(key, json.dumps(results[key]), flush=True)
    (out / "activity_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
