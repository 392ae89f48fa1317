"""``moa-features demo`` end to end: wall time, and the ensemble against each member, the ensemble
without the CNN embedding, the Keras baseline and chance, on the same held-out folds.

Runs the real command (README's first command) in a subprocess in a fresh work folder per seed
(nothing cached: the screen is generated, extracted, trained on and reported from scratch; the
seed changes both the screen and the models) and prints:

- wall time per stage and in total, the CPU time of the process tree (user + sys of the
  children, which a loaded shared machine cannot inflate much), and the load average before and
  after, so a wall figure can be judged against the <= 150 s budget;
- every model's treatment-level macro recall, accuracy and permutation p-value from
  ``metrics.json`` (held-out treatments and plates), the ensemble's weights per fold and the
  run's sentence on what the embedding adds;
- over all seeds, the ablation table (mean ± sd) in Markdown, for ``benchmarks/README.md``;
- with ``--activity``, phenotypic activity (``moa-features activity``) against the generator's
  truth (recall and precision of calling the truly inactive ones inactive).

Usage::

    PYTHONPATH=. python benchmarks/bench_demo.py [--seeds 0 1 2] [--preset demo] [--json out.json]

Figures go into ``benchmarks/README.md`` / ``benchmarks/results_demo.md`` by hand, with the
command that made them. The demo screen is synthetic and its MoA classes are separable by
construction: its figures check the pipeline, they are not evidence on real images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
HEADLINES = (
    "macro_recall",
    "treatment_macro_recall",
    "treatment_accuracy",
    "treatment_macro_recall_p",
    "treatment_accuracy_p",
)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stage_seconds(stdout: str, total: float) -> dict[str, float]:
    """Wall seconds per demo stage, from the ``[i/3] ... (N s so far`` progress lines."""
    marks = [
        (m.group(1), float(m.group(2))) for m in re.finditer(r"^\[(\d)/3\].*?\((\d+) s so far", stdout, re.MULTILINE)
    ]
    names = {"1": "screen+extract", "2": "train", "3": "report"}
    starts = [s for _, s in marks] + [total]
    return {names[i]: round(starts[k + 1] - starts[k], 1) for k, (i, _) in enumerate(marks)}


def dose_truth(truth: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per (treatment, concentration) of ``ground_truth_treatments.csv``: ``active`` when
    the expected effect at that dose reaches ``threshold`` (the generator's EFFECT_THRESHOLD)."""
    rows = [
        {"treatment": r.treatment, "conc": float(c), "active": float(e) >= threshold}
        for r in truth.itertuples()
        for c, e in zip(str(r.doses).split(";"), str(r.effect_at_doses).split(";"))
    ]
    return pd.DataFrame(rows)


def _inactive_scores(called: pd.Series, true: pd.Series) -> dict[str, float]:
    hit = int((~called & ~true).sum())
    return {"n": len(called), "n_truly_inactive": int((~true).sum()), "n_called_inactive": int((~called).sum()),
            "inactive_recall": hit / max(1, int((~true).sum())),
            "inactive_precision": hit / max(1, int((~called).sum()))}  # fmt: skip


def score_activity(activity: pd.DataFrame, truth: pd.DataFrame, threshold: float) -> dict[str, dict[str, float]]:
    """Recall and precision of calling the truly inactive ones inactive, per dose and per treatment.

    activity: ``phenotypic_activity`` output, ``treatment`` keys ``NAME@CONCENTRATION`` (or
    ``NAME``) and a boolean ``active``; truth: ``ground_truth_treatments.csv``. A treatment
    counts as called active when any of its concentrations is.
    """
    keys = activity["treatment"].astype(str).str.rsplit("@", n=1)
    called = pd.DataFrame({"treatment": keys.str[0], "active": activity["active"].astype(bool)})
    out = {}
    if keys.str.len().eq(2).all():
        called["conc"] = keys.str[1].astype(float)
        doses = called.merge(dose_truth(truth, threshold), on=["treatment", "conc"], suffixes=("", "_true"))
        out["per_dose"] = _inactive_scores(doses["active"], doses["active_true"])
    per_treatment = called.groupby("treatment")["active"].any()
    true = truth.set_index("treatment")["active"].astype(bool).reindex(per_treatment.index)
    out["per_treatment"] = _inactive_scores(per_treatment, true)
    return out


def activity_figures(table: Path, truth: Path, env: dict[str, str]) -> dict | str:
    """Run ``moa-features activity`` on the demo table and score it against the truth."""
    from moa_features.synthetic import EFFECT_THRESHOLD

    out = table.with_name("activity.csv")
    cpu0 = children_cpu_seconds()
    run = subprocess.run([sys.executable, "-m", "moa_features", "activity", str(table), "-o", str(out)],
                         capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if run.returncode:
        return f"moa-features activity failed (exit {run.returncode}): {run.stderr.strip()[-500:]}"
    scores: dict = score_activity(pd.read_csv(out), pd.read_csv(truth), EFFECT_THRESHOLD)
    scores["cpu_s"] = round(children_cpu_seconds() - cpu0, 1)
    return scores


ABLATION_ORDER = ("ensemble", "xgboost", "knn", "cnn_embedding", "ensemble_no_embedding", "cnn", "majority")


def run_demo(seed: int, preset: str, work: Path, models: str | None, train_args: str) -> dict:
    """One ``moa-features demo`` in ``work``: timings and the figures of every model."""
    cmd = [sys.executable, "-m", "moa_features", "demo", "--preset", preset, "--seed", str(seed),
           "--workdir", str(work), "-q"]  # fmt: skip
    if train_args:
        cmd += ["--train-args", train_args]
    if models:
        cmd += ["--models", models]
    # a cold JAX compilation cache per run, as in a fresh clone (the cache then serves the run's later folds)
    env = os.environ | {"PYTHONPATH": str(REPO), "MOA_FEATURES_JAX_CACHE": str(work / "jax-cache")}
    load_before = os.getloadavg()
    cpu0, t0 = children_cpu_seconds(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, check=False)
    wall, cpu = time.perf_counter() - t0, children_cpu_seconds() - cpu0
    if out.returncode:
        raise RuntimeError(f"demo failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    name = "demo" if preset == "demo" else f"demo-{preset}"
    metrics = json.loads((work / "models" / name / "metrics.json").read_text())
    return {
        "seed": seed,
        "command": " ".join(cmd[1:]),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cores": os.cpu_count(),
        "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
        "stages_wall_s": stage_seconds(out.stdout, wall),
        "train_timings_s": metrics.get("timings", {}),
        "train_config": {k: metrics["config"].get(k) for k in ("split", "n_folds", "models", "n_rows",
                                                                 "cnn_embedding_epochs")},
        "models": {m: {k: v for k, v in vals.items() if k in HEADLINES or k.endswith("_ci95") and "treatment" in k}
                   for m, vals in metrics["models"].items()},
        "chance": next(iter(metrics["models"].values())).get("treatment_expected_chance"),
        "ensemble_weights": [f.get("weights") for f in (metrics.get("ensemble") or {}).get("folds", [])],
        "embedding": metrics.get("embedding"),
        "table": str(work / "features" / f"{name}.parquet"),
        "truth": str(work / ".cache" / f"screen-{preset}" / "ground_truth_treatments.csv"),
    }  # fmt: skip


def ablation_table(runs: list[dict]) -> str:
    """Markdown: per model, treatment macro recall and accuracy mean ± sd over the runs, the largest p."""
    lines = [
        f"| model | treatment macro recall (mean ± sd, {len(runs)} seeds) | treatment accuracy | largest p |",
        "| --- | --- | --- | --- |",
    ]
    names = [m for m in ABLATION_ORDER if all(m in r["models"] for r in runs)]
    for m in names:
        rec = np.array([r["models"][m]["treatment_macro_recall"] for r in runs])
        acc = np.array([r["models"][m]["treatment_accuracy"] for r in runs])
        p = max(r["models"][m].get("treatment_macro_recall_p", np.nan) for r in runs)
        lines.append(f"| {m} | {rec.mean():.3f} ± {rec.std(ddof=1) if len(rec) > 1 else 0:.3f} | "
                     f"{acc.mean():.3f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.3f} | {p:.3f} |")  # fmt: skip
    chance = np.array([r["chance"]["macro_recall"] for r in runs if r.get("chance")])
    if len(chance):
        lines.append(f"| chance (class priors) | {chance.mean():.3f} | | |")
    walls = np.array([r["wall_s"] for r in runs])
    loads = [r["load_before"][0] for r in runs]
    lines.append("")
    lines.append(f"wall {np.median(walls):.1f} s median ({', '.join(f'{w:.0f}' for w in walls)} s; load average "
                 f"before {', '.join(f'{v:.1f}' for v in loads)}), CPU "
                 f"{np.median([r['cpu_s'] for r in runs]):.1f} s median")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one demo run per seed (default 0)")
    p.add_argument("--train-args", default="", help="passed to `moa-features demo --train-args`")
    p.add_argument("--models", default=None, help="passed to `moa-features demo --models`")
    p.add_argument("--activity", action="store_true", help="also score `moa-features activity` against the truth")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
            try:
                run = run_demo(seed, args.preset, Path(tmp), args.models, args.train_args)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 1
            if args.activity:
                env = os.environ | {"PYTHONPATH": str(REPO)}
                run["activity"] = activity_figures(Path(run["table"]), Path(run["truth"]), env)
        print(json.dumps(run, indent=2, default=str), flush=True)
        runs.append(run)
    table = ablation_table(runs)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "ablation_table": table}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
