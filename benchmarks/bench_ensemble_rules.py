"""How MoAEnsemble's weight rule was chosen: candidate rules replayed on recorded BBBC021 folds.

``record``: runs ``train`` with its defaults exactly as ``bench_bbbc021.py --parts seeds`` does
(``--models xgboost,ensemble,knn``) for one ``TABLE-SPLIT`` and seed, and keeps, for every outer
fold, the members' probabilities on the ensemble's inner validation rows (with their classes,
treatments and wells) and on the outer test rows. ``score``: replays each candidate rule on
those records -- weights (and temperatures) chosen from the inner validation rows only, applied to
the outer test rows' member probabilities -- and gives the treatment accuracy over the scored
classes (probabilities averaged well -> treatment, as ``train`` scores). The outer test rows never
choose anything; comparing rules on these figures is still a choice made on the benchmark, which
the README says.

Usage::

    python benchmarks/bench_ensemble_rules.py record raw-nsc 0 -o OUT   # one per TABLE-SPLIT and seed
    python benchmarks/bench_ensemble_rules.py score OUT/*.pkl --json RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from moa_features.models import ensemble as E
from moa_features.training import fitting

MEMBERS = ("xgboost", "knn")


def record(item: str, seed: int, out: Path) -> Path:
    """Run ``train`` for ``item`` (``TABLE-SPLIT``) and ``seed``; pickle each fold's inner and outer probabilities."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_bbbc021

    rec: dict = {"inner": [], "outer": []}
    fit_ensemble, predict_fold = fitting.fit_ensemble, fitting.predict_fold

    def recording_fit(data, train, Xtr, settings, params, members):
        ens = fit_ensemble(data, train, Xtr, settings, params, members)
        va = train[ens.inner_split_[1]]
        rec["inner"].append(
            {"y": ens.inner_y_, "treatments": data.profiles[va], "wells": data.wells[va], "probas": ens.inner_proba_}
        )
        return ens

    def recording_predict(fitted, data, rows):
        out = predict_fold(fitted, data, rows)
        rec["outer"].append(
            {
                "classes": data.classes,
                "y": data.y[rows],
                "treatments": data.profiles[rows],
                "wells": data.wells[rows],
                "probas": {k: out[k] for k in MEMBERS},
            }
        )
        return out

    fitting.fit_ensemble, fitting.predict_fold = recording_fit, recording_predict
    try:
        res = bench_bbbc021.seeds_benchmark(out, [seed], [item], ("xgboost", "ensemble", "knn"))
    finally:
        fitting.fit_ensemble, fitting.predict_fold = fit_ensemble, predict_fold
    rec["summary"] = res["runs"]
    path = out / f"rules_{item}_{seed}.pkl"
    path.write_bytes(pickle.dumps(rec))
    return path


def treatment_mean(proba: np.ndarray, treatments, wells, y) -> tuple[np.ndarray, np.ndarray]:
    """(t, k) mean probabilities per treatment (of its wells' means) and each treatment's (t,) class."""
    t = np.asarray(treatments).astype(str)
    keys = np.char.add(np.char.add(t, "\x1f"), np.asarray(wells).astype(str))
    wk, wi = np.unique(keys, return_inverse=True)
    well_p = np.zeros((len(wk), proba.shape[1]))
    np.add.at(well_p, wi, proba)
    well_p /= np.bincount(wi)[:, None]
    well_t = np.array([k.split("\x1f")[0] for k in wk])
    tk, ti = np.unique(well_t, return_inverse=True)
    treat_p = np.zeros((len(tk), proba.shape[1]))
    np.add.at(treat_p, ti, well_p)
    treat_p /= np.bincount(ti)[:, None]
    first = {tt: yy for tt, yy in zip(t, np.asarray(y))}
    return treat_p, np.array([first[k] for k in tk])


def _treatment_accuracy(proba, fold) -> float:
    p, y = treatment_mean(proba, fold["treatments"], fold["wells"], fold["y"])
    return float(np.mean(p.argmax(axis=1) == y))


def previous_rule(probas, y, step=0.1):
    """The rule before this change: the blend of least balanced log-loss, else the best single member."""
    single = np.array([E.balanced_log_loss(y, p) for p in probas])
    grid = E.simplex_grid(len(probas), step)
    losses = np.array([E.balanced_log_loss(y, E._blend(probas, w)) for w in grid])
    if losses.min() >= single.min() - 1e-9:
        return np.eye(len(probas))[int(np.argmin(single))]
    best = np.flatnonzero(np.isclose(losses, losses.min(), rtol=0, atol=1e-9))
    return grid[best[np.argmin(np.abs(grid[best] - 1 / len(probas)).sum(axis=1))]]


def by_treatment_accuracy(probas, fold, grid):
    """The blend of best inner treatment accuracy; ties: the lower balanced log-loss."""
    keys = [(-_treatment_accuracy(E._blend(probas, w), fold), E.balanced_log_loss(fold["y"], E._blend(probas, w)))
            for w in grid]  # fmt: skip
    return grid[min(range(len(grid)), key=keys.__getitem__)]


RULES = {
    "xgboost alone": lambda p, f: np.array([1.0, 0.0]),
    "knn alone": lambda p, f: np.array([0.0, 1.0]),
    "log-loss minimum (before)": lambda p, f: previous_rule(p, f["y"]),
    "log-loss minimum, grid 0.5": lambda p, f: previous_rule(p, f["y"], 0.5),
    "equal weights": lambda p, f: np.array([0.5, 0.5]),
    "treatment accuracy, log-loss ties": lambda p, f: by_treatment_accuracy(p, f, E.simplex_grid(2, 0.1)),
    "best member by treatment accuracy": lambda p, f: by_treatment_accuracy(p, f, np.eye(2)),
    "one-SE rule over treatments": lambda p, f: E.choose_weights(p, f["y"], 0.1, f["treatments"])[0],
}
CALIBRATED = ("log-loss minimum (before)", "treatment accuracy, log-loss ties", "best member by treatment accuracy",
              "equal weights", "one-SE rule over treatments")  # fmt: skip


def score(rec: dict) -> dict[str, float]:
    """Outer treatment accuracy (scored classes) of every rule, uncalibrated and temperature-scaled."""
    run = next(iter(rec["summary"].values()))
    unscored = {str(c) for c in run["unscored_classes"]}
    out: dict[str, list] = {}
    for inner, outer in zip(rec["inner"], rec["outer"]):
        for calibrate in (False, True):
            temps = {n: E.fit_temperature(inner["probas"][n], inner["y"]) if calibrate else 1.0 for n in MEMBERS}
            probas = [E.temper(inner["probas"][n], temps[n]) for n in MEMBERS]
            for name, rule in RULES.items():
                if calibrate and name not in CALIBRATED:
                    continue
                w = rule(probas, inner)
                blend = sum(wi * E.temper(outer["probas"][n], temps[n]) for wi, n in zip(w, MEMBERS))
                p, y = treatment_mean(blend, outer["treatments"], outer["wells"], outer["y"])
                keep = ~np.isin(y.astype(str), list(unscored))
                key = f"temperature + {name}" if calibrate else name
                out.setdefault(key, []).append((outer["classes"][p.argmax(axis=1)] == y)[keep])
    return {k: round(float(np.concatenate(v).mean()), 4) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("item", help="TABLE-SPLIT, e.g. raw-nsc")
    r.add_argument("seed", type=int)
    r.add_argument("-o", "--output", default="models/bench_ensemble_rules")
    s = sub.add_parser("score")
    s.add_argument("records", nargs="+")
    s.add_argument("--json", help="write the table here")
    args = p.parse_args(argv)
    if args.cmd == "record":
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        print(record(args.item, args.seed, out))
        return 0
    table: dict = {}
    for path in sorted(args.records):
        rec = pickle.loads(Path(path).read_bytes())
        key = next(iter(rec["summary"]))
        table[key] = score(rec)
        print(key, json.dumps(table[key]), flush=True)
    items = sorted({k.split("/")[0] for k in table})
    summary: dict = {}
    for item in items:
        for rule in next(iter(table.values())):
            v = [table[k][rule] for k in table if k.startswith(item + "/")]
            sd = round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else None
            summary.setdefault(item, {})[rule] = {"mean": round(float(np.mean(v)), 4), "sd": sd, "seeds": len(v)}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": table, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
