"""BBBC021 benchmarks of the models: MoA under NSC / NSCB, and cycloheximide vs DMSO crops.

1. Profiles (``BBBC021_feature_selected_mad_robustize.csv``, 12 MoAs, CellProfiler per-well
   profiles already robust-normalised by pycytominer, so ``--normalize none``): ``moa-features
   train --split nsc`` (leave-one-compound-out) and ``--split nscb`` (also no training wells
   from the test compound's batch = imaging week, the ``WeekN`` prefix of the plate name; as
   in Ando et al. 2017 and Kensert et al. 2019, the MoAs "Cholesterol-lowering" and "Kinase
   inhibitors" are left out of NSCB because all their compounds were imaged in one batch),
   with ``xgboost``, ``knn`` and their ``ensemble``; the headline figure is
   ``treatment_accuracy`` (one prediction per compound x concentration), the field's NSC
   accuracy.
2. Raw (``raw``): Ljosa et al. 2013's raw CellProfiler per-well means (516 features, no
   normalisation, no selection) joined with the image and MoA tables
   (:func:`raw_well_table`), then ``train --split nsc --treatment Metadata_Compound
   --exclude-label DMSO`` with the *default* preprocessing; and ``processed-defaults``: the
   pycytominer file with the same default options (no ``--normalize none``), which must match
   ``--normalize none`` (``nsc``) or warn.
3. Preprocessing (``prep``): the quick consensus evaluation of :func:`consensus_knn_accuracy`
   (1-NN cosine between treatment consensus profiles, NSC) for every normalisation and
   feature-selection choice on the raw table; no model training.
4. Crops (``crops_sample/``: 40 DMSO and 40 cycloheximide single-cell crops, 68x68x3 uint16):
   features of this package (:func:`moa_features.features.measure`), then leave-one-well-out
   classification (held-out wells never trained on); the pooled ROC AUC of cycloheximide.

On a loaded machine run it with one BLAS thread per process (``OPENBLAS_NUM_THREADS=1``): oversubscribed
BLAS threads made one sphering SVD 12x slower there.

Usage: ``python benchmarks/bench_bbbc021.py [-o OUT_DIR] [--parts crops,nsc,nscb,raw,processed-defaults,prep]``.
Prints the figures and writes ``OUT_DIR/bbbc021_results.json`` (default ``models/bench_bbbc021``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from moa_features import profiling
from moa_features.columns import Columns
from moa_features.features import FeatureParams, measure
from moa_features.features.texture import run_lut
from moa_features.models.gbm import XGBoostClassifier
from moa_features.models.preprocessing import make_preprocessor
from moa_features.train import run_training
from moa_features.training.fitting import DEFAULT_MODELS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bbbc021"
PROFILES = DATA / "BBBC021_feature_selected_mad_robustize.csv"
RAW_WELLS = DATA / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz"
IMAGES = DATA / "BBBC021_v1_image.csv.gz"
MOAS = DATA / "BBBC021_v1_moa.csv"
TREATMENT = "Metadata_Compound"
CROPS = DATA / "crops_sample"
CROP_CHANNELS = ["DAPI", "Tubulin", "Actin"]
NSCB_SINGLE_BATCH_MOAS = ["Cholesterol-lowering", "Kinase inhibitors"]


def profiles_benchmark(out: Path, split: str) -> dict:
    """Train/evaluate xgboost, knn and the ensemble under ``split`` (nsc or nscb)."""
    table = PROFILES
    batch = None
    exclude = ["DMSO"]
    if split == "nscb":
        exclude += NSCB_SINGLE_BATCH_MOAS
        df = pd.read_csv(PROFILES)
        week = df["Metadata_Plate"].str.split("_").str[0].rename("Metadata_Batch")
        df = pd.concat([df, week], axis=1)
        table = out / "bbbc021_with_batch.csv"
        df.to_csv(table, index=False)
        batch = "Metadata_Batch"
    t0 = time.perf_counter()
    metrics = run_training(
        table,
        out / f"bbbc021_{split}",
        split=split,
        columns=Columns(treatment="Metadata_Compound", batch=batch),
        exclude_labels=exclude,
        normalize="none",
        models=("xgboost", "knn", "ensemble"),
        save_models=False,
        command=f"python -m moa_features.train {table} -o {out / f'bbbc021_{split}'} --split {split} "
        f"--treatment Metadata_Compound{' --batch Metadata_Batch' if batch else ''} "
        "--exclude-label "
        + " ".join(f"'{e}'" for e in exclude)
        + " --normalize none --models xgboost,knn,ensemble --no-report --no-save-models",
    )
    wall = time.perf_counter() - t0
    keep = ("treatment_accuracy", "accuracy", "macro_recall", "macro_recall_std", "macro_f1")
    return {
        "split": split,
        "wall_s": round(wall, 1),
        "n_treatments": metrics["models"]["xgboost"]["n_treatments"],
        "models": {name: {k: round(m[k], 4) for k in keep if k in m} for name, m in metrics["models"].items()},
    }


def raw_well_table() -> pd.DataFrame:
    """Ljosa et al.'s raw per-well means with ``Metadata_Plate/Well/Compound/Concentration/moa``.

    The per-well table keys wells by ``Image_Metadata_Plate/Well``; each well's compound and
    concentration come from the image table (one row per site, constant within a well), its
    MoA from the MoA table (DMSO has the MoA ``DMSO``). 632 wells, 516 features.
    """
    wells = pd.read_csv(RAW_WELLS).rename(
        columns={"Image_Metadata_Plate": "Metadata_Plate", "Image_Metadata_Well": "Metadata_Well"}
    )
    images = pd.read_csv(IMAGES).rename(
        columns={
            "Image_Metadata_Plate_DAPI": "Metadata_Plate",
            "Image_Metadata_Well_DAPI": "Metadata_Well",
            "Image_Metadata_Compound": TREATMENT,
            "Image_Metadata_Concentration": "Metadata_Concentration",
        }
    )
    keys = ["Metadata_Plate", "Metadata_Well"]
    meta = images.groupby(keys)[[TREATMENT, "Metadata_Concentration"]].first().reset_index()
    moa = pd.read_csv(MOAS).rename(
        columns={"compound": TREATMENT, "concentration": "Metadata_Concentration", "moa": "Metadata_moa"}
    )
    meta = meta.merge(moa, on=[TREATMENT, "Metadata_Concentration"], how="left")
    return meta.merge(wells, on=keys, how="inner", validate="one_to_one")


def consensus_knn_accuracy(table: pd.DataFrame, features: list[str]) -> float:
    """NSC treatment accuracy of 1-NN cosine on treatment consensus profiles (DMSO left out).

    Consensus = median over a treatment's wells (:func:`moa_features.profiling.consensus_profiles`);
    each treatment's nearest neighbour among the treatments of *other* compounds gives its MoA.
    """
    treated = table[table["Metadata_moa"].notna() & (table["Metadata_moa"] != "DMSO")]
    cons = profiling.consensus_profiles(treated, [TREATMENT, "Metadata_Concentration", "Metadata_moa"], features)
    X = np.nan_to_num(cons[features].to_numpy(dtype=np.float64))
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    sim = X @ X.T
    compound = cons[TREATMENT].to_numpy()
    sim[compound[:, None] == compound[None, :]] = -np.inf
    moa = cons["Metadata_moa"].to_numpy()
    return float(np.mean(moa[sim.argmax(axis=1)] == moa))


def consensus_logistic_accuracy(table: pd.DataFrame, features: list[str]) -> float:
    """NSC treatment accuracy of a logistic regression on wells (leave one compound out).

    Standardised features, ``C=0.1``; a treatment's prediction is the argmax of its wells'
    mean probabilities. DMSO wells are left out.
    """
    treated = table[table["Metadata_moa"].notna() & (table["Metadata_moa"] != "DMSO")].reset_index(drop=True)
    X = np.nan_to_num(treated[features].to_numpy(dtype=np.float64))
    y, compound = treated["Metadata_moa"].to_numpy(), treated[TREATMENT].to_numpy()
    key = (treated[TREATMENT].astype(str) + "@" + treated["Metadata_Concentration"].astype(str)).to_numpy()
    hits = []
    for tr, te in LeaveOneGroupOut().split(X, y, compound):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)).fit(X[tr], y[tr])
        proba = model.predict_proba(X[te])
        for k in np.unique(key[te]):
            rows = key[te] == k
            hits.append(model.classes_[proba[rows].mean(axis=0).argmax()] == y[te][rows][0])
    return float(np.mean(hits))


def preprocessing_benchmark() -> dict:
    """Consensus 1-NN NSC accuracy of the raw table under each normalisation x feature selection.

    For the default and the sphered route, also the logistic-regression check
    (:func:`consensus_logistic_accuracy`) on the selected features.
    """
    raw = raw_well_table()
    features = [c for c in raw.columns if not c.startswith("Metadata_")]
    control = (raw[TREATMENT] == "DMSO").to_numpy()
    values, plates = raw[features].to_numpy(dtype=np.float64), raw["Metadata_Plate"].to_numpy()
    center, spread = profiling.plate_statistics(values, plates, control, shrinkage=1e12)
    variants = {
        "none": raw,
        "controls (plate's own spread)": profiling.normalize(raw, "controls", control=control, features=features),
        "pooled (default: plate's control spread shrunk toward the pooled one)": profiling.normalize(
            raw, "pooled", control=control, features=features
        ),
        "controls centre, pooled spread only": raw.assign(**dict(zip(features, ((values - center) / spread).T))),
        "plate (all wells)": profiling.normalize(raw, "plate", control=control, features=features),
    }
    default = variants["pooled (default: plate's control spread shrunk toward the pooled one)"]
    default_kept = list(make_preprocessor().fit(default[features]).named_steps["select"].get_feature_names_out())
    variants["default + TVN sphering on DMSO (eps 0.1)"] = profiling.sphere(
        default[default_kept + ["Metadata_moa", TREATMENT, "Metadata_Concentration"]], control, default_kept
    )
    logistic = (
        "pooled (default: plate's control spread shrunk toward the pooled one)",
        "default + TVN sphering on DMSO (eps 0.1)",
    )
    out = {}
    processed = pd.read_csv(PROFILES)
    processed_features = [c for c in processed.columns if not c.startswith("Metadata_")]
    out["reference: pycytominer file, --normalize none"] = {
        "all_features": round(consensus_knn_accuracy(processed, processed_features), 4),
        "n_selected": len(processed_features),
        "logistic_selected": round(consensus_logistic_accuracy(processed, processed_features), 4),
    }
    for name, table in variants.items():
        if name.startswith("default + TVN"):
            out[name] = {
                "selected_features": round(consensus_knn_accuracy(table, default_kept), 4),
                "n_selected": len(default_kept),
                "logistic_selected": round(consensus_logistic_accuracy(table, default_kept), 4),
            }
            continue
        t0 = time.process_time()
        kept = list(make_preprocessor().fit(table[features]).named_steps["select"].get_feature_names_out())
        out[name] = {
            "all_features": round(consensus_knn_accuracy(table, features), 4),
            "selected_features": round(consensus_knn_accuracy(table, kept), 4),
            "n_selected": len(kept),
            "selection_cpu_s": round(time.process_time() - t0, 2),
        }
        if name in logistic:
            out[name]["logistic_selected"] = round(consensus_logistic_accuracy(table, kept), 4)
    return {"n_wells": len(raw), "n_features": len(features), "knn_consensus_nsc": out}


def default_route_benchmark(out: Path, part: str) -> dict:
    """``train --split nsc --treatment Metadata_Compound --exclude-label DMSO`` with default preprocessing.

    part ``raw``: on :func:`raw_well_table`; ``processed-defaults``: on the pycytominer file.
    The normalisation is :data:`moa_features.profiling.DEFAULT_NORMALIZATION` (``auto``), the
    default ``train --normalize`` takes once train adopts it.
    Records any warning the normalisation step gives (e.g. an already-normalised table).
    """
    if part == "raw":
        table = out / "bbbc021_raw_wells.csv"
        raw_well_table().to_csv(table, index=False)
    else:
        table = PROFILES
    run = out / f"bbbc021_{part}"
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", profiling.AlreadyNormalizedWarning)
        metrics = run_training(
            table,
            run,
            split="nsc",
            columns=Columns(treatment=TREATMENT),
            exclude_labels=["DMSO"],
            normalize=profiling.DEFAULT_NORMALIZATION,
            models=("xgboost", "knn", "ensemble"),
            save_models=False,
            command=f"python -m moa_features.train {table} -o {run} --split nsc --treatment {TREATMENT} "
            "--exclude-label DMSO --models xgboost,knn,ensemble --no-report --no-save-models",
        )
    keep = ("treatment_accuracy", "accuracy", "macro_recall")
    return {
        "table": table.name,
        "wall_s": round(time.perf_counter() - t0, 1),
        "normalize": metrics.get("config", {}).get("normalize"),
        "warnings": sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)}),
        "models": {name: {k: round(m[k], 4) for k in keep if k in m} for name, m in metrics["models"].items()},
    }


def crop_features() -> pd.DataFrame:
    """One row per crop: metadata and this package's features of the (C, H, W) crop.

    The texture quantisation is the run scheme, learned (as ``extract``'s first pass does) from
    the negative-control (DMSO) crops' pooled histograms; border objects are kept, since a
    single-cell crop's cell touches its border by construction.
    """
    index = pd.read_csv(CROPS / "index.csv")
    crops = [np.moveaxis(np.load(CROPS / rec.path), -1, 0) for rec in index.itertuples()]  # (3, H, W) uint16
    controls = [c for c, moa in zip(crops, index["moa"]) if moa == "DMSO"]
    hist = sum(np.stack([np.bincount(p.ravel(), minlength=65536) for p in c]) for c in controls)
    luts = [run_lut(h, 32) for h in hist]
    params = FeatureParams(exclude_border=False)
    rows = []
    for rec, crop in zip(index.itertuples(), crops):
        feats = measure(crop, CROP_CHANNELS, params, texture_luts=luts)
        well = f"{rec.Image_Metadata_Plate_DAPI}_{rec.Image_Metadata_Well_DAPI}"
        rows.append({"moa": rec.moa, "well": well, **feats})
    return pd.DataFrame(rows)


def crops_benchmark() -> dict:
    """Leave-one-well-out ROC AUC of cycloheximide (Protein synthesis) vs DMSO crops."""
    t0 = time.perf_counter()
    df = crop_features()
    seconds = time.perf_counter() - t0
    feats = [c for c in df.columns if c not in ("moa", "well")]
    y = (df["moa"] == "Protein synthesis").to_numpy().astype(int)
    X = df[feats].to_numpy(dtype=np.float64)
    scores = {"logistic": np.zeros(len(y)), "xgboost": np.zeros(len(y))}
    for tr, te in LeaveOneGroupOut().split(X, y, df["well"]):
        pre = make_preprocessor().fit(X[tr])
        Xtr, Xte = pre.transform(X[tr]), pre.transform(X[te])
        lr = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(Xtr, y[tr])
        scores["logistic"][te] = lr.predict_proba(Xte)[:, 1]
        xgb = XGBoostClassifier(early_stopping_rounds=None, n_estimators=200).fit(Xtr, y[tr].astype(str))
        scores["xgboost"][te] = xgb.predict_proba(Xte)[:, list(xgb.classes_).index("1")]
    return {
        "n_crops": len(y),
        "n_wells": int(df["well"].nunique()),
        "n_features": len(feats),
        "feature_seconds": round(seconds, 1),
        "auc": {k: round(float(roc_auc_score(y, s)), 4) for k, s in scores.items()},
    }


def batch_table(out: Path, which: str) -> Path:
    """The raw well means (``raw``) or the pycytominer file (``processed``) with ``Metadata_Batch`` (the week)."""
    df = raw_well_table() if which == "raw" else pd.read_csv(PROFILES)
    df["Metadata_Batch"] = df["Metadata_Plate"].astype(str).str.split("_").str[0]
    path = out / f"bbbc021_{which}_wells_batch.csv"
    df.to_csv(path, index=False)
    return path


SEED_KEYS = ("treatment_accuracy", "treatment_macro_recall", "treatment_accuracy_p", "treatment_macro_recall_p")


def seeds_benchmark(out: Path, seeds: list[int], runs: list[str], models: tuple[str, ...] = DEFAULT_MODELS) -> dict:
    """``train`` with defaults under NSC and NSCB on both BBBC021 tables, per seed; mean ± sd over seeds.

    ``runs``: ``TABLE-SPLIT`` items (``raw-nsc``, ``raw-nscb``, ``processed-nsc``, ``processed-nscb``).
    Each run is ``train TABLE --split SPLIT --treatment Metadata_Compound --exclude-label DMSO
    [--batch Metadata_Batch] --models MODELS --seed S`` with every other option at its default (``models``:
    ``train``'s default models, the ensemble and its members)
    (leave one compound out; the per-fold recipe; for NSCB, classes left without a training compound are
    unscored). Results are written to ``OUT/bbbc021_seeds.json`` after every run.
    """
    tables = {which: batch_table(out, which) for which in {r.split("-")[0] for r in runs}}
    results: dict = {"runs": {}, "summary": {}}
    for seed in seeds:
        for item in runs:
            which, split = item.split("-")
            run = out / f"bbbc021_{item}_seed{seed}"
            t0 = time.perf_counter()
            metrics = run_training(
                tables[which],
                run,
                split=split,
                columns=Columns(treatment=TREATMENT, batch="Metadata_Batch" if split == "nscb" else None),
                exclude_labels=["DMSO"],
                models=models,
                seed=seed,
                save_models=False,
                overwrite=True,
                command=f"python -m moa_features.train {tables[which]} -o {run} --split {split} --treatment {TREATMENT}"
                + (" --batch Metadata_Batch" if split == "nscb" else "")
                + f" --exclude-label DMSO --models {','.join(models)} --seed {seed} --no-report --no-save-models"
                + " --overwrite",
            )
            chance = metrics["models"]["xgboost"]["treatment_expected_chance"]
            results["runs"][f"{item}/seed{seed}"] = {
                "wall_s": round(time.perf_counter() - t0, 1),
                "n_treatments": metrics["models"]["xgboost"]["n_treatments"],
                "scored_classes": len(metrics["scored_classes"]),
                "unscored_classes": metrics["unscored_classes"],
                "epsilon_per_fold": metrics["preprocessing"]["epsilon_per_fold"],
                "chance": {k: round(v, 4) for k, v in chance.items() if k in ("accuracy", "macro_recall")},
                "models": {
                    name: {k: round(m[k], 4) for k in SEED_KEYS}
                    for name, m in metrics["models"].items()
                    if name != "majority"
                },
            }
            results["summary"] = summarize_seeds(results["runs"])
            (out / "bbbc021_seeds.json").write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps({item: results["runs"][f"{item}/seed{seed}"]["models"]}), flush=True)
    return results


def summarize_seeds(runs: dict) -> dict:
    """Per ``TABLE-SPLIT`` and model: mean and sd (ddof 1) over seeds of the treatment figures, and the seeds."""
    out: dict = {}
    for key, run in runs.items():
        item = key.split("/")[0]
        for model, figures in run["models"].items():
            slot = out.setdefault(item, {}).setdefault(model, {"seeds": 0})
            slot["seeds"] += 1
            for k, v in figures.items():
                slot.setdefault(k, []).append(v)
    for models in out.values():
        for slot in models.values():
            for k in SEED_KEYS:
                vals = np.asarray(slot[k])
                slot[k] = {
                    "mean": round(float(vals.mean()), 4),
                    "sd": round(float(vals.std(ddof=1)), 4) if len(vals) > 1 else None,
                }
    return out


PARTS = ("crops", "nsc", "nscb", "raw", "processed-defaults", "prep", "seeds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="models/bench_bbbc021", help="output folder (default %(default)s)")
    p.add_argument(
        "--parts",
        default="crops,nsc,nscb",
        help=f"comma-separated benchmarks to run (default %(default)s; choose from {','.join(PARTS)})",
    )
    p.add_argument("--seeds", default="0,1,2", help="seeds of the 'seeds' part (default %(default)s)")
    p.add_argument(
        "--runs",
        default="raw-nsc,raw-nscb,processed-nsc,processed-nscb",
        help="TABLE-SPLIT runs of the 'seeds' part (default %(default)s)",
    )
    p.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="models of the 'seeds' part (default %(default)s: train's defaults)",
    )
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for part in parts:
        if part == "crops":
            results[part] = crops_benchmark()
        elif part == "prep":
            results[part] = preprocessing_benchmark()
        elif part == "seeds":
            seeds = [int(x) for x in args.seeds.split(",")]
            runs = [r.strip() for r in args.runs.split(",") if r.strip()]
            results[part] = seeds_benchmark(out, seeds, runs, tuple(args.models.split(",")))["summary"]
        elif part in ("raw", "processed-defaults"):
            results[part] = default_route_benchmark(out, part)
        else:
            results[part] = profiles_benchmark(out, part)
        print(json.dumps(results[part], indent=2), flush=True)
    (out / "bbbc021_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
