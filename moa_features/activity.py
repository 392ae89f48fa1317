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
from moa_features.columns import CONTROL_RULE, Columns, control_mask, metadata_parent
from moa_features.io import check_writable_file, refuse_overwriting_inputs, write_table

ACTIVITY_COLUMNS = ["treatment", "n_replicates", "mean_average_precision", "p_value", "corrected_p_value", "active"]
CONSISTENCY_COLUMNS = ["moa", "n_treatments", "mean_average_precision", "p_value", "corrected_p_value"]
NULL_SIZE = 10_000  # permutation-null size per (positives, negatives) configuration; p-value floor 1e-4
_KEY = "Metadata__activity_key"
_REF = "Metadata__activity_reference"
_GROUP = "Metadata__activity_group"
_CONTROL = "Metadata__activity_control"


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
    batch: str | None = None,
    control: np.ndarray | pd.Series | None = None,
    features: Sequence[str] | None = None,
    null_size: int = NULL_SIZE,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Phenotypic activity of every treatment against the negative controls (module docstring).

    Parameters
    ----------
    table : DataFrame
        Normalised profiles, one row per well or per site (``plate`` and
        :data:`~moa_features.schema.WELL` columns, when present, define wells).
    treatment, plate : str
        Treatment and plate columns.
    batch : str or None
        Batch column: each replicate well is ranked against the control wells of its own batch;
        ``None`` (default): against the control wells of its own plate. Either way a treatment's
        replicates cannot look "active" merely by sharing a plate or batch effect that the
        controls they are ranked against do not share.
    control : (n,) bool array or None
        Negative-control rows of ``table``; ``None``: :func:`moa_features.columns.control_mask`.
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).
    null_size : int, default NULL_SIZE
        Size of the permutation null per (positives, negatives) configuration.
    seed : int, default 0
        Seed of the null.
    alpha : float, default 0.05
        A treatment is active when its corrected p-value (q) is below ``alpha``.

    Returns
    -------
    DataFrame
        One row per non-control treatment with :data:`ACTIVITY_COLUMNS`, sorted by treatment. A
        treatment with a single well, or whose wells sit on plates (batches) without controls,
        has nothing to be ranked against: NaN mAP and p-values, not active.
    """
    _require(table, [treatment], "phenotypic activity")
    where = plate if batch is None else batch
    features = _features(table, features)
    mask = control_mask(table, treatment=treatment) if control is None else np.asarray(control, dtype=bool)
    if len(mask) != len(table):
        raise ValueError(f"control mask has {len(mask)} entries for {len(table)} rows")
    if batch is not None:
        _require(table, [batch], "phenotypic activity (--batch)")
    extra = {_CONTROL: mask} if where in table.columns else {_CONTROL: mask, where: "all"}  # no plate: one group
    rows = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)
    wells = profiling.well_profiles(rows, (plate, schema.WELL), features)
    if _CONTROL not in wells.columns:
        raise ValueError(
            "a well holds both negative-control and treated rows; the control rule must select whole wells"
        )
    control = wells[_CONTROL].to_numpy(dtype=bool)
    if not control.any():
        raise ValueError(
            "phenotypic activity needs negative-control wells; none found (name them with --control, "
            f"e.g. --control '{treatment} == \"DMSO\"'; default rule: {CONTROL_RULE})"
        )
    if control.all():
        raise ValueError("phenotypic activity needs treated wells; every well is a negative control")
    group = wells[where].astype(str).to_numpy()
    covered = np.isin(group, group[control])
    meta = pd.DataFrame({_KEY: treatment_keys(wells, treatment).to_numpy(), _GROUP: group})
    meta.loc[control, _KEY] = "negative control"
    # Each control well its own reference index: controls are never positives of each other, and
    # treated wells (index -1) are negatives only of controls of their own plate (batch).
    meta[_REF] = np.where(control, np.arange(len(meta)), -1)
    counts = meta.loc[~control, _KEY].value_counts()
    result = pd.DataFrame({"treatment": counts.index.astype(str), "n_replicates": counts.to_numpy()})
    uncovered = sorted(set(group[~control & ~covered]))
    if uncovered:
        warnings.warn(
            f"{len(uncovered)} {'batch' if batch else 'plate'}(s) without negative-control wells "
            f"({', '.join(uncovered[:5])}{', ...' if len(uncovered) > 5 else ''}): their treated wells "
            "have no controls to be ranked against and are not scored",
            UserWarning,
            stacklevel=2,
        )
    scored = (counts > 1).any() and covered[~control].any()
    if scored:
        average_precision, _ = _copairs()
        ap = average_precision(
            meta,
            _matrix(wells, features),
            pos_sameby=[_KEY, _REF],
            pos_diffby=[],
            neg_sameby=[_GROUP],
            neg_diffby=[_KEY, _REF],
            progress_bar=False,
        )
        queries = ap[(ap[_REF] == -1) & (ap["n_total_pairs"] > ap["n_pos_pairs"])]
        scored = not queries.empty
    if scored:
        scores = _map_table(queries, _KEY, null_size, seed, alpha)
        result = result.merge(scores.rename(columns={_KEY: "treatment"}), on="treatment", how="left")
    else:
        result[["mean_average_precision", "p_value", "corrected_p_value"]] = np.nan
    result["active"] = (result["corrected_p_value"] < alpha).fillna(False).astype(bool)
    return result[ACTIVITY_COLUMNS].sort_values("treatment").reset_index(drop=True)


def pseudo_treatments(
    table: pd.DataFrame,
    batches: Sequence[str] | pd.Series,
    control: np.ndarray | pd.Series,
    *,
    treatment: str = schema.TREATMENT,
    plate: str = schema.PLATE,
    group: int = 3,
    per_plate: int = 3,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Negative-control wells regrouped as pseudo-treatments: the false-positive check of an activity call.

    Within each batch, plates (sorted) are taken ``group`` at a time; for each such group and each
    ``k < per_plate``, the ``k``-th control well (by well name) of every plate of the group becomes
    one replicate of the pseudo-treatment ``pseudo-<batch>-<g>-<k>``, so pseudo-treatments have
    replicates on several plates of one batch, as real treatments often do. The other control
    wells stay controls. A pseudo-treatment has no phenotype: a method that calls many of them
    active is measuring plate or batch similarity.

    Parameters
    ----------
    table : DataFrame
        One row per well, with ``treatment``, ``plate`` and :data:`~moa_features.schema.WELL`.
    batches : (n,) sequence
        Batch of each row (e.g. the imaging week).
    control : (n,) bool
        The control rows.
    treatment, plate : str
        Treatment and plate columns.
    group : int, default 3
        Plates per pseudo-treatment.
    per_plate : int, default 3
        Control wells of each plate taken (one per pseudo-treatment of the group).

    Returns
    -------
    (DataFrame, ndarray of bool)
        The table with the chosen wells' ``treatment`` set to their pseudo-treatment name, and the
        (n,) mask of those rows (remove them from the control mask: ``control & ~mask``).
    """
    out = table.copy()
    out[treatment] = out[treatment].astype(object)
    control = np.asarray(control, dtype=bool)
    batch = pd.Series(np.asarray(batches), index=table.index).astype(str)
    chosen = np.zeros(len(table), dtype=bool)
    for b in sorted(batch[control].unique()):
        plates = sorted(table.loc[control & (batch == b).to_numpy(), plate].astype(str).unique())
        for g in range(len(plates) // group):
            for k in range(per_plate):
                for p in plates[g * group : (g + 1) * group]:
                    wells = table[control & (table[plate].astype(str) == p).to_numpy()].sort_values(schema.WELL)
                    if k < len(wells):
                        out.loc[wells.index[k], treatment] = f"pseudo-{b}-{g}-{k}"
                        chosen[table.index.get_loc(wells.index[k])] = True
    return out, chosen


def moa_consistency(
    table: pd.DataFrame,
    *,
    treatment: str = schema.TREATMENT,
    label: str = schema.MOA,
    plate: str = schema.PLATE,
    control: np.ndarray | pd.Series | None = None,
    features: Sequence[str] | None = None,
    treatments: Sequence[str] | None = None,
    null_size: int = NULL_SIZE,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per MoA: mAP of its treatments' consensus profiles retrieving each other (module docstring).

    Controls and rows without a ``label`` are left out.

    Parameters
    ----------
    table : DataFrame
        Normalised profiles, one row per well or site.
    treatment, label, plate : str
        Treatment, MoA and plate columns.
    control : (n,) bool array or None
        Negative-control rows; ``None``: :func:`moa_features.columns.control_mask`.
    features : sequence of str, optional
        Feature columns (default: every non-metadata column).
    treatments : sequence of str, optional
        Restrict to these treatments (keys as in :func:`treatment_keys`, e.g. the active ones).
    null_size, seed : int, default NULL_SIZE and 0
        Size of the permutation null of the MoA mAPs, and its seed.
    alpha : float, default 0.05
        Significance level of the corrected p-values.

    Returns
    -------
    DataFrame
        One row per MoA with :data:`CONSISTENCY_COLUMNS`, sorted by mAP; an MoA with one
        treatment has no positive to retrieve (NaN mAP and p-values).
    """
    _require(table, [treatment, label], "MoA consistency")
    features = _features(table, features)
    if control is None:
        control = control_mask(table, treatment=treatment, label=label)
    keep = table[label].notna().to_numpy() & ~np.asarray(control, dtype=bool)
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


def activity_normalization(table: pd.DataFrame, control: np.ndarray, plate: str, features: list[str]) -> str:
    """What ``--normalize auto`` means for activity: profiles centred on each plate's controls.

    Activity asks whether a treatment differs from the negative controls of its plate, so the
    profiles should be centred there. A table already normalised against each plate's controls
    is used as given (``none``); a table normalised against something else (pycytominer's
    default: all wells of the plate, or the whole screen) is normalised again against the
    plate's controls (``pooled``) when every plate has controls; otherwise ``auto`` decides as
    in :func:`moa_features.profiling.resolve_normalization`.
    """
    reference = profiling.looks_normalized(table, control, plate_col=plate, features=features)
    if reference == "each plate's negative controls":
        return "none"
    if plate in table.columns and pd.Series(control).groupby(table[plate].to_numpy()).any().all():
        return "pooled"
    return "auto"


def prepare_profiles(
    table: pd.DataFrame, *, normalize: str, columns: Columns, select: bool = True
) -> tuple[pd.DataFrame, list[str], str, np.ndarray]:
    """Normalise per plate against the controls (:func:`activity_normalization` for ``auto``), select features.

    Feature selection uses no labels (:class:`moa_features.models.preprocessing.FeatureSelector`).
    Returns the normalised table, the kept feature names, the normalisation applied and the
    (n,) control mask (:meth:`Columns.controls <moa_features.columns.Columns.controls>`).
    """
    from moa_features.models.preprocessing import FeatureSelector

    features = _features(table, None)
    control = columns.controls(table)
    auto = normalize == "auto"
    if auto:
        normalize = activity_normalization(table, control, columns.plate, features)
    with warnings.catch_warnings():
        if auto:  # chosen above on purpose for a table normalised against another reference
            warnings.simplefilter("ignore", profiling.AlreadyNormalizedWarning)
        done = profiling.normalize_table(table, normalize, plate=columns.plate, control=control, features=features)
    if select:
        features = list(FeatureSelector().fit(done.table[features]).get_feature_names_out())
    return done.table, features, done.method, control


def consistency_path(out: Path) -> Path:
    """``OUT-consistency.csv`` beside ``OUT.csv``."""
    return out.with_name(f"{out.name.removesuffix('.csv')}-consistency.csv")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features activity",
        description="Phenotypic activity (mAP of replicate wells against the negative-control wells of their own "
        "plate, or batch with --batch) per treatment, and MoA consistency (mAP of treatment consensus profiles) "
        "per MoA, with copairs. With " + schema.CONCENTRATION + ", a treatment is a name x concentration.",
        parents=[metadata_parent()],
    )
    p.add_argument("table", help="feature table (.parquet, .csv or .csv.gz) following the Metadata_ convention")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="activity table OUT.csv; the consistency table is written to OUT-consistency.csv beside it",
    )
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


def table_activity(
    table: pd.DataFrame,
    columns: Columns,
    normalize: str = profiling.DEFAULT_NORMALIZATION,
    *,
    select: bool = True,
    null_size: int = NULL_SIZE,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], str, np.ndarray]:
    """What ``moa-features activity`` computes for a raw table: normalise, select, score activity.

    Parameters
    ----------
    table : DataFrame
        Raw feature table.
    columns : Columns
        Treatment, plate, batch columns and controls.
    normalize : str, default profiling.DEFAULT_NORMALIZATION
        One of :data:`moa_features.profiling.NORMALIZATIONS`.
    select : bool, default True
        Select features (:class:`moa_features.models.preprocessing.FeatureSelector`, no labels).
    null_size, seed, alpha
        As in :func:`phenotypic_activity`.

    Returns
    -------
    activity : DataFrame
        :func:`phenotypic_activity`: replicates ranked against the controls of their plate, or
        batch when ``columns.batch`` is set.
    normalized : DataFrame
        The normalised table.
    features : list of str
        The features used.
    method : str
        The normalisation applied.
    control : ndarray of bool, shape (n,)
        The control mask.

    Raises
    ------
    KeyError
        If a needed column is missing (the message names the option).
    """
    _require(table, [columns.treatment], "phenotypic activity (--treatment)")
    if normalize != "none":
        _require(table, [columns.plate], f"--normalize {normalize} (--plate)")
    if columns.batch is not None:
        _require(table, [columns.batch], "--batch")
    normalized, features, method, control = prepare_profiles(table, normalize=normalize, columns=columns, select=select)
    act = phenotypic_activity(
        normalized, treatment=columns.treatment, plate=columns.plate, batch=columns.batch, control=control,
        features=features, null_size=null_size, seed=seed, alpha=alpha,
    )  # fmt: skip
    return act, normalized, features, method, control


def run_activity(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The command's work: read, normalise, score activity (and consistency when the label exists).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by :func:`build_parser`.

    Returns
    -------
    activity : DataFrame
        :func:`phenotypic_activity` of the table.
    consistency : DataFrame or None
        :func:`moa_consistency` (of the active treatments with ``--active-only``); ``None``
        without a label column.
    """
    from moa_features.io import read_table

    columns = Columns.from_args(args)
    common = {"null_size": args.null_size, "seed": args.seed, "alpha": args.alpha}
    try:
        act, table, features, method, control = table_activity(
            read_table(args.table), columns, args.normalize, select=not args.no_select, **common
        )
    except KeyError as err:
        raise KeyError(f"{args.table}: {err.args[0]}") from None
    _log(f"normalisation: {method}; {len(features)} features; controls: {columns.describe_control()}")
    where = "batch" if columns.batch else "plate"
    _log(f"{int(act['active'].sum())} of {len(act)} treatments active at q < {args.alpha} (replicates ranked "
         f"against the controls of their own {where})")  # fmt: skip
    if columns.label not in table.columns:
        _log(f"no {columns.label!r} column: MoA consistency skipped (name the class column with --label)")
        return act, None
    chosen = act.loc[act["active"], "treatment"].tolist() if args.active_only else None
    cons = moa_consistency(
        table, treatment=columns.treatment, label=columns.label, plate=columns.plate, control=control,
        features=features, treatments=chosen, **common,
    )  # fmt: skip
    return act, cons


def _log(msg: str) -> None:
    print(f"[activity] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``moa-features activity``: phenotypic activity and MoA consistency of a table's treatments.

    Parameters
    ----------
    argv : list of str, optional
        ``TABLE -o OUT [options]`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0: the activity table ``OUT`` written (and, with a label column, the MoA consistency
        table beside it); 2: unusable input, the reason on stderr and nothing written.
    """
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    try:
        refuse_overwriting_inputs([out, consistency_path(out)], [args.table], "-o")
        check_writable_file(out, "activity table (-o)")
        act, cons = run_activity(args)
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"moa-features activity: error: {msg}", file=sys.stderr)
        return 2
    write_table(act, out)
    _log(f"wrote {out}")
    if cons is not None:
        write_table(cons, consistency_path(out))
        _log(f"MoA consistency of {len(cons)} MoAs: wrote {consistency_path(out)}")
    return 0


if __name__ == "__main__":
    from moa_features.io import format_warnings

    format_warnings("activity")
    sys.exit(main())
