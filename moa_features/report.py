"""The HTML comparison report: ``moa-features report FEATURES [--run models/RUN]``.

:func:`build_report` reads a feature table (and its side files: errors, summary, votes,
annotation), optionally a training run ``models/RUN/`` trained on it (metrics, predictions,
per-treatment predictions, importance, history, ``activity.csv``), and writes one
self-contained page ``reports/<run name>.html`` (``reports/<table name>.html`` without a run)
with every figure also saved under ``reports/<name>_files/``; it never silently replaces the
page of another run (:mod:`moa_features.reports.checks`). The sections themselves live in
:mod:`moa_features.reports.sections`; this module reads the inputs, prepares the class labels
and plate-normalised table, and assembles the page. A missing input makes its section say
what is absent; it never fails the report.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from moa_features import profiling, schema
from moa_features.columns import Columns, metadata_parent, resolve_n_jobs
from moa_features.io import package_versions, read_table
from moa_features.reports import checks, plots, run_sections
from moa_features.reports import sections as sec
from moa_features.reports.html import render_html, write_report
from moa_features.reports.sections import CLASS_COL, read_json

# --------------------------------------------------------------------------- inputs


def stem_of(features: str | Path) -> str:
    """Table name without its format suffix: ``features/demo.parquet`` -> ``demo``."""
    return checks.table_stem(features)


def class_labels(
    table: pd.DataFrame, annotation: pd.DataFrame | None = None, columns: Columns | None = None
) -> tuple[pd.Series, str]:
    """The class of each row and a sentence saying where it came from.

    The label column (``columns.label``, default ``Metadata_moa``) when the table has it; else
    the annotation's ``treatment -> moa`` map applied to the treatment column; else the
    treatment itself. Negative controls (:meth:`Columns.controls
    <moa_features.columns.Columns.controls>`, i.e. ``--control``) are always ``Negative
    control``; rows without a class are ``Unannotated``.
    """
    columns = columns or Columns()
    label, treatment = columns.label, columns.treatment
    if label in table.columns and table[label].notna().any():
        labels, source = table[label], f"Classes are the label column {label}."
    elif annotation is not None and treatment in table.columns:
        missing = {"treatment", "moa"} - set(annotation.columns)
        if missing:
            raise KeyError(f"annotation table lacks column(s) {sorted(missing)} (expected treatment, moa)")
        mapping = dict(zip(annotation["treatment"].astype(str), annotation["moa"]))
        labels = table[treatment].astype(str).map(mapping)
        source = f"The table has no {label} column: MoAs come from the annotation table (treatment → moa)."
    elif treatment in table.columns:
        labels = table[treatment]
        source = f"The table has no {label} column: classes are treatments ({treatment}), not MoAs."
    else:
        raise KeyError(
            f"the feature table has neither the label column {label} nor the treatment column {treatment}; "
            f"cannot group rows (name them with --label / --treatment; metadata columns: "
            f"{schema.metadata_columns(table.columns)})"
        )
    labels = labels.astype(object).where(labels.notna(), "Unannotated").astype(str)
    labels = labels.where(~columns.controls(table), schema.NEGATIVE_CONTROL_MOA)
    return pd.Series(labels.to_numpy(), index=table.index, name=CLASS_COL), source


def intensity_channels(columns: Sequence[str]) -> list[str]:
    """Channels with a per-image mean intensity feature (``Image_Intensity_Mean_<ch>``), in order."""
    return [m.group(1) for c in columns if (m := re.fullmatch(r"Image_Intensity_Mean_([^_]+)", str(c)))]


def stains_for(channels: Sequence[str]) -> dict[str, str]:
    """The RxRx stain map when the channels are RxRx's ``w1..w6``, else nothing."""
    return dict(schema.RXRX_STAINS) if set(channels) <= set(schema.RXRX_STAINS) else {}


def plate_normalize(table: pd.DataFrame, plate: str = schema.PLATE) -> tuple[pd.DataFrame | None, str]:
    """The table normalised as ``train`` normalises it by default (``auto``, against the report's controls); a note."""
    if plate not in table.columns:
        return None, f"No plate column ({plate}): plate normalisation skipped."
    control = (table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the note below says what was chosen
        done = profiling.normalize_table(table, "auto", plate=plate, control=control)
    if done.method == "none":
        return done.table, "The features are already normalised (centred at 0, unit robust spread): used as given."
    return done.table, done.note


def row_unit(table: pd.DataFrame, plate: str = schema.PLATE) -> str:
    """What one row of the table is: ``sites``, ``wells`` or ``rows``."""
    if schema.SITE in table.columns or schema.SITE_ID in table.columns:
        return "sites"
    keys = [schema.WELL_ID] if schema.WELL_ID in table.columns else [plate, schema.WELL]
    if set(keys) <= set(table.columns) and not table.duplicated(keys).any():
        return "wells"
    return "rows"


def treatment_classes(table: pd.DataFrame, treatment: str = schema.TREATMENT) -> dict[str, str]:
    """Each treatment's display class (its most frequent row class), for colouring per-treatment figures.

    Keys are treatment names and, with a concentration column, ``NAME@CONCENTRATION`` (activity's keys).
    """
    if treatment not in table.columns:
        return {}
    pairs = pd.DataFrame({"t": table[treatment].astype(str), "c": table[CLASS_COL].astype(str)})
    out = pairs.groupby("t")["c"].agg(lambda c: c.value_counts().index[0]).to_dict()
    if schema.CONCENTRATION in table.columns:
        pairs["t"] = pairs["t"] + "@" + table[schema.CONCENTRATION].astype(str)
        out |= pairs.groupby("t")["c"].agg(lambda c: c.value_counts().index[0]).to_dict()
    return out


# --------------------------------------------------------------------------- entry points


# The two costliest sections, drawn from the table alone: with 2 or more cores (``n_jobs``) a second process
# draws them while this one draws the others.
SECOND_PROCESS_SECTIONS = ("intensity", "examples")


def _table_sections(
    table: pd.DataFrame,
    normalized: pd.DataFrame | None,
    norm_note: str,
    channels: Sequence[str],
    stains: Mapping[str, str],
    palette: Mapping[str, str],
    columns: Columns,
) -> dict[str, tuple[sec.Section, float]]:
    """:data:`SECOND_PROCESS_SECTIONS` built (in a second process) with their wall seconds, by name."""
    out = {}
    for name, build in (
        ("intensity", lambda: sec.intensity_section(table, normalized, norm_note, channels, stains, palette, columns)),
        ("examples", lambda: sec.examples_section(table, normalized, channels, stains, palette, columns)),
    ):
        t = time.perf_counter()
        out[name] = (build(), time.perf_counter() - t)
    return out


def _second_process(n_jobs: int):
    """A one-worker process pool when ``n_jobs`` allows 2 or more cores on this machine, else ``None``."""
    if min(resolve_n_jobs(n_jobs), os.cpu_count() or 1) < 2:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _columns(columns: Columns | None, metrics: Mapping[str, Any] | None) -> Columns:
    """The columns given, else the run's recorded ones, else the defaults."""
    if columns is not None:
        return columns
    config = (metrics or {}).get("config")
    return Columns.from_config(config) if isinstance(config, dict) else Columns()


def build_report(
    features: str | Path,
    run_dir: str | Path | None = None,
    votes: str | Path | None = None,
    annotation: str | Path | None = None,
    output: str | Path | None = None,
    title: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    activity: str | Path | None = None,
    columns: Columns | None = None,
    overwrite: bool = False,
    n_jobs: int = 1,
) -> Path:
    """Write the HTML report of a feature table (and a training run); returns the page's path.

    Parameters
    ----------
    features : str or Path
        Feature table (Parquet/CSV) written by ``moa-features extract``.
    run_dir : str or Path, optional
        Training run folder ``models/RUN/`` trained on ``features`` (checked).
    votes, annotation : str or Path, optional
        Vote store and treatment -> MoA table; default to the table's side files when they exist.
    output : str or Path, optional
        The page; default ``reports/<run name>.html`` with a run, else ``reports/<table name>.html``
        (:func:`moa_features.reports.checks.default_output`). Figures also go to ``<output stem>_files/``.
        An existing page of another run or table is not replaced unless ``overwrite``.
    title : str, optional
        Page title.
    provenance : mapping, optional
        Extra entries (command, seed, timings) shown in the provenance section.
    activity : str or Path, optional
        Phenotypic-activity table from ``moa-features activity``; default ``RUN/activity.csv``
        when it exists.
    columns : Columns, optional
        Metadata columns and controls; default the run's recorded ones, else the defaults.
    overwrite : bool, default False
        Replace an existing page of another run or table.
    n_jobs : int, default 1
        CPU cores (``-1``: all). With 2 or more, a second process draws the intensity and example-image
        sections meanwhile (:data:`SECOND_PROCESS_SECTIONS`; the same figures).

    Returns
    -------
    Path
        The HTML page.

    Raises
    ------
    FileNotFoundError
        If the run folder or the activity table does not exist.
    ValueError
        If the table has no rows, or the run was not trained on it.
    """
    t0 = time.perf_counter()
    features = Path(features)
    side = schema.sidecar_paths(features)
    run_dir = Path(run_dir) if run_dir else None
    if run_dir is not None and not run_dir.is_dir():
        raise FileNotFoundError(f"training run folder not found: {run_dir}")
    if activity is not None and not Path(activity).is_file():
        raise FileNotFoundError(f"activity table not found: {activity}")
    annotation = Path(annotation) if annotation else (side["annotation"] if side["annotation"].is_file() else None)
    votes = Path(votes) if votes else (side["votes"] if side["votes"].is_file() else None)
    activity = Path(activity) if activity else (run_dir / "activity.csv" if run_dir else None)
    output = Path(output) if output else checks.default_output(features, run_dir)
    inputs = [features, *side.values(), votes, annotation, activity, *(run_dir.iterdir() if run_dir else ())]
    checks.check_output(output, inputs, checks.owner_record(features, run_dir), overwrite)
    checks.check_votes(votes)
    table = read_table(features).reset_index(drop=True)
    if table.empty:
        failed = f"; every site failed, the reasons are in {side['errors']}" if side["errors"].is_file() else ""
        raise ValueError(f"the feature table {features} has no rows{failed}")
    metrics = read_json(run_dir / "metrics.json") if run_dir else None
    origin = checks.check_run_table(features, table, run_dir, metrics.get("config") or {}) if metrics else None
    columns = _columns(columns, metrics)
    errors = read_table(side["errors"]) if side["errors"].is_file() else None
    annotation_df = read_table(annotation) if annotation else None
    summary = read_json(side["summary"])

    labels, class_note = class_labels(table, annotation_df, columns)
    table = pd.concat([table, labels], axis=1)
    palette = plots.moa_palette(table[CLASS_COL])
    channels = intensity_channels(table.columns)
    stains = stains_for(channels)
    normalized, norm_note = plate_normalize(table, columns.plate)
    treatment_class = treatment_classes(table, columns.treatment)
    unit = row_unit(table, columns.plate)

    timings: dict[str, float] = {}
    built: dict[str, Any] = {}
    builders = [
        ("question", lambda: run_sections.question_section(run_dir, metrics, origin, table)),
        ("dataset", lambda: sec.dataset_section(table, errors, annotation_df, class_note, palette, columns, unit)),
        ("intensity", lambda: sec.intensity_section(table, normalized, norm_note, channels, stains, palette, columns)),
        ("examples", lambda: sec.examples_section(table, normalized, channels, stains, palette, columns)),
        ("features", lambda: sec.features_section(normalized, unit)),
        ("models", lambda: run_sections.models_section(run_dir, metrics)),
        ("activity", lambda: sec.activity_section(activity, treatment_class, palette)),
        ("votes", lambda: sec.votes_section(votes, channels, stains)),
    ]
    pool = _second_process(n_jobs)
    try:
        if pool is not None:
            aside = pool.submit(_table_sections, table, normalized, norm_note, channels, stains, palette, columns)
        for name, build in builders:
            if pool is not None and name in SECOND_PROCESS_SECTIONS:
                continue
            t = time.perf_counter()
            built[name] = build()
            timings[f"{name}_s"] = round(time.perf_counter() - t, 2)
        if pool is not None:
            for name, (section, seconds) in aside.result().items():
                built[name], timings[f"{name}_s"] = section, round(seconds, 2)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    sections = [built[name] for name, _ in builders]
    timings = {f"{name}_s": timings[f"{name}_s"] for name, _ in builders}
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    prov: dict[str, Any] = {
        "features": str(features.resolve()),
        "training run": str(run_dir.resolve()) if run_dir else "—",
        "activity": str(activity) if activity and activity.is_file() else "—",
        "votes": str(votes) if votes else "—",
        "annotation": str(annotation) if annotation else "—",
        "columns": {k: v if v is not None else "—" for k, v in columns.as_config().items()},
        "controls": columns.describe_control(),
        **(provenance or {}),
        "versions": package_versions(),
        "report timings": timings,
    }
    sections.append(sec.provenance_section(prov, summary, metrics))
    name = run_dir.resolve().name if run_dir else stem_of(features)
    title = title or f"MoA report — {name}"
    parts = [f"{len(table):,} {unit}", f"{table[CLASS_COL].nunique()} classes"]
    parts += [f"{len(channels)} channels"] if channels else []
    parts += [f"features from {features.name}"] + ([f"models from {run_dir}"] if run_dir else [])
    html = render_html(title, sections, " · ".join(parts), record=checks.owner_record(features, run_dir))
    return write_report(html, sections, output)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features report",
        description="Write a self-contained HTML report of a feature table and (optionally) a training run "
        "trained on it.",
        parents=[metadata_parent(("control", "treatment", "plate", "label"))],
        epilog="Metadata options default to the columns the run was trained with (RUN/metrics.json), else to the "
        "defaults shown.",
    )
    p.add_argument("features", help="feature table (.parquet or .csv) written by `moa-features extract`")
    p.add_argument("--run", help="training run folder models/RUN trained on FEATURES (adds the model comparison)")
    p.add_argument("--votes", help="vote store (default: the table's NAME.votes.sqlite if present)")
    p.add_argument("--annotation", help="treatment -> MoA CSV (default: the table's NAME.treatment_moa.csv)")
    p.add_argument(
        "--activity", help="phenotypic-activity CSV from `moa-features activity` (default: RUN/activity.csv)"
    )
    p.add_argument(
        "-o",
        "--output",
        help="output page (default: reports/<run name>.html with --run, else reports/<table name>.html)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing page of another run or table")
    p.add_argument("--title", help="page title")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``moa-features report FEATURES [--run models/RUN] [--votes PATH] [--annotation CSV] [-o OUT.html]``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``report`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 once the page is written (its path is printed); 2 when an input is missing or
        unusable, with the reason on stderr.
    """
    args = build_parser().parse_args(argv)
    command = "moa-features report " + shlex.join(list(sys.argv[1:] if argv is None else argv))
    given = {k: getattr(args, k) for k in ("control", "treatment", "plate", "label") if getattr(args, k) is not None}
    try:
        columns = None
        if given:
            config = (read_json(Path(args.run) / "metrics.json") or {}).get("config") if args.run else None
            columns = _columns(None, {"config": config} if isinstance(config, dict) else None).with_(**given)
        path = build_report(
            args.features, run_dir=args.run, votes=args.votes, annotation=args.annotation, output=args.output,
            title=args.title, provenance={"command": command}, activity=args.activity, columns=columns,
            overwrite=args.overwrite,
        )  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"moa-features report: error: {message}", file=sys.stderr)
        return 2
    print(f"report written to {path.resolve()}")
    return 0


if __name__ == "__main__":
    from moa_features.io import format_warnings

    format_warnings("report")
    raise SystemExit(main())
