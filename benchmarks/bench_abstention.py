"""Abstention in ``moa-features predict`` on BBBC021: DMSO pseudo-treatments must abstain, real treatments not.

1. Train as README does: ``moa-features train TABLE --treatment Metadata_Compound --exclude-label
   DMSO`` (default models: XGBoost, kNN, their ensemble; ``--folds 5`` to keep the benchmark
   short), on the pycytominer profiles (``processed``) and on Ljosa's raw well means (``raw``).
2. Regroup DMSO wells as pseudo-treatments (:func:`moa_features.activity.pseudo_treatments`: one
   well from each of 3 plates of one week, 3 per group of plates, 51 in all; the other DMSO wells
   stay controls) and run ``moa-features predict RUN PSEUDO_TABLE`` with its defaults.
3. Per model, the share of pseudo-treatments and of the 103 real treatments whose call is
   ``inactive`` or ``uncertain`` (the done-when: >= 90 % and < 10 %), and the effect of the
   threshold ``--uncertain-below``: the share of real treatments below it when predicted by the
   final models (which trained on them) and when held out (the run's
   ``treatment_predictions.csv``: treatments never trained on), and of pseudo-treatments.

Usage: ``python benchmarks/bench_abstention.py [-o OUT_DIR] [--tables processed,raw]``; writes
``OUT_DIR/abstention_results.json`` (default ``models/bench_abstention``).
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

from moa_features import activity, predict
from moa_features.training import cli as train_cli

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
ABSTAIN = (predict.INACTIVE, predict.UNCERTAIN)


def pseudo_table(table: pd.DataFrame) -> pd.DataFrame:
    week = table["Metadata_Plate"].str.split("_").str[0]
    pseudo, chosen = activity.pseudo_treatments(
        table, week, (table[TREATMENT] == "DMSO").to_numpy(), treatment=TREATMENT
    )
    assert chosen.sum() == 153, chosen.sum()
    return pseudo


def shares(calls: pd.DataFrame) -> dict:
    """Per model: abstaining shares of pseudo and real treatments, and the share below each threshold."""
    out = {}
    for model, g in calls.groupby("model"):
        pseudo = g["treatment"].str.startswith("pseudo-")
        out[model] = {
            "pseudo_abstain": round(float(g.loc[pseudo, "call"].isin(ABSTAIN).mean()), 3),
            "real_abstain": round(float(g.loc[~pseudo, "call"].isin(ABSTAIN).mean()), 3),
            "real_inactive": int((g.loc[~pseudo, "call"] == predict.INACTIVE).sum()),
            "real_uncertain": int((g.loc[~pseudo, "call"] == predict.UNCERTAIN).sum()),
            "n_pseudo": int(pseudo.sum()),
            "n_real": int((~pseudo).sum()),
            "pseudo_below": {t: round(float((g.loc[pseudo, "probability"] < t).mean()), 3) for t in THRESHOLDS},
            "real_below": {t: round(float((g.loc[~pseudo, "probability"] < t).mean()), 3) for t in THRESHOLDS},
        }
    return out


def held_out_below(run: Path) -> dict:
    """Per model: the share of held-out real treatments whose top probability is below each threshold."""
    tp = pd.read_csv(run / "treatment_predictions.csv")
    return {
        model: {t: round(float((g["probability"] < t).mean()), 3) for t in THRESHOLDS}
        for model, g in tp.groupby("model")
    }


def bench(name: str, table: pd.DataFrame, out: Path) -> dict:
    path, pseudo_path, run = out / f"{name}.csv", out / f"{name}-pseudo.csv", out / f"run-{name}"
    table.to_csv(path, index=False)
    pseudo_table(table).to_csv(pseudo_path, index=False)
    t0 = time.process_time()
    argv = [str(path), "-o", str(run), "--treatment", TREATMENT, "--exclude-label", "DMSO", "--folds", "5",
            "--overwrite", "--no-report"]  # fmt: skip
    if train_cli.main(argv) != 0:
        raise RuntimeError(f"train failed: {argv}")
    train_cpu = time.process_time() - t0
    pred = out / f"{name}-predictions.parquet"
    t0 = time.process_time()
    if predict.main([str(run), str(pseudo_path), "-o", str(pred)]) != 0:
        raise RuntimeError(f"predict failed on {pseudo_path}")
    return {
        "train_cpu_s": round(train_cpu, 1),
        "predict_cpu_s": round(time.process_time() - t0, 1),
        "threshold": predict.UNCERTAIN_BELOW,
        "calls": shares(pd.read_parquet(predict.treatments_path(pred))),
        "held_out_real_below": held_out_below(run),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="models/bench_abstention", help="output folder (default %(default)s)")
    p.add_argument("--tables", default="processed,raw", help="comma-separated: processed, raw (default %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"processed": lambda: pd.read_csv(PROFILES), "raw": raw_well_table}
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.tables.split(","):
            results[name] = bench(name, tables[name](), out)
            print(name, json.dumps(results[name], indent=1), flush=True)
    (out / "abstention_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
