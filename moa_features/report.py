"""The HTML comparison report: ``python -m moa_features.report FEATURES [--run models/RUN]``.

:func:`build_report` reads a feature table (and its side files: errors, summary, votes,
annotation), optionally a training run ``models/RUN/`` (metrics, predictions, importance,
history, ``activity.csv``), and writes one self-contained page ``reports/<name>.html`` with
every figure also saved under ``reports/<name>_files/``. The sections themselves live in
:mod:`moa_features.reports.sections`; this module reads the inputs, prepares the class labels
and plate-normalised table, and assembles the page. A missing input makes its section say
what is absent; it never fails the report.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from moa_features import profiling, schema
from moa_features.io import package_versions, read_table
from moa_features.reports import plots
from moa_features.reports import sections as sec
from moa_features.reports.html import render_html, write_report
from moa_features.reports.sections import CLASS_COL, read_json

# --------------------------------------------------------------------------- inputs


def stem_of(features: str | Path) -> str:
    """Table name without its format suffix: ``features/demo.parquet`` -> ``demo``."""
    return schema.sidecar_paths(features)["summary"].name[: -len(".summary.json")]


def class_labels(table: pd.DataFrame, annotation: pd.DataFrame | None = None) -> tuple[pd.Series, str]:
    """The class of each row and a sentence saying where it came from.

    ``Metadata_moa`` when the table has it; else the annotation's ``treatment -> moa`` map
    applied to ``Metadata_Treatment``; else the treatment itself. Negative controls
    (:func:`moa_features.profiling.is_control`) are always ``Negative control``; rows without a
    class are ``Unannotated``.
    """
    if schema.MOA in table.columns and table[schema.MOA].notna().any():
        labels, source = table[schema.MOA], f"Classes are the MoA column {schema.MOA}."
    elif annotation is not None and schema.TREATMENT in table.columns:
        missing = {"treatment", "moa"} - set(annotation.columns)
        if missing:
            raise KeyError(f"annotation table lacks column(s) {sorted(missing)} (expected treatment, moa)")
        mapping = dict(zip(annotation["treatment"].astype(str), annotation["moa"]))
        labels = table[schema.TREATMENT].astype(str).map(mapping)
        source = f"The table has no {schema.MOA} column: MoAs come from the annotation table (treatment → moa)."
    elif schema.TREATMENT in table.columns:
        labels = table[schema.TREATMENT]
        source = f"The table has no {schema.MOA} column: classes are treatments ({schema.TREATMENT}), not MoAs."
    else:
        raise KeyError(f"the feature table has neither {schema.MOA} nor {schema.TREATMENT}; cannot group sites")
    labels = labels.astype(object).where(labels.notna(), "Unannotated").astype(str)
    labels = labels.where(~profiling.is_control(table).to_numpy(), schema.NEGATIVE_CONTROL_MOA)
    return pd.Series(labels.to_numpy(), index=table.index, name=CLASS_COL), source


def intensity_channels(columns: Sequence[str]) -> list[str]:
    """Channels with a per-image mean intensity feature (``Image_Intensity_Mean_<ch>``), in order."""
    return [m.group(1) for c in columns if (m := re.fullmatch(r"Image_Intensity_Mean_([^_]+)", str(c)))]


def stains_for(channels: Sequence[str]) -> dict[str, str]:
    """The RxRx stain map when the channels are RxRx's ``w1..w6``, else nothing."""
    return dict(schema.RXRX_STAINS) if set(channels) <= set(schema.RXRX_STAINS) else {}


def plate_normalize(table: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """Plate-normalise against controls, else against all sites of the plate; with a note."""
    if schema.PLATE not in table.columns:
        return None, f"No plate column ({schema.PLATE}): plate normalisation skipped."
    control = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
    try:
        return profiling.normalize(table, "controls", control=control), (
            "Normalised per plate: robust z-score against the plate's negative-control sites."
        )
    except ValueError as exc:
        return profiling.normalize(table, "plate", control=control), (
            f"Normalised per plate against all of the plate's sites ({exc})."
        )


def treatment_classes(table: pd.DataFrame) -> dict[str, str]:
    """Each treatment's display class (its most frequent row class), for colouring per-treatment figures."""
    if schema.TREATMENT not in table.columns:
        return {}
    pairs = table[[schema.TREATMENT, CLASS_COL]].astype(str)
    return pairs.groupby(schema.TREATMENT)[CLASS_COL].agg(lambda c: c.value_counts().index[0]).to_dict()


# --------------------------------------------------------------------------- entry points


def build_report(
    features: str | Path,
    run_dir: str | Path | None = None,
    votes: str | Path | None = None,
    annotation: str | Path | None = None,
    output: str | Path | None = None,
    title: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    activity: str | Path | None = None,
) -> Path:
    """Write the HTML report of a feature table (and a training run); returns the page's path.

    Parameters
    ----------
    features : str or Path
        Feature table (Parquet/CSV) written by ``moa-features extract``.
    run_dir : str or Path, optional
        Training run folder ``models/RUN/`` (metrics.json, predictions, importance, history).
    votes, annotation : str or Path, optional
        Vote store and treatment -> MoA table; default to the table's side files when they exist.
    output : str or Path, optional
        The page; default ``reports/<table stem>.html``. Figures also go to ``<output stem>_files/``.
    title : str, optional
        Page title.
    provenance : mapping, optional
        Extra entries (command, seed, timings) shown in the provenance section.
    activity : str or Path, optional
        Phenotypic-activity table from ``moa-features activity``; default ``RUN/activity.csv``
        when it exists.
    """
    t0 = time.perf_counter()
    features = Path(features)
    side = schema.sidecar_paths(features)
    stem = stem_of(features)
    table = read_table(features).reset_index(drop=True)
    if table.empty:
        failed = f"; every site failed, the reasons are in {side['errors']}" if side["errors"].is_file() else ""
        raise ValueError(f"the feature table {features} has no rows{failed}")
    annotation = Path(annotation) if annotation else (side["annotation"] if side["annotation"].is_file() else None)
    votes = Path(votes) if votes else (side["votes"] if side["votes"].is_file() else None)
    run_dir = Path(run_dir) if run_dir else None
    if run_dir is not None and not run_dir.is_dir():
        raise FileNotFoundError(f"training run folder not found: {run_dir}")
    if activity is not None and not Path(activity).is_file():
        raise FileNotFoundError(f"activity table not found: {activity}")
    activity = Path(activity) if activity else (run_dir / "activity.csv" if run_dir else None)
    errors = read_table(side["errors"]) if side["errors"].is_file() else None
    annotation_df = read_table(annotation) if annotation else None
    summary = read_json(side["summary"])
    metrics = read_json(run_dir / "metrics.json") if run_dir else None
    output = Path(output) if output else Path("reports") / f"{stem}.html"

    labels, class_note = class_labels(table, annotation_df)
    table[CLASS_COL] = labels
    palette = plots.moa_palette(table[CLASS_COL])
    channels = intensity_channels(table.columns)
    stains = stains_for(channels)
    normalized, norm_note = plate_normalize(table)
    treatment_class = treatment_classes(table)

    timings: dict[str, float] = {}
    sections = []
    builders = [
        ("question", lambda: sec.question_section(run_dir, metrics)),
        ("dataset", lambda: sec.dataset_section(table, errors, annotation_df, class_note, palette)),
        ("intensity", lambda: sec.intensity_section(table, normalized, norm_note, channels, stains, palette)),
        ("examples", lambda: sec.examples_section(table, normalized, channels, stains, palette)),
        ("features", lambda: sec.features_section(normalized)),
        ("models", lambda: sec.models_section(run_dir, metrics)),
        ("activity", lambda: sec.activity_section(activity, treatment_class, palette)),
        ("votes", lambda: sec.votes_section(votes, channels, stains)),
    ]
    for name, build in builders:
        t = time.perf_counter()
        sections.append(build())
        timings[f"{name}_s"] = round(time.perf_counter() - t, 2)
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    prov: dict[str, Any] = {
        "features": str(features.resolve()),
        "training run": str(run_dir.resolve()) if run_dir else "—",
        "activity": str(activity) if activity and activity.is_file() else "—",
        "votes": str(votes) if votes else "—",
        "annotation": str(annotation) if annotation else "—",
        **(provenance or {}),
        "versions": package_versions(),
        "report timings": timings,
    }
    sections.append(sec.provenance_section(prov, summary, metrics))
    title = title or f"MoA report — {stem}"
    subtitle = (f"{len(table):,} sites · {table[CLASS_COL].nunique()} classes · "
                f"{len(channels)} channels · features from {features.name}"
                + (f" · models from {run_dir}" if run_dir else ""))  # fmt: skip
    html = render_html(title, sections, subtitle)
    return write_report(html, sections, output)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features report",
        description="Write a self-contained HTML report of a feature table and (optionally) a training run.",
    )
    p.add_argument("features", help="feature table (.parquet or .csv) written by `moa-features extract`")
    p.add_argument("--run", help="training run folder models/RUN (adds the model comparison)")
    p.add_argument("--votes", help="vote store (default: the table's NAME.votes.sqlite if present)")
    p.add_argument("--annotation", help="treatment -> MoA CSV (default: the table's NAME.treatment_moa.csv)")
    p.add_argument(
        "--activity", help="phenotypic-activity CSV from `moa-features activity` (default: RUN/activity.csv)"
    )
    p.add_argument("-o", "--output", help="output page (default: reports/<table name>.html)")
    p.add_argument("--title", help="page title")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``moa-features report FEATURES [--run models/RUN] [--votes PATH] [--annotation CSV] [-o OUT.html]``."""
    args = build_parser().parse_args(argv)
    command = "moa-features report " + shlex.join(list(sys.argv[1:] if argv is None else argv))
    try:
        path = build_report(
            args.features, run_dir=args.run, votes=args.votes, annotation=args.annotation, output=args.output,
            title=args.title, provenance={"command": command}, activity=args.activity,
        )  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"moa-features report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
