"""The HTML comparison report: ``python -m moa_features.report FEATURES [--run models/RUN]``.

:func:`build_report` reads a feature table (and its side files: errors, summary, votes,
annotation), optionally a training run ``models/RUN/``, and writes one self-contained page
``reports/<name>.html`` with every figure also saved under ``reports/<name>_files/``.
Sections: dataset, per-channel intensity (raw and plate-normalised), example images, the most
discriminative features, models, people's channel votes, provenance. A missing input makes
its section say what is absent; it never fails the report.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from markupsafe import Markup

from moa_features import profiling, schema
from moa_features.io import package_versions, read_table
from moa_features.reports import plots
from moa_features.reports.html import (
    ReportFigure, Section, Table, figure_png, key_value_rows, render_html, slug, write_report,
)  # fmt: skip

CLASS_COL = "Metadata_report_class"  # the class each row is drawn as (MoA, or treatment as fallback)
MAIN_MODELS = ("cnn", "xgboost", "ensemble")
CHANCE_MODELS = ("majority", "shuffled")
MAX_EXAMPLES = 30  # MoAs shown in the example-image section


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


def read_votes(path: Path, channels: Sequence[str]) -> pd.DataFrame:
    """Per-MoA channel vote counts (``moa, channel, votes``) from the app's vote store."""
    from moa_features.votes import VoteStore

    return VoteStore(path).summary(channels=channels)


# --------------------------------------------------------------------------- helpers


def _fig(section: Section, title: str, fig: Any, caption: str = "") -> ReportFigure:
    return section.add(ReportFigure(name=slug(title), title=title, png=figure_png(fig), caption=caption))


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _n_unique(table: pd.DataFrame, *cols: str) -> int | None:
    if not all(c in table.columns for c in cols):
        return None
    return int(table[list(cols)].drop_duplicates().shape[0])


def _wells(table: pd.DataFrame) -> int | None:
    if schema.WELL_ID in table.columns:
        return _n_unique(table, schema.WELL_ID)
    return _n_unique(table, schema.PLATE, schema.WELL)


def _pm(mean: Any, std: Any) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    return f"{mean:.3f} ± {std:.3f}" if std is not None and np.isfinite(std) else f"{mean:.3f}"


# --------------------------------------------------------------------------- sections


def dataset_section(
    table: pd.DataFrame,
    errors: pd.DataFrame | None,
    annotation: pd.DataFrame | None,
    class_note: str,
    palette: Mapping[str, str],
) -> Section:
    """Counts of sites/wells/plates/experiments/treatments/MoAs, class sizes, failed sites."""
    s = Section(
        "dataset", "Dataset",
        "Look at how unequal the classes are (the class imbalance every model must cope with) and whether "
        "failed sites pile up on one plate or one kind of error.",
    )  # fmt: skip
    n_failed = 0 if errors is None else len(errors)
    counts = [
        ["sites measured", len(table)],
        ["wells", _wells(table)],
        ["plates", _n_unique(table, schema.PLATE)],
        ["experiments", _n_unique(table, schema.EXPERIMENT)],
        ["treatments", _n_unique(table, schema.TREATMENT)],
        ["classes (incl. negative control)", int(table[CLASS_COL].nunique())],
        ["sites that failed", n_failed if errors is not None else "no errors table"],
    ]
    s.add(Table(["", "count"], [[k, "—" if v is None else v] for k, v in counts], caption="Screen at a glance"))
    s.add(class_note)
    _fig(s, "Sites per class", plots.class_counts(table[CLASS_COL], palette), "Number of measured sites per class.")
    rows = []
    for cls, g in table.groupby(CLASS_COL, sort=False):
        rows.append([
            cls, len(g), _wells(g) or "—", _n_unique(g, schema.PLATE) or "—",
            ", ".join(sorted(g[schema.TREATMENT].astype(str).unique())[:6]) if schema.TREATMENT in g else "—",
        ])  # fmt: skip
    order = {m: i for i, m in enumerate(plots.moa_order(table[CLASS_COL]))}
    rows.sort(key=lambda r: order[r[0]])
    s.add(Table(["class", "sites", "wells", "plates", "treatments (first 6)"], rows, caption="Per class"))
    if errors is None:
        s.add("No errors table beside the feature table: failed sites are unknown.")
    elif n_failed == 0:
        s.add("Every site was read and measured.")
    else:
        by = errors.groupby("stage").size() if "stage" in errors.columns else pd.Series({"?": n_failed})
        s.add(Table(["stage", "failed sites"], [[k, int(v)] for k, v in by.items()], caption="Failed sites by stage"))
        cols = [c for c in (schema.SITE_ID, "stage", "error") if c in errors.columns]
        s.add(Table(cols, errors[cols].head(20).astype(str).values.tolist(),
                    caption=f"Failed sites and reasons (first {min(20, n_failed)} of {n_failed})"))
    if annotation is not None and {"treatment", "moa"} <= set(annotation.columns):
        if "source" in annotation.columns:
            by_source = annotation.groupby("source").size()
            s.add(Table(["annotation source", "treatments"], [[k, int(v)] for k, v in by_source.items()],
                        caption="How treatments were mapped to MoAs"))
        cols = [c for c in ("treatment", "moa", "source", "uniprot_accession", "gene", "evidence", "needs_review")
                if c in annotation.columns]
        shown = annotation.sort_values(["moa", "treatment"])[cols].fillna("")
        n_review = int(shown["needs_review"].astype(str).str.lower().isin({"true", "1"}).sum()) if "needs_review" in cols else 0
        s.add(Table(cols, shown.astype(str).values.tolist(),
                    caption=f"Treatment -> MoA annotation with its evidence ({len(shown)} treatments, "
                            f"{n_review} flagged for review)"))
    return s


def intensity_section(
    table: pd.DataFrame,
    normalized: pd.DataFrame | None,
    norm_note: str,
    channels: Sequence[str],
    stains: Mapping[str, str],
    palette: Mapping[str, str],
) -> Section:
    """The original analysis' figures: histograms of the per-image sum, violins of the mean."""
    s = Section(
        "intensity", "Per-channel intensity",
        "Compare each MoA with the grey negative control: a shift seen raw but gone after plate normalisation "
        "is a batch effect; a shift that survives normalisation is the treatment.",
    )  # fmt: skip
    if not channels:
        s.add("The table has no Image_Intensity_Mean_<channel> features: no intensity figures.")
        return s
    s.add(norm_note)
    if all(f"Image_Intensity_Sum_{c}" in table.columns for c in channels):
        fig = plots.intensity_histograms(table, channels, CLASS_COL, "Sum", normalized, palette, stains)
        _fig(s, "Sum of intensity per image", fig,
             "Density histograms (each class integrates to 1, so small classes are visible); grey filled: negative "
             "control. Left raw grey-level sums, right the same sites after plate normalisation.")
    else:
        s.add("The table has no Image_Intensity_Sum_<channel> features: the histogram figure is skipped.")
    fig = plots.intensity_violins(table, channels, CLASS_COL, "Mean", normalized, palette, stains)
    _fig(s, "Mean intensity per image", fig,
         "One violin per class (inner bar: quartiles, white dot: median); dashed grey line: the negative "
         "control's median. Left raw, right plate-normalised.")
    if schema.PLATE in table.columns and table[schema.PLATE].nunique() > 1:
        ctrl = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
        if ctrl.any():
            fig = plots.plate_effects(
                table[ctrl], channels, normalized[ctrl] if normalized is not None else None, stains=stains
            )
            _fig(s, "Negative controls per plate", fig,
                 "Mean intensity of the negative-control sites of each plate: differences between plates are batch "
                 "effects (left); after plate normalisation every plate is centred on 0 (right).")
    return s


def _representative(rows: pd.DataFrame, cols: Sequence[str]) -> Any:
    """Index of the row closest (Euclidean, NaNs ignored) to the rows' median profile."""
    x = rows[list(cols)].to_numpy(dtype=np.float64)
    center = np.nanmedian(x, axis=0)
    d = np.nansum((x - center) ** 2, axis=1)
    return rows.index[int(np.argmin(d))]


def _read_site(row: pd.Series, channels: Sequence[str]) -> np.ndarray:
    from moa_features.datasets import read_image

    site = str(row.get(schema.SITE_ID, ""))
    planes = [read_image(row[f"{schema.PATH_PREFIX}{c}"], site_id=site, channel=c) for c in channels]
    return np.stack(planes)


def examples_section(
    table: pd.DataFrame,
    normalized: pd.DataFrame | None,
    channels: Sequence[str],
    stains: Mapping[str, str],
    palette: Mapping[str, str],
) -> Section:
    """For each MoA: a typical site's channels above a control site from the same plate."""
    s = Section(
        "examples", "Example images",
        "Each panel shows a typical site of one MoA above a negative control from the same plate at the same "
        "contrast per channel, so differences in brightness, shape or texture are the treatment, not the display.",
    )  # fmt: skip
    path_cols = [f"{schema.PATH_PREFIX}{c}" for c in channels]
    missing = [c for c in path_cols if c not in table.columns]
    if not channels or missing:
        s.add(f"The table has no image path column(s) {missing or path_cols}: no example images.")
        return s
    if schema.PLATE not in table.columns:
        s.add(f"The table has no plate column ({schema.PLATE}): controls cannot be matched by plate.")
        return s
    profile = normalized if normalized is not None else table
    cols = [f"Image_Intensity_Mean_{c}" for c in channels]
    ctrl = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
    control_plates = set(table.loc[ctrl, schema.PLATE])
    classes = [m for m in plots.moa_order(table[CLASS_COL]) if m != schema.NEGATIVE_CONTROL_MOA]
    if not ctrl.any():
        s.add("No negative-control sites: nothing to compare the treated sites with.")
        return s
    if len(classes) > MAX_EXAMPLES:
        s.add(f"{len(classes)} classes: showing the first {MAX_EXAMPLES} in alphabetical order.")
    for moa in classes[:MAX_EXAMPLES]:
        rows = profile[(table[CLASS_COL] == moa) & table[schema.PLATE].isin(control_plates)]
        if rows.empty:
            s.add(f"{moa}: no site on a plate that has negative controls.")
            continue
        i = _representative(rows, cols)
        plate = table.at[i, schema.PLATE]
        j = _representative(profile[ctrl & (table[schema.PLATE] == plate)], cols)
        try:
            treated, control = _read_site(table.loc[i], channels), _read_site(table.loc[j], channels)
        except OSError as exc:
            s.add(f"{moa}: cannot read the example images: {exc}")
            continue
        if treated.shape != control.shape:
            s.add(f"{moa}: treated {treated.shape} and control {control.shape} images differ in shape; skipped.")
            continue
        site = lambda k: str(table.at[k, schema.SITE_ID]) if schema.SITE_ID in table.columns else str(k)  # noqa: E731
        treatment = f" ({table.at[i, schema.TREATMENT]})" if schema.TREATMENT in table.columns else ""
        fig = plots.channel_panel(
            treated, control, channels, f"{moa}{treatment}\n{site(i)}", f"Negative control\n{site(j)}",
            stains, palette[moa],
        )  # fmt: skip
        _fig(s, moa, fig, f"Top: {site(i)}, the {moa} site closest to the class's median intensity profile. "
                          f"Bottom: {site(j)}, the most typical control on plate {plate}.")
    return s


def features_section(normalized: pd.DataFrame | None, n: int = 30) -> Section:
    """Heatmap of the most discriminative features: robust effect size vs control per MoA."""
    s = Section(
        "features", "Discriminative features",
        "Red features are higher than in the negative controls, blue lower; MoAs with similar columns have similar "
        "phenotypes and are the ones a model will confuse.",
    )  # fmt: skip
    if normalized is None:
        s.add("No plate-normalised table (no plate column): effect sizes are not computed.")
        return s
    try:
        with warnings.catch_warnings():  # features NaN in every site of a class are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            effects = profiling.effect_sizes(normalized, group_col=CLASS_COL)
    except (KeyError, ValueError) as exc:
        s.add(f"Effect sizes not computed: {exc}.")
        return s
    effects = effects.replace([np.inf, -np.inf], np.nan).dropna(axis=1, how="all")
    if effects.empty:
        s.add("Only negative controls in the table: no treatment to compare with them.")
        return s
    _fig(s, "Most discriminative features", plots.effect_heatmap(effects, n),
         "Effect size = (median of the class - median of the controls) / robust SD of the controls, on "
         "plate-normalised features; the features with the largest |effect| in any class, grouped by the class "
         "where each is strongest.")
    rows = []
    for moa in plots.moa_order(effects.index):
        top = effects.loc[moa].dropna().abs().sort_values(ascending=False).head(3).index
        rows.append([moa, *(Markup(f"{f} <em>({effects.at[moa, f]:+.1f})</em>") for f in top)]
                    + [""] * (3 - len(top)))
    s.add(Table(["class", "strongest feature", "2nd", "3rd"], rows, caption="Strongest features per class "
                "(effect size in brackets)", numeric=[False] * 4))
    return s


def models_table(metrics: Mapping[str, Mapping[str, float]]) -> Table:
    """The comparison table: one row per model, mean ± std of the key metrics, site and well level."""
    models = plots.model_order(list(metrics))
    keys = ["macro_recall", "balanced_accuracy", "macro_f1"]
    levels = [("", "site")] + ([("well_", "well")] if any(f"well_{k}" in metrics[m] for m in models for k in keys) else [])
    columns = ["model"] + [f"{plots.METRIC_LABELS[k]} ({lvl})" for p, lvl in levels for k in keys]
    best = {}
    for p, _ in levels:
        for k in keys:
            vals = [metrics[m].get(f"{p}{k}") for m in models if m not in CHANCE_MODELS]
            vals = [v for v in vals if v is not None and np.isfinite(v)]
            best[p + k] = max(vals) if vals else None
    rows = []
    for m in models:
        row: list[Any] = [plots.MODEL_LABELS.get(m, m)]
        for p, _ in levels:
            for k in keys:
                v, sd = metrics[m].get(f"{p}{k}"), metrics[m].get(f"{p}{k}_std")
                text = _pm(v, sd)
                row.append(Markup(f"<strong>{text}</strong>") if v is not None and v == best[p + k] else text)
        rows.append(row)
    return Table(columns, rows, caption="Model comparison (mean ± SD across held-out folds; best in bold)",
                 numeric=[False] + [True] * (len(columns) - 1))


def models_section(run_dir: Path | None) -> Section:
    """Comparison table and figures of a training run ``models/RUN/`` (each piece optional)."""
    s = Section(
        "models", "Models",
        "Compare XGBoost and the ensemble with the Keras CNN baseline on macro recall (every class counts equally, "
        "chance is 1 / number of classes), then see which classes each model misses and confuses.",
    )  # fmt: skip
    if run_dir is None:
        s.add("No training run given (build the report with --run models/RUN to compare models).")
        return s
    metrics = _read_json(run_dir / "metrics.json")
    if metrics is None:
        s.add(f"{run_dir / 'metrics.json'} not found: no model comparison.")
    else:
        models = metrics.get("models") or {}
        classes = metrics.get("classes") or []
        preds = run_dir / "predictions.parquet"
        folds = pd.read_parquet(preds, columns=["fold"])["fold"].nunique() if preds.is_file() else None
        s.add(f"Run {run_dir}: {len(classes)} classes"
              + (f", {folds} held-out folds" if folds else "") + (f"; chance macro recall {1 / len(classes):.3f}." if classes else "."))
        if models:
            s.add(models_table(models))
            table = pd.DataFrame(models).T
            _fig(s, "Model comparison", plots.metric_comparison(table),
                 "Site-level scores on held-out folds; error bars: SD across folds.")
        recall = metrics.get("per_class_recall") or {}
        shown = {m: v for m, v in recall.items() if m not in CHANCE_MODELS}
        if shown:
            _fig(s, "Recall per class", plots.per_class_recall(pd.DataFrame(shown)),
                 "Fraction of each class's held-out sites predicted correctly, per model.")
        cms = metrics.get("confusion_matrices") or {}
        for m in [m for m in MAIN_MODELS if m in cms] or [m for m in plots.model_order(list(cms)) if m not in CHANCE_MODELS]:
            label = plots.MODEL_LABELS.get(m, m)
            _fig(s, f"Confusion matrix — {label}", plots.confusion_matrix(cms[m]["labels"], cms[m]["matrix"], label),
                 "Rows: true class; cells: % of the true class's sites predicted as each column (diagonal = recall).")
    imp_path = run_dir / "feature_importance.csv"
    if imp_path.is_file():
        _fig(s, "Feature importance (XGBoost)", plots.feature_importance(pd.read_csv(imp_path)),
             "Mean gain over folds: how much each feature improved the trees' splits.")
    else:
        s.add(f"{imp_path} not found: no feature importance.")
    history = _read_json(run_dir / "history.json")
    if history and history.get("cnn"):
        _fig(s, "CNN training curves", plots.training_curves(history["cnn"]),
             "One line per fold; a validation loss rising while training loss falls is over-fitting.")
    else:
        s.add(f"{run_dir / 'history.json'} has no CNN curves (the CNN was not trained in this run).")
    return s


def votes_section(votes: Path | None, channels: Sequence[str], stains: Mapping[str, str]) -> Section:
    """People's channel choices per MoA from the app's vote store."""
    s = Section(
        "votes", "Channel votes",
        "Channels people pick most often for an MoA are where they see its phenotype; compare them with the "
        "feature heatmap above.",
    )  # fmt: skip
    if votes is None or not votes.is_file():
        s.add("No vote store (collect votes with `moa-features app`): no channel votes yet.")
        return s
    summary = read_votes(votes, channels)
    if summary.empty or summary["votes"].sum() == 0:
        s.add(f"The vote store {votes} has no votes yet.")
        return s
    all_channels = list(dict.fromkeys(list(channels) + list(summary["channel"])))
    _fig(s, "Channel votes", plots.channel_votes(summary, all_channels, stains),
         f"From {votes}: each cell counts how often people chose that channel for that MoA.")
    return s


def provenance_section(
    provenance: Mapping[str, Any], summary: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None
) -> Section:
    """Command lines, versions, seed and timings of the extraction, training and report."""
    s = Section("provenance", "Provenance", "Everything needed to reproduce this page: commands, versions, seeds, timings.")
    s.add(Table(["", "value"], key_value_rows(provenance), caption="Report", numeric=[False, False]))
    if summary:
        s.add(Table(["", "value"], key_value_rows(summary), caption="Feature extraction (summary.json)",
                    numeric=[False, False]))
    if metrics:
        info = {k: metrics[k] for k in ("config", "timings") if k in metrics}
        if info:
            s.add(Table(["", "value"], key_value_rows(info), caption="Training run (metrics.json)",
                        numeric=[False, False]))
    return s


# --------------------------------------------------------------------------- entry points


def build_report(
    features: str | Path,
    run_dir: str | Path | None = None,
    votes: str | Path | None = None,
    annotation: str | Path | None = None,
    output: str | Path | None = None,
    title: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write the HTML report of a feature table (and a training run); returns the page's path.

    features: feature table (Parquet/CSV). run_dir: ``models/RUN/`` (optional). votes,
    annotation: default to the table's side files when they exist. output: default
    ``reports/<table stem>.html``; figures also go to ``<output stem>_files/*.png``.
    provenance: extra entries (command, seed, timings) shown in the provenance section.
    """
    t0 = time.perf_counter()
    features = Path(features)
    side = schema.sidecar_paths(features)
    stem = stem_of(features)
    table = read_table(features).reset_index(drop=True)
    annotation = Path(annotation) if annotation else (side["annotation"] if side["annotation"].is_file() else None)
    votes = Path(votes) if votes else (side["votes"] if side["votes"].is_file() else None)
    run_dir = Path(run_dir) if run_dir else None
    if run_dir is not None and not run_dir.is_dir():
        raise FileNotFoundError(f"training run folder not found: {run_dir}")
    errors = read_table(side["errors"]) if side["errors"].is_file() else None
    annotation_df = read_table(annotation) if annotation else None
    summary = _read_json(side["summary"])
    metrics = _read_json(run_dir / "metrics.json") if run_dir else None
    output = Path(output) if output else Path("reports") / f"{stem}.html"

    labels, class_note = class_labels(table, annotation_df)
    table[CLASS_COL] = labels
    palette = plots.moa_palette(table[CLASS_COL])
    channels = intensity_channels(table.columns)
    stains = stains_for(channels)
    normalized, norm_note = plate_normalize(table)

    timings: dict[str, float] = {}
    sections = []
    builders = [
        ("dataset", lambda: dataset_section(table, errors, annotation_df, class_note, palette)),
        ("intensity", lambda: intensity_section(table, normalized, norm_note, channels, stains, palette)),
        ("examples", lambda: examples_section(table, normalized, channels, stains, palette)),
        ("features", lambda: features_section(normalized)),
        ("models", lambda: models_section(run_dir)),
        ("votes", lambda: votes_section(votes, channels, stains)),
    ]
    for name, build in builders:
        t = time.perf_counter()
        sections.append(build())
        timings[f"{name}_s"] = round(time.perf_counter() - t, 2)
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    prov: dict[str, Any] = {
        "features": str(features.resolve()),
        "training run": str(run_dir.resolve()) if run_dir else "—",
        "votes": str(votes) if votes else "—",
        "annotation": str(annotation) if annotation else "—",
        **(provenance or {}),
        "versions": package_versions(),
        "report timings": timings,
    }
    sections.append(provenance_section(prov, summary, metrics))
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
            title=args.title, provenance={"command": command},
        )  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"moa-features report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
