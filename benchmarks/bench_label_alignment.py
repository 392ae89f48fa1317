"""What the original notebook's label misalignment does, reproduced on a feature table.

The notebook that started this project stacked each plate's images in the plate's natural row
order (``B..Z`` then ``AA..AF`` on RxRx2's 1536-well plates) but sorted the metadata by plate and
well *as strings*, where ``"AA04" < "B02"``. Image ``k`` then carried the label of metadata row
``k`` of another well. A model trained on such labels learns nothing about MoA, however good it
is, and its held-out accuracy sits at chance while its training accuracy can be near 1.

This script applies exactly that pairing to a feature table (one row per site, with
``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, a treatment and a label column), then
normalises features per plate as ``train`` does (``--normalize auto``), trains the same model
twice -- on aligned and on misaligned labels -- and scores both on held-out treatments
(grouped K-fold over treatments) against the TRUE labels. It prints the fraction of sites whose
label the misalignment changed, both scores, and chance.

Usage::

    python benchmarks/bench_label_alignment.py features/demo.parquet \
        [--label Metadata_moa] [--treatment Metadata_Treatment] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from moa_features import profiling
from moa_features.columns import control_mask

WELL = re.compile(r"^([A-Za-z]+)(\d+)$")


def natural_well_key(well: str) -> tuple[int, int, int]:
    """Plate order of a well name: rows ``A..Z`` then ``AA..AF`` (shorter names first), then column."""
    m = WELL.match(str(well))
    if m is None:
        raise ValueError(f"well name {well!r} is not <row letters><column number>")
    row, col = m.group(1).upper(), int(m.group(2))
    return len(row), sum((ord(c) - 64) * 26**i for i, c in enumerate(reversed(row))), col


def misaligned_labels(meta: pd.DataFrame, label: str, plate: str, well: str, site: str) -> pd.Series:
    """The label each site receives under the original pairing (images natural order, metadata string order).

    ``meta`` has one row per site. Returns a Series aligned with ``meta.index``.
    """
    out = pd.Series(index=meta.index, dtype=object)
    for _, g in meta.groupby(plate, sort=False):
        image_order = sorted(g.index, key=lambda i: (natural_well_key(g.at[i, well]), g.at[i, site]))
        label_order = sorted(g.index, key=lambda i: (str(g.at[i, well]), g.at[i, site]))
        out.loc[image_order] = g.loc[label_order, label].to_numpy()
    return out


def held_out_treatment_score(
    X: np.ndarray, y_train: np.ndarray, y_true: np.ndarray, treatments: np.ndarray, folds: int, seed: int
) -> float:
    """Balanced accuracy on held-out treatments: fit on ``y_train``, score against ``y_true``."""
    pred = np.empty(len(y_true), dtype=object)
    for train, test in GroupKFold(n_splits=folds).split(X, y_true, treatments):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1, random_state=seed))
        model.fit(X[train], y_train[train])
        pred[test] = model.predict(X[test])
    return float(balanced_accuracy_score(y_true, pred.astype(str)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", help="feature table (.parquet or .csv), one row per site")
    p.add_argument("--label", default="Metadata_moa")
    p.add_argument("--treatment", default="Metadata_Treatment")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="write the figures as JSON here")
    a = p.parse_args(argv)
    path = Path(a.table)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    keys = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", a.label, a.treatment]
    missing = [c for c in keys if c not in df.columns]
    if missing:
        print(f"error: {path} lacks column(s) {missing}", file=sys.stderr)
        return 2
    df = df.reset_index(drop=True)
    features = [c for c in df.columns if not c.startswith("Metadata_")]
    control = control_mask(df, treatment=a.treatment, label=a.label)
    df = profiling.normalize_table(df, control=control, features=features).table
    X = df[features].to_numpy(float)
    X = np.where(np.isfinite(X), X, np.nanmedian(X, axis=0))
    y_true = df[a.label].astype(str).to_numpy()
    y_bad = misaligned_labels(df, a.label, "Metadata_Plate", "Metadata_Well", "Metadata_Site").astype(str).to_numpy()
    treatments = df[a.treatment].astype(str).to_numpy()
    aligned = held_out_treatment_score(X, y_true, y_true, treatments, a.folds, a.seed)
    shifted = held_out_treatment_score(X, y_bad, y_true, treatments, a.folds, a.seed)
    result = {
        "sites": len(df),
        "classes": int(pd.Series(y_true).nunique()),
        "fraction_of_sites_relabelled": float(np.mean(y_bad != y_true)),
        "balanced_accuracy_aligned": aligned,
        "balanced_accuracy_misaligned": shifted,
        "chance": 1.0 / pd.Series(y_true).nunique(),
        "split": f"GroupKFold({a.folds}) over {a.treatment} (held-out treatments)",
    }
    print(json.dumps(result, indent=2))
    if a.output:
        Path(a.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
