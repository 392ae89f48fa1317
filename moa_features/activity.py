"""Phenotypic activity and MoA consistency by mean average precision (copairs; Kalinin et al. 2025).

- :func:`phenotypic_activity`: per treatment, do its replicate wells retrieve each other ahead of
  the negative-control wells? Each replicate well is a query ranking the treatment's other
  wells (positives) against every control well (negatives) by cosine similarity; the
  treatment's mAP is the mean of its wells' average precisions. Its p-value comes from
  copairs' permutation null of AP at the same numbers of positives and negatives, and the
  p-values of all treatments are corrected by Benjamini-Hochberg; ``active`` is
  ``corrected_p_value < alpha``.
- :func:`moa_consistency`: per MoA, do the consensus profiles of its treatments (well medians,
  then the treatment's median, :func:`moa_features.profiling.consensus_profiles`) retrieve each
  other ahead of the other MoAs' treatments?

A treatment is a (treatment name, concentration) pair when the table has
:data:`moa_features.schema.CONCENTRATION`, named ``NAME@CONCENTRATION`` as in ``train``.
Per-site tables are reduced to wells (median over sites) first. The profiles should be
normalised; the command (``moa-features activity TABLE -o OUT.csv``) normalises with
:func:`moa_features.profiling.normalize_table` and selects features without labels first.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moa_features import profiling, schema

ACTIVITY_COLUMNS = ["treatment", "n_replicates", "mean_average_precision", "p_value", "corrected_p_value", "active"]
CONSISTENCY_COLUMNS = ["moa", "n_treatments", "mean_average_precision", "p_value", "corrected_p_value"]
NULL_SIZE = 10_000  # permutation-null size per (positives, negatives) configuration; p-value floor 1e-4
_KEY = "Metadata__activity_key"
_REF = "Metadata__activity_reference"


def _copairs():
    """copairs' ``average_precision`` and ``mean_average_precision``, or a clear error."""
    try:
        from copairs.map import average_precision, mean_average_precision
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("phenotypic activity needs copairs: pip install 'copairs>=0.5'") from err
    return average_precision, mean_average_precision


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(
            f"{what} needs column(s) {missing}, which the table lacks; "
            f"its metadata columns are {schema.metadata_columns(table.columns)}"
        )


def treatment_keys(table: pd.DataFrame, treatment: str) -> pd.Series:
    """Per-row treatment key: ``NAME@CONCENTRATION`` when the table has a concentration, else ``NAME``."""
    key = table[treatment].astype(str)
    if schema.CONCENTRATION in table.columns and treatment != schema.CONCENTRATION:
        key = key + "@" + table[schema.CONCENTRATION].astype(str)
    return key


def _features(table: pd.DataFrame, features: Sequence[str] | None) -> list[str]:
    features = list(features) if features is not None else schema.feature_columns(table.columns)
    if not features:
        raise ValueError("no feature columns (every column starts with 'Metadata_')")
    _require(table, features, "activity")
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise TypeError(f"non-numeric feature column(s) {bad[:5]}; metadata columns must start with 'Metadata_'")
    return features


def _matrix(table: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Feature matrix with NaN/inf replaced by the column median (0 where all are missing)."""
    values = np.array(table[features].to_numpy(dtype=np.float64))
    values[~np.isfinite(values)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nan_to_num(np.nanmedian(values, axis=0))
    return np.where(np.isnan(values), median, values)


def _map_table(ap: pd.DataFrame, by: str, null_size: int, seed: int, alpha: float) -> pd.DataFrame:
    """copairs' mAP, p-value and BH-corrected p-value per ``by`` group of the AP table."""
    _, mean_average_precision = _copairs()
    scores = mean_average_precision(ap, [by], null_size=null_size, threshold=alpha, seed=seed, progress_bar=False)
    return scores[[by, "mean_average_precision", "p_value", "corrected_p_value"]]


def phenotypic_activity(
    table: pd.DataFrame,
    *,
    treatment: str = schema.TREATMENT,
    plate: str = schema.PLATE,
    features: Sequence[str] | None = None,
    null_size: int = NULL_SIZE,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Phenotypic activity of every treatment against the negative controls (module docstring).

    table: normalised profiles, one row per well or per site (``plate`` and
    :data:`~moa_features.schema.WELL` columns, when present, define wells); controls are
    :func:`moa_features.profiling.is_control`. Returns one row per non-control treatment with
    :data:`ACTIVITY_COLUMNS`, sorted by treatment; a treatment with a single well has no
    replicate to retrieve, so its mAP and p-values are NaN and it is not active.
    """
    _require(table, [treatment], "phenotypic activity")
    features = _features(table, features)
    wells = profiling.well_profiles(table, (plate, schema.WELL), features)
    control = profiling.is_control(wells, treatment_col=treatment).to_numpy()
    if not control.any():
        raise ValueError(
            f"phenotypic activity needs negative-control wells (treatment one of "
            f"{schema.NEGATIVE_CONTROL_TREATMENTS} in {treatment!r}, or MoA "
            f"{schema.NEGATIVE_CONTROL_MOA!r}); none found"
        )
    if control.all():
        raise ValueError("phenotypic activity needs treated wells; every well is a negative control")
    meta = pd.DataFrame({_KEY: treatment_keys(wells, treatment).to_numpy()})
    meta.loc[control, _KEY] = "negative control"
    # Each control well its own reference index: controls are never positives of each other, and
    # treated wells (index -1) are negatives only of controls, not of other treatments.
    meta[_REF] = np.where(control, np.arange(len(meta)), -1)
    counts = meta.loc[~control, _KEY].value_counts()
    result = pd.DataFrame({"treatment": counts.index.astype(str), "n_replicates": counts.to_numpy()})
    if (counts > 1).any():
        average_precision, _ = _copairs()
        ap = average_precision(
            meta,
            _matrix(wells, features),
            pos_sameby=[_KEY, _REF],
            pos_diffby=[],
            neg_sameby=[],
            neg_diffby=[_KEY, _REF],
            progress_bar=False,
        )
        scores = _map_table(ap[ap[_REF] == -1], _KEY, null_size, seed, alpha)
        result = result.merge(scores.rename(columns={_KEY: "treatment"}), on="treatment", how="left")
    else:
        result[["mean_average_precision", "p_value", "corrected_p_value"]] = np.nan
    result["active"] = (result["corrected_p_value"] < alpha).fillna(False).astype(bool)
    return result[ACTIVITY_COLUMNS].sort_values("treatment").reset_index(drop=True)


def moa_consistency(
    table: pd.DataFrame,
    *,
    treatment: str = schema.TREATMENT,
    label: str = schema.MOA,
    plate: str = schema.PLATE,
    features: Sequence[str] | None = None,
    treatments: Sequence[str] | None = None,
    null_size: int = NULL_SIZE,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per MoA: mAP of its treatments' consensus profiles retrieving each other (module docstring).

    Controls and rows without a ``label`` are left out; ``treatments`` (keys as in
    :func:`treatment_keys`, e.g. the active ones) restricts the treatments used. Returns one
    row per MoA with :data:`CONSISTENCY_COLUMNS`, sorted by mAP; an MoA with one treatment has
    no positive to retrieve (NaN mAP and p-values).
    """
    _require(table, [treatment, label], "MoA consistency")
    features = _features(table, features)
    keep = table[label].notna() & ~profiling.is_control(table, moa_col=label, treatment_col=treatment)
    rows = pd.concat([table.loc[keep], treatment_keys(table.loc[keep], treatment).rename(_KEY)], axis=1)
    if treatments is not None:
        rows = rows[rows[_KEY].isin([str(t) for t in treatments])]
    cons = profiling.consensus_profiles(rows, [_KEY], features, well_keys=(plate, schema.WELL))
    moa = rows.groupby(_KEY)[label].agg(lambda s: s.mode().iloc[0]).astype(str)
    meta = pd.DataFrame({"moa": moa.loc[cons[_KEY]].to_numpy()})
    counts = meta["moa"].value_counts()
    result = pd.DataFrame({"moa": counts.index.astype(str), "n_treatments": counts.to_numpy()})
    if (counts > 1).any() and len(counts) > 1:
        average_precision, _ = _copairs()
        ap = average_precision(
            meta,
            _matrix(cons, features),
            pos_sameby=["moa"],
            pos_diffby=[],
            neg_sameby=[],
            neg_diffby=["moa"],
            progress_bar=False,
        )
        result = result.merge(_map_table(ap, "moa", null_size, seed, alpha), on="moa", how="left")
    else:
        result[["mean_average_precision", "p_value", "corrected_p_value"]] = np.nan
    return result[CONSISTENCY_COLUMNS].sort_values("mean_average_precision").reset_index(drop=True)


def prepare_profiles(
    table: pd.DataFrame, *, normalize: str, plate: str, label: str, treatment: str, select: bool = True
) -> tuple[pd.DataFrame, list[str], str]:
    """Normalise (:func:`moa_features.profiling.normalize_table`) and select features without labels.

    Returns the normalised table, the kept feature names and the normalisation applied.
    """
    from moa_features.models.preprocessing import FeatureSelector

    features = _features(table, None)
    control = profiling.is_control(table, moa_col=label, treatment_col=treatment).to_numpy()
    done = profiling.normalize_table(table, normalize, plate=plate, control=control, features=features)
    if select:
        features = list(FeatureSelector().fit(done.table[features]).get_feature_names_out())
    return done.table, features, done.method


def consistency_path(out: Path) -> Path:
    """``OUT-consistency.csv`` beside ``OUT.csv``."""
    return out.with_name(f"{out.name.removesuffix('.csv')}-consistency.csv")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features activity",
        description="Phenotypic activity (mAP of replicate wells against negative controls) per treatment, "
        "and MoA consistency (mAP of treatment consensus profiles) per MoA, with copairs.",
    )
    p.add_argument("table", help="feature table (.parquet, .csv or .csv.gz) following the Metadata_ convention")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="activity table OUT.csv; the consistency table is written to OUT-consistency.csv beside it",
    )
    p.add_argument(
        "--treatment",
        default=schema.TREATMENT,
        help="treatment column (default %(default)s); with "
        f"{schema.CONCENTRATION}, a treatment is a name x concentration",
    )
    p.add_argument(
        "--label",
        default=schema.MOA,
        help="MoA column for consistency (default %(default)s; skipped with a note when absent)",
    )
    p.add_argument("--plate", default=schema.PLATE, help="plate column (default %(default)s)")
    p.add_argument(
        "--normalize",
        choices=profiling.NORMALIZATIONS,
        default=profiling.DEFAULT_NORMALIZATION,
        help="per-plate normalisation before scoring (default %(default)s: against controls, or none "
        "when the table is already normalised)",
    )
    p.add_argument(
        "--no-select",
        action="store_true",
        help="keep every feature (default: pycytominer-style selection without labels)",
    )
    p.add_argument("--active-only", action="store_true", help="MoA consistency over active treatments only")
    p.add_argument("--null-size", type=int, default=NULL_SIZE, help="permutation null size (default %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05, help="FDR level for 'active' (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutation null (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    try:
        from moa_features.io import read_table

        table = read_table(args.table)
        _require(table, [args.treatment], f"{args.table}: phenotypic activity")
        if args.normalize != "none":
            _require(table, [args.plate], f"{args.table}: --normalize {args.normalize}")
        table, features, method = prepare_profiles(
            table,
            normalize=args.normalize,
            plate=args.plate,
            label=args.label,
            treatment=args.treatment,
            select=not args.no_select,
        )
        print(f"[activity] normalisation: {method}; {len(features)} features", file=sys.stderr)
        act = phenotypic_activity(
            table,
            treatment=args.treatment,
            plate=args.plate,
            features=features,
            null_size=args.null_size,
            seed=args.seed,
            alpha=args.alpha,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        act.to_csv(out, index=False)
        print(
            f"[activity] {int(act['active'].sum())} of {len(act)} treatments active at q < {args.alpha}; wrote {out}",
            file=sys.stderr,
        )
        if args.label not in table.columns:
            print(f"[activity] no {args.label!r} column: MoA consistency skipped", file=sys.stderr)
            return 0
        chosen = act.loc[act["active"], "treatment"].tolist() if args.active_only else None
        cons = moa_consistency(
            table,
            treatment=args.treatment,
            label=args.label,
            plate=args.plate,
            features=features,
            treatments=chosen,
            null_size=args.null_size,
            seed=args.seed,
            alpha=args.alpha,
        )
        cons.to_csv(consistency_path(out), index=False)
        print(f"[activity] MoA consistency of {len(cons)} MoAs: wrote {consistency_path(out)}", file=sys.stderr)
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"moa-features activity: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
