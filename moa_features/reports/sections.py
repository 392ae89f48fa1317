"""The report's sections: each a function from prepared inputs to a :class:`Section`.

:func:`moa_features.report.build_report` reads the files and calls these in page order:
question (what the numbers mean), dataset, per-channel intensity, example images,
discriminative features, models, phenotypic activity, channel votes, provenance. The two that
describe a training run (question, models) live in :mod:`moa_features.reports.run_sections`.
Every input is optional: a missing one makes its section say what is absent, never fails the page.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from moa_features import profiling, schema
from moa_features.columns import Columns
from moa_features.reports import plots
from moa_features.reports.html import ReportFigure, Section, Table, figure_png, key_value_rows, slug

CLASS_COL = "Metadata_report_class"  # the class each row is drawn as (MoA, or treatment as fallback)
MAX_EXAMPLES = 30  # MoAs shown in the example-image section


# --------------------------------------------------------------------------- helpers


def _fig(section: Section, title: str, fig: Any, caption: str = "") -> ReportFigure:
    return section.add(ReportFigure(name=slug(title), title=title, png=figure_png(fig), caption=caption))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when the file is absent.

    Raises ``ValueError`` naming the file when it is not a JSON object (e.g. truncated).
    """
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rewrite it (rerun the step that made it)") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, expected an object")
    return value


def read_votes(path: Path, channels: Sequence[str]) -> pd.DataFrame:
    """Per-MoA channel vote counts (``moa, channel, votes``) from the app's vote store."""
    from moa_features.votes import VoteStore

    return VoteStore(path).summary(channels=channels)


def _n_unique(table: pd.DataFrame, *cols: str) -> int | None:
    if not all(c in table.columns for c in cols):
        return None
    return int(table[list(cols)].drop_duplicates().shape[0])


def _wells(table: pd.DataFrame, plate: str = schema.PLATE) -> int | None:
    if schema.WELL_ID in table.columns:
        return _n_unique(table, schema.WELL_ID)
    return _n_unique(table, plate, schema.WELL)


# --------------------------------------------------------------------------- sections


def dataset_section(
    table: pd.DataFrame,
    errors: pd.DataFrame | None,
    annotation: pd.DataFrame | None,
    class_note: str,
    palette: Mapping[str, str],
    columns: Columns | None = None,
    unit: str = "sites",
) -> Section:
    """Counts of rows (sites or wells)/wells/plates/experiments/treatments/controls/MoAs, class sizes, failures."""
    columns = columns or Columns()
    s = Section(
        "dataset",
        "Dataset",
        "Look at how unequal the classes are (the class imbalance every model must cope with) and whether "
        "failed sites pile up on one plate or one kind of error.",
    )
    n_failed = 0 if errors is None else len(errors)
    controls = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
    counts = [
        [f"{unit} measured", len(table)],
        ["wells", _wells(table, columns.plate)],
        ["plates", _n_unique(table, columns.plate)],
        ["experiments", _n_unique(table, columns.experiment)],
        ["treatments", _n_unique(table, columns.treatment)],
        [f"negative-control {unit}", int(controls.sum())],
        ["classes (incl. negative control)", int(table[CLASS_COL].nunique())],
        ["sites that failed", n_failed if errors is not None else "no errors table"],
    ]
    s.add(Table(["", "count"], [[k, "—" if v is None else v] for k, v in counts], caption="Screen at a glance"))
    s.add(class_note)
    s.add(f"Negative controls: {columns.describe_control()} ({int(controls.sum())} {unit}).")
    _fig(
        s,
        f"{unit.capitalize()} per class ({unit[:-1]} level)",
        plots.class_counts(table[CLASS_COL], palette, title=f"{unit.capitalize()} per class", unit=unit),
        f"Number of {unit} per class.",
    )
    rows = []
    treatment = columns.treatment
    for cls, g in table.groupby(CLASS_COL, sort=False):
        names = sorted(g[treatment].astype(str).unique()) if treatment in g else []
        shown = ", ".join(names[:6]) + (f" (+{len(names) - 6})" if len(names) > 6 else "")
        rows.append([cls, len(g), _wells(g, columns.plate) or "—", _n_unique(g, columns.plate) or "—", shown or "—"])
    order = {m: i for i, m in enumerate(plots.moa_order(table[CLASS_COL]))}
    rows.sort(key=lambda r: order[r[0]])
    s.add(Table(["class", unit, "wells", "plates", "treatments (first 6)"], rows, caption="Per class"))
    if errors is None:
        s.add("No errors table beside the feature table: failed sites are unknown.")
    elif n_failed == 0:
        s.add("Every site was read and measured.")
    else:
        by = errors.groupby("stage").size() if "stage" in errors.columns else pd.Series({"?": n_failed})
        s.add(Table(["stage", "failed sites"], [[k, int(v)] for k, v in by.items()], caption="Failed sites by stage"))
        cols = [c for c in (schema.SITE_ID, "stage", "error") if c in errors.columns]
        s.add(
            Table(
                cols,
                errors[cols].head(20).astype(str).values.tolist(),
                caption=f"Failed sites and reasons (first {min(20, n_failed)} of {n_failed})",
            )
        )
    if annotation is not None and {"treatment", "moa"} <= set(annotation.columns):
        _annotation_tables(s, annotation)
    return s


def _annotation_tables(s: Section, annotation: pd.DataFrame) -> None:
    """How treatments were mapped to MoAs: counts per source and the mapping with its evidence."""
    if "source" in annotation.columns:
        by_source = annotation.groupby("source").size()
        s.add(
            Table(
                ["annotation source", "treatments"],
                [[k, int(v)] for k, v in by_source.items()],
                caption="How treatments were mapped to MoAs",
            )
        )
    cols = [
        c
        for c in ("treatment", "moa", "source", "uniprot_accession", "gene", "evidence", "needs_review")
        if c in annotation.columns
    ]
    shown = annotation.sort_values(["moa", "treatment"])[cols].fillna("")
    n_review = (
        int(shown["needs_review"].astype(str).str.lower().isin({"true", "1"}).sum()) if "needs_review" in cols else 0
    )
    s.add(
        Table(
            cols,
            shown.astype(str).values.tolist(),
            caption=f"Treatment -> MoA annotation with its evidence ({len(shown)} treatments, "
            f"{n_review} flagged for review)",
        )
    )


def intensity_section(
    table: pd.DataFrame,
    normalized: pd.DataFrame | None,
    norm_note: str,
    channels: Sequence[str],
    stains: Mapping[str, str],
    palette: Mapping[str, str],
    columns: Columns | None = None,
) -> Section:
    """The original analysis' figures: histograms of the per-image sum, violins of the mean."""
    plate = (columns or Columns()).plate
    s = Section(
        "intensity",
        "Per-channel intensity",
        "Compare each MoA with the grey negative control: a shift seen raw but gone after plate normalisation "
        "is a batch effect; a shift that survives normalisation is the treatment.",
    )
    if not channels:
        s.add("The table has no Image_Intensity_Mean_<channel> features: no intensity figures.")
        return s
    s.add(norm_note)
    if all(f"Image_Intensity_Sum_{c}" in table.columns for c in channels):
        fig = plots.intensity_histograms(table, channels, CLASS_COL, "Sum", normalized, palette, stains)
        _fig(
            s,
            "Sum of intensity per image (site level)",
            fig,
            "Density histograms (each class integrates to 1, so small classes are visible); grey filled: negative "
            "control. Left raw grey-level sums, right the same sites after plate normalisation.",
        )
    else:
        s.add("The table has no Image_Intensity_Sum_<channel> features: the histogram figure is skipped.")
    fig = plots.intensity_violins(table, channels, CLASS_COL, "Mean", normalized, palette, stains)
    _fig(
        s,
        "Mean intensity per image (site level)",
        fig,
        "One violin per class (inner bar: quartiles, white dot: median); dashed grey line: the negative "
        "control's median. Left raw, right plate-normalised.",
    )
    if plate in table.columns and table[plate].nunique() > 1:
        ctrl = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
        if ctrl.any():
            fig = plots.plate_effects(
                table[ctrl],
                channels,
                normalized[ctrl] if normalized is not None else None,
                plate_col=plate,
                stains=stains,
            )
            _fig(
                s,
                "Negative controls per plate (site level)",
                fig,
                "Mean intensity of the negative-control sites of each plate: differences between plates are batch "
                "effects (left); after plate normalisation every plate is centred on 0 (right).",
            )
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
    columns: Columns | None = None,
) -> Section:
    """For each MoA: a typical site's channels above a control site from the same plate."""
    columns = columns or Columns()
    plate_col, treatment_col = columns.plate, columns.treatment
    s = Section(
        "examples",
        "Example images",
        "Each panel shows a typical site of one MoA above a negative control from the same plate at the same "
        "contrast per channel, so differences in brightness, shape or texture are the treatment, not the display.",
    )
    path_cols = [f"{schema.PATH_PREFIX}{c}" for c in channels]
    missing = [c for c in path_cols if c not in table.columns]
    if not channels or missing:
        s.add(f"The table has no image path column(s) {missing or path_cols}: no example images.")
        return s
    if plate_col not in table.columns:
        s.add(f"The table has no plate column ({plate_col}): controls cannot be matched by plate.")
        return s
    profile = normalized if normalized is not None else table
    cols = [f"Image_Intensity_Mean_{c}" for c in channels]
    ctrl = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
    control_plates = set(table.loc[ctrl, plate_col])
    classes = [m for m in plots.moa_order(table[CLASS_COL]) if m != schema.NEGATIVE_CONTROL_MOA]
    if not ctrl.any():
        s.add("No negative-control sites: nothing to compare the treated sites with.")
        return s
    if len(classes) > MAX_EXAMPLES:
        s.add(f"{len(classes)} classes: showing the first {MAX_EXAMPLES} in alphabetical order.")
    for moa in classes[:MAX_EXAMPLES]:
        rows = profile[(table[CLASS_COL] == moa) & table[plate_col].isin(control_plates)]
        if rows.empty:
            s.add(f"{moa}: no site on a plate that has negative controls.")
            continue
        i = _representative(rows, cols)
        plate = table.at[i, plate_col]
        j = _representative(profile[ctrl & (table[plate_col] == plate)], cols)
        try:
            treated, control = _read_site(table.loc[i], channels), _read_site(table.loc[j], channels)
        except OSError as exc:
            s.add(f"{moa}: cannot read the example images: {exc}")
            continue
        if treated.shape != control.shape:
            s.add(f"{moa}: treated {treated.shape} and control {control.shape} images differ in shape; skipped.")
            continue
        site = lambda k: str(table.at[k, schema.SITE_ID]) if schema.SITE_ID in table.columns else str(k)  # noqa: E731
        treatment = f" ({table.at[i, treatment_col]})" if treatment_col in table.columns else ""
        fig = plots.channel_panel(
            treated,
            control,
            channels,
            f"{moa}{treatment}\n{site(i)}",
            f"Negative control\n{site(j)}",
            stains,
            palette[moa],
        )
        _fig(
            s,
            f"{moa} (example site)",
            fig,
            f"Top: {site(i)}, the {moa} site closest to the class's median intensity profile. "
            f"Bottom: {site(j)}, the most typical control on plate {plate}.",
        )
    return s


EFFECT_CLIP = 20.0  # robust SDs: effect sizes beyond are shown as ">= 20" (the spread of a few wells can be ~0)


def _effect_text(value: float) -> str:
    return f"{'≥' if value > 0 else '≤'} {value:+.0f}" if abs(value) >= EFFECT_CLIP else f"{value:+.1f}"


def features_section(normalized: pd.DataFrame | None, unit: str = "sites", n: int = 30) -> Section:
    """Heatmap of the most discriminative features: robust effect size vs control per class, clipped at ±20."""
    s = Section(
        "features",
        "Discriminative features",
        "Red features are higher than in the negative controls, blue lower; classes with similar columns have "
        "similar phenotypes and are the ones a model will confuse.",
    )
    if normalized is None:
        s.add("No plate-normalised table (no plate column): effect sizes are not computed.")
        return s
    try:
        with warnings.catch_warnings():  # features NaN in every row of a class are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            effects = profiling.effect_sizes(normalized, group_col=CLASS_COL)
    except (KeyError, ValueError) as exc:
        s.add(f"Effect sizes not computed: {exc}.")
        return s
    effects = effects.replace([np.inf, -np.inf], np.nan).dropna(axis=1, how="all").clip(-EFFECT_CLIP, EFFECT_CLIP)
    if effects.empty:
        s.add("Only negative controls in the table: no treatment to compare with them.")
        return s
    _fig(
        s,
        f"Most discriminative features (class level, from {unit})",
        plots.effect_heatmap(effects, n),
        f"Effect size = (median of the class's {unit} - median of the controls) / robust SD of the controls, on "
        f"plate-normalised features, clipped at ±{EFFECT_CLIP:.0f} (a spread from a few control wells can be "
        "close to 0); the features with the largest |effect| in any class, grouped by the class where each is "
        "strongest.",
    )
    rows = []
    for moa in plots.moa_order(effects.index):
        top = effects.loc[moa].dropna().abs().sort_values(ascending=False).head(3).index
        cells = [Markup("{} <em>({})</em>").format(f, _effect_text(effects.at[moa, f])) for f in top]
        rows.append([moa, *cells] + [""] * (3 - len(top)))
    s.add(
        Table(
            ["class", "strongest feature", "2nd", "3rd"],
            rows,
            caption="Strongest features per class (effect size in brackets)",
            numeric=[False] * 4,
        )
    )
    return s


ACTIVITY_COLUMNS = ("treatment", "mean_average_precision")
ACTIVITY_Q = 0.05  # significance threshold drawn on the activity scatter (copairs' convention)


def activity_section(path: Path | None, treatment_class: Mapping[str, str], palette: Mapping[str, str]) -> Section:
    """Phenotypic activity per treatment (mAP of replicates against controls), from ``activity.csv``."""
    s = Section(
        "activity",
        "Phenotypic activity",
        "A treatment is active when its replicate wells retrieve each other better than negative-control wells do "
        "(mean average precision, permutation p-value, corrected for multiple testing). An inactive treatment has "
        "no phenotype to read an MoA from.",
    )
    if path is None or not path.is_file():
        where = f"{path} not found" if path is not None else "No activity table"
        s.add(f"{where}: run `moa-features activity TABLE -o models/RUN/activity.csv` to add this section.")
        return s
    df = pd.read_csv(path)
    p_col = next((c for c in ("corrected_p_value", "p_value") if c in df.columns), None)
    missing = [c for c in ACTIVITY_COLUMNS if c not in df.columns] + ([] if p_col else ["corrected_p_value"])
    if missing:
        s.add(
            f"{path} lacks column(s) {missing} (expected treatment, n_replicates, mean_average_precision, "
            "p_value, corrected_p_value, active): no activity figure."
        )
        return s
    if "active" not in df.columns:
        df["active"] = df[p_col] < ACTIVITY_Q
    df["active"] = df["active"].astype(str).str.lower().isin({"true", "1", "1.0"})
    classes = df["treatment"].astype(str).map(treatment_class) if treatment_class else None
    n_active = int(df["active"].sum())
    s.add(
        f"{n_active} of {len(df)} treatments active ({p_col.replace('_', ' ')} < {ACTIVITY_Q:g} where not "
        f"given by the table); median mAP {df['mean_average_precision'].median():.3f}. Source: {path}."
    )
    caption = (
        "One dot per treatment: filled active, hollow inactive"
        + (", coloured by class" if classes is not None else "")
        + f"; dashed line: {p_col.replace('_', ' ')} = {ACTIVITY_Q:g}."
    )
    scatter = plots.activity_scatter(df, classes, palette, ACTIVITY_Q)
    _fig(s, "Activity: mAP vs significance (treatment level)", scatter, caption)
    inactive = df[~df["active"]].sort_values("mean_average_precision")
    if len(inactive):
        cols = [c for c in ("treatment", "n_replicates", "mean_average_precision", p_col) if c in df.columns]
        rows = [
            [*(r[c] if not isinstance(r[c], float) else f"{r[c]:.3g}" for c in cols)]
            for _, r in inactive[cols].head(20).iterrows()
        ]
        if classes is not None:
            cols, rows = ["class", *cols], [[treatment_class.get(str(r[0]), "—"), *r] for r in rows]
        s.add(
            Table(
                cols,
                rows,
                caption=f"Inactive treatments (first {min(20, len(inactive))} of {len(inactive)}, lowest mAP first)",
            )
        )
    return s


def votes_section(votes: Path | None, channels: Sequence[str], stains: Mapping[str, str]) -> Section:
    """People's channel choices per MoA from the app's vote store."""
    s = Section(
        "votes",
        "Channel votes",
        "Channels people pick most often for an MoA are where they see its phenotype; compare them with the "
        "feature heatmap above.",
    )
    if votes is None or not votes.is_file():
        s.add("No vote store (collect votes with `moa-features app`): no channel votes yet.")
        return s
    summary = read_votes(votes, channels)
    if summary.empty or summary["votes"].sum() == 0:
        s.add(f"The vote store {votes} has no votes yet.")
        return s
    all_channels = list(dict.fromkeys(list(channels) + list(summary["channel"])))
    _fig(
        s,
        "Channel votes (class level)",
        plots.channel_votes(summary, all_channels, stains),
        f"From {votes}: each cell counts how often people chose that channel for that MoA.",
    )
    return s


def provenance_section(
    provenance: Mapping[str, Any], summary: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None
) -> Section:
    """Command lines, versions, seed and timings of the extraction, training and report."""
    s = Section(
        "provenance", "Provenance", "Everything needed to reproduce this page: commands, versions, seeds, timings."
    )
    s.add(Table(["", "value"], key_value_rows(provenance), caption="Report", numeric=[False, False]))
    if summary:
        s.add(
            Table(
                ["", "value"],
                key_value_rows(summary),
                caption="Feature extraction (summary.json)",
                numeric=[False, False],
            )
        )
    if metrics:
        info = {k: metrics[k] for k in ("config", "timings") if k in metrics}
        if info:
            s.add(
                Table(
                    ["", "value"], key_value_rows(info), caption="Training run (metrics.json)", numeric=[False, False]
                )
            )
    return s
