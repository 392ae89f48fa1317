"""End-to-end time and headline figures of ``moa-features demo``, scored against the screen's truth.

Runs the real command in a subprocess in a fresh work folder (nothing cached: the screen is
generated, extracted, trained on and reported from scratch) and prints:

- wall time per stage and in total, the CPU time of the whole process tree (user + sys of
  the children, which is what a loaded shared machine cannot inflate much), and the load
  average before and after, so a wall figure can be judged;
- the headline metrics of every model from ``metrics.json`` (held-out treatments);
- phenotypic activity (``moa-features activity``) against the generator's truth: recall and
  precision of calling the truly inactive ones inactive, per treatment x concentration (a dose
  is truly active when its expected effect reaches ``EFFECT_THRESHOLD``) and per treatment
  (called active when any of its concentrations is).

Usage::

    PYTHONPATH=. python benchmarks/bench_demo.py [--preset demo] [--train-args '...'] [--json out.json]

Figures go into ``benchmarks/results_demo.md`` by hand, with the command that made them.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"])
    p.add_argument("--train-args", default="", help="passed to `moa-features demo --train-args`")
    p.add_argument("--models", default=None, help="passed to `moa-features demo --models`")
    p.add_argument("--workdir", help="work folder (default: a fresh temporary folder, removed afterwards)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        work = Path(args.workdir or tmp)
        cmd = [sys.executable, "-m", "moa_features", "demo", "--preset", args.preset, "--workdir", str(work), "-q"]
        if args.train_args:
            cmd += ["--train-args", args.train_args]
        if args.models:
            cmd += ["--models", args.models]
        env = os.environ | {"PYTHONPATH": str(REPO)}
        load_before = os.getloadavg()
        cpu0, t0 = children_cpu_seconds(), time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, check=False)
        wall, cpu = time.perf_counter() - t0, children_cpu_seconds() - cpu0
        if out.returncode:
            print(out.stdout[-4000:], out.stderr[-4000:], sep="\n", file=sys.stderr)
            return out.returncode
        name = "demo" if args.preset == "demo" else f"demo-{args.preset}"
        metrics = json.loads((work / "models" / name / "metrics.json").read_text())
        figures = {
            "command": " ".join(cmd[1:]),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cores": os.cpu_count(),
            "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
            "stages_wall_s": stage_seconds(out.stdout, wall),
            "train_config": {k: metrics["config"].get(k) for k in ("split", "n_folds", "models", "n_rows")},
            "models": {m: {k: v for k, v in vals.items() if k in HEADLINES or k.endswith("_ci") or "treatment" in k}
                       for m, vals in metrics["models"].items()},
            "activity": activity_figures(
                work / "features" / f"{name}.parquet",
                work / ".cache" / f"screen-{args.preset}" / "ground_truth_treatments.csv", env),
        }  # fmt: skip
    print(json.dumps(figures, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
