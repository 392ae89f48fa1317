"""The report's sections: each a function from prepared inputs to a :class:`Section`.

:func:`moa_features.report.build_report` reads the files and calls these in page order:
question (what the numbers mean), dataset, per-channel intensity, example images,
discriminative features, models, phenotypic activity, channel votes, provenance. Every input is
optional: a missing one makes its section say what is absent, never fails the page.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from moa_features import profiling, schema
from moa_features.reports import plots
from moa_features.reports.html import ReportFigure, Section, Table, figure_png, key_value_rows, slug
from moa_features.reports.model_names import MAIN_MODELS, is_chance, model_label, model_order

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


def _wells(table: pd.DataFrame) -> int | None:
    if schema.WELL_ID in table.columns:
        return _n_unique(table, schema.WELL_ID)
    return _n_unique(table, schema.PLATE, schema.WELL)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pm(mean: Any, std: Any) -> str:
    if not _finite(mean):
        return "—"
    return f"{mean:.3f} ± {std:.3f}" if _finite(std) else f"{mean:.3f}"


def _with_ci(value: Any, ci: Any) -> str:
    """``0.912 [0.850, 0.960]``: a figure with its 95 % CI (``[lo, hi]``) when there is one."""
    if not _finite(value):
        return "—"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(v) for v in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def _per_metric(model: Mapping[str, Any], field: str, metric: str) -> Any:
    """``model[field]`` as given, or its entry for ``metric`` when it is a per-metric mapping."""
    value = model.get(field)
    return value.get(metric) if isinstance(value, Mapping) else value


LEVEL_PREFIXES = ("treatment_", "well_")  # metrics.json: site-level keys carry no prefix


def _split_level(key: str) -> tuple[str, str]:
    """``treatment_macro_recall`` -> (``treatment_``, ``macro_recall``); site-level keys -> (``""``, key)."""
    prefix = next((p for p in LEVEL_PREFIXES if key.startswith(p)), "")
    return prefix, key[len(prefix) :]


def metric_ci(model: Mapping[str, Any], key: str) -> Any:
    """The 95 % CI ``[lo, hi]`` of ``key`` (``<key>_ci95`` as train writes it, or ``<key>_ci``)."""
    return model.get(f"{key}_ci95", model.get(f"{key}_ci"))


def metric_p(model: Mapping[str, Any], key: str) -> Any:
    """The permutation p-value of ``key`` (``<key>_p``, or a ``permutation_p`` scalar / per-metric mapping)."""
    return model[f"{key}_p"] if f"{key}_p" in model else _per_metric(model, "permutation_p", key)


def metric_chance(model: Mapping[str, Any], key: str) -> Any:
    """Expected chance of ``key`` from the class priors (``<level>expected_chance[metric]``, or ``expected_chance``)."""
    prefix, base = _split_level(key)
    per_level = model.get(f"{prefix}expected_chance")
    if isinstance(per_level, Mapping) and base in per_level:
        return per_level[base]
    return _per_metric(model, "expected_chance", key)


def _p_value(p: Any) -> str:
    if not _finite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


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
        "dataset",
        "Dataset",
        "Look at how unequal the classes are (the class imbalance every model must cope with) and whether "
        "failed sites pile up on one plate or one kind of error.",
    )
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
        rows.append(
            [
                cls,
                len(g),
                _wells(g) or "—",
                _n_unique(g, schema.PLATE) or "—",
                ", ".join(sorted(g[schema.TREATMENT].astype(str).unique())[:6]) if schema.TREATMENT in g else "—",
            ]
        )
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
        s.add(
            Table(
                cols,
                errors[cols].head(20).astype(str).values.tolist(),
                caption=f"Failed sites and reasons (first {min(20, n_failed)} of {n_failed})",
            )
        )
    if annotation is not None and {"treatment", "moa"} <= set(annotation.columns):
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
            int(shown["needs_review"].astype(str).str.lower().isin({"true", "1"}).sum())
            if "needs_review" in cols
            else 0
        )
        s.add(
            Table(
                cols,
                shown.astype(str).values.tolist(),
                caption=f"Treatment -> MoA annotation with its evidence ({len(shown)} treatments, "
                f"{n_review} flagged for review)",
            )
        )
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
            "Sum of intensity per image",
            fig,
            "Density histograms (each class integrates to 1, so small classes are visible); grey filled: negative "
            "control. Left raw grey-level sums, right the same sites after plate normalisation.",
        )
    else:
        s.add("The table has no Image_Intensity_Sum_<channel> features: the histogram figure is skipped.")
    fig = plots.intensity_violins(table, channels, CLASS_COL, "Mean", normalized, palette, stains)
    _fig(
        s,
        "Mean intensity per image",
        fig,
        "One violin per class (inner bar: quartiles, white dot: median); dashed grey line: the negative "
        "control's median. Left raw, right plate-normalised.",
    )
    if schema.PLATE in table.columns and table[schema.PLATE].nunique() > 1:
        ctrl = table[CLASS_COL] == schema.NEGATIVE_CONTROL_MOA
        if ctrl.any():
            fig = plots.plate_effects(
                table[ctrl], channels, normalized[ctrl] if normalized is not None else None, stains=stains
            )
            _fig(
                s,
                "Negative controls per plate",
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
) -> Section:
    """For each MoA: a typical site's channels above a control site from the same plate."""
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
            moa,
            fig,
            f"Top: {site(i)}, the {moa} site closest to the class's median intensity profile. "
            f"Bottom: {site(j)}, the most typical control on plate {plate}.",
        )
    return s


def features_section(normalized: pd.DataFrame | None, n: int = 30) -> Section:
    """Heatmap of the most discriminative features: robust effect size vs control per MoA."""
    s = Section(
        "features",
        "Discriminative features",
        "Red features are higher than in the negative controls, blue lower; MoAs with similar columns have similar "
        "phenotypes and are the ones a model will confuse.",
    )
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
    _fig(
        s,
        "Most discriminative features",
        plots.effect_heatmap(effects, n),
        "Effect size = (median of the class - median of the controls) / robust SD of the controls, on "
        "plate-normalised features; the features with the largest |effect| in any class, grouped by the class "
        "where each is strongest.",
    )
    rows = []
    for moa in plots.moa_order(effects.index):
        top = effects.loc[moa].dropna().abs().sort_values(ascending=False).head(3).index
        rows.append([moa, *(Markup(f"{f} <em>({effects.at[moa, f]:+.1f})</em>") for f in top)] + [""] * (3 - len(top)))
    s.add(
        Table(
            ["class", "strongest feature", "2nd", "3rd"],
            rows,
            caption="Strongest features per class (effect size in brackets)",
            numeric=[False] * 4,
        )
    )
    return s


# split (normalised: lower case, "_" -> "-") -> (the question it answers, how the test rows are held out)
QUESTIONS = {
    "plate": (
        "treatment recognition",
        "Test wells come from plates the model never saw, but every test treatment was also trained on (on other "
        "plates): the figures say how well a model recognises treatments it knows, not the MoA of a new treatment.",
    ),
    "experiment": (
        "treatment recognition across experiments",
        "Test wells come from experiments (batches) the model never saw, but every test treatment was also trained "
        "on: the figures say how well a model recognises known treatments in a new batch.",
    ),
    "nsc": (
        "MoA of treatments never trained on",
        "Not-same-compound: every concentration of a test treatment is held out together, so each MoA is predicted "
        "for a treatment the model has never seen.",
    ),
    "nsc-plate": (
        "MoA of treatments never trained on, on plates never trained on",
        "Every concentration of a test treatment is held out, and test wells also come from plates no training row "
        "came from.",
    ),
    "nscb": (
        "MoA of treatments never trained on, from batches never trained on",
        "Not-same-compound-or-batch: the test treatment and the batches it was imaged in are held out.",
    ),
}
LABEL_LEVELS = {
    schema.MOA: "mechanism of action",
    "Metadata_pathway": "signalling pathway",
    "Metadata_receptor": "receptor",
    "Metadata_action": "action (agonist, antagonist, modulator)",
    schema.TREATMENT: "treatment",
}
HEADLINE_METRICS = {  # level -> [(metric key, column title)]
    "treatment": [
        ("treatment_macro_recall", "Macro recall (treatment)"),
        ("treatment_accuracy", "Accuracy (treatment)"),
    ],
    "site": [("macro_recall", "Macro recall (site)"), ("accuracy", "Accuracy (site)")],
}


def describe_split(config: Mapping[str, Any]) -> tuple[str, str]:
    """(question, explanation) of a run's split: ``config.question`` when the run recorded one."""
    split = str(config.get("split", "")).lower().replace("_", "-")
    question, how = QUESTIONS.get(split, ("", ""))
    if config.get("question"):
        question = str(config["question"])
    if not question:
        return "not recorded", f"The run's split ({split or 'unknown'}) has no recorded question."
    return question, how


def headline_table(models: Mapping[str, Mapping[str, Any]]) -> Table | None:
    """Headline figures per model with 95 % CI, expected chance and permutation p (treatment level if any)."""
    level = (
        "treatment"
        if any("treatment_macro_recall" in m or "treatment_accuracy" in m for m in models.values())
        else "site"
    )
    metrics = [(k, t) for k, t in HEADLINE_METRICS[level] if any(k in m for m in models.values())]
    if not metrics:
        return None
    columns = ["model"]
    for _key, title in metrics:
        columns += [f"{title} [95% CI]", "expected chance", "permutation p"]
    rows = []
    for name in model_order(list(models)):
        m = models[name]
        row: list[Any] = [model_label(name) + (" (chance reference)" if is_chance(name) else "")]
        for key, _ in metrics:
            chance = metric_chance(m, key)
            row += [
                _with_ci(m.get(key), metric_ci(m, key)),
                f"{chance:.3f}" if _finite(chance) else "—",
                _p_value(metric_p(m, key)),
            ]
        rows.append(row)
    return Table(
        columns, rows, caption=f"Headline figures ({level} level)", numeric=[False] + [True] * (len(columns) - 1)
    )


def question_section(run_dir: Path | None, metrics: Mapping[str, Any] | None) -> Section:
    """What the model figures mean: the question the split answers, the label level, chance and p-values."""
    s = Section(
        "question",
        "What the numbers mean",
        "Read this first: which question the model figures answer, which labels were predicted, and how far each "
        "headline figure is from chance.",
    )
    if run_dir is None:
        s.add("No training run given: this page describes the feature table only (add --run models/RUN).")
        return s
    if metrics is None:
        s.add(f"{run_dir / 'metrics.json'} not found: the run's question and figures are unknown.")
        return s
    config = metrics.get("config") or {}
    question, how = describe_split(config)
    split = config.get("split", "not recorded")
    s.add(Markup("<strong>Question: {}</strong> (split <code>{}</code>). {}").format(question, split, how))
    label = config.get("label")
    if label:
        level = LABEL_LEVELS.get(str(label), str(label).removeprefix("Metadata_"))
        s.add(Markup("<strong>Labels:</strong> {} (column <code>{}</code>).").format(level, label))
    else:
        s.add(f"Labels: the run did not record its label column (config.label); {schema.MOA} is the default.")
    aggregation = config.get("aggregation") or config.get("metric_aggregation")
    if aggregation:
        s.add(f"Aggregation: {aggregation}.")
    models = metrics.get("models") or {}
    table = headline_table(models) if models else None
    if table is None:
        s.add("metrics.json has no model figures.")
        return s
    s.add(table)
    if not any(_finite(metric_p(m, k)) for m in models.values() for k, _ in HEADLINE_METRICS["treatment"]):
        s.add("This run has no permutation null: the p-values are missing, compare with the chance references.")
    return s


def models_table(metrics: Mapping[str, Mapping[str, float]]) -> Table:
    """The comparison table: one row per model, mean ± SD (or [95 % CI]) of the key metrics per level."""
    models = model_order(list(metrics))
    keys = ["macro_recall", "balanced_accuracy", "macro_f1"]
    levels = [("", "site")] + [
        (p, lvl)
        for p, lvl in (("well_", "well"), ("treatment_", "treatment"))
        if any(f"{p}{k}" in metrics[m] for m in models for k in keys)
    ]
    columns = ["model"] + [f"{plots.METRIC_LABELS[k]} ({lvl})" for p, lvl in levels for k in keys]
    best = {}
    for p, _ in levels:
        for k in keys:
            vals = [metrics[m].get(f"{p}{k}") for m in models if not is_chance(m)]
            vals = [v for v in vals if _finite(v)]
            best[p + k] = max(vals) if vals else None
    rows = []
    for m in models:
        row: list[Any] = [model_label(m)]
        for p, _ in levels:
            for k in keys:
                v, ci = metrics[m].get(f"{p}{k}"), metric_ci(metrics[m], f"{p}{k}")
                text = _with_ci(v, ci) if ci is not None else _pm(v, metrics[m].get(f"{p}{k}_std"))
                row.append(Markup("<strong>{}</strong>").format(text) if _finite(v) and v == best[p + k] else text)
        rows.append(row)
    return Table(
        columns,
        rows,
        caption="Model comparison (mean ± SD across held-out folds, or [95% CI]; best in bold)",
        numeric=[False] + [True] * (len(columns) - 1),
    )


def models_section(run_dir: Path | None, metrics: Mapping[str, Any] | None) -> Section:
    """Comparison table and figures of a training run ``models/RUN/`` (each piece optional)."""
    s = Section(
        "models",
        "Models",
        "Compare XGBoost and the ensemble with the Keras CNN baseline on macro recall (every class counts equally), "
        "then see which classes each model misses and confuses.",
    )
    if run_dir is None:
        s.add("No training run given (build the report with --run models/RUN to compare models).")
        return s
    if metrics is None:
        s.add(f"{run_dir / 'metrics.json'} not found: no model comparison.")
    else:
        models = metrics.get("models") or {}
        classes = metrics.get("classes") or []
        preds = run_dir / "predictions.parquet"
        folds = pd.read_parquet(preds, columns=["fold"])["fold"].nunique() if preds.is_file() else None
        chances = [c for m in models.values() if _finite(c := metric_chance(m, "macro_recall"))]
        chance = chances[0] if chances else (1 / len(classes) if classes else None)
        s.add(
            f"Run {run_dir}: {len(classes)} classes"
            + (f", {folds} held-out folds" if folds else "")
            + (f"; chance macro recall {chance:.3f}." if chance is not None else ".")
        )
        if models:
            s.add(models_table(models))
            table = pd.DataFrame(models).T
            _fig(
                s,
                "Model comparison",
                plots.metric_comparison(table),
                "Site-level scores on held-out folds; error bars: SD across folds.",
            )
        recall = metrics.get("per_class_recall") or {}
        shown = {m: v for m, v in recall.items() if not is_chance(m)}
        if shown:
            _fig(
                s,
                "Recall per class",
                plots.per_class_recall(pd.DataFrame(shown)),
                "Fraction of each class's held-out sites predicted correctly, per model.",
            )
        cms = metrics.get("confusion_matrices") or {}
        main = [m for m in MAIN_MODELS if m in cms] or [m for m in model_order(list(cms)) if not is_chance(m)]
        for m in main:
            label = model_label(m)
            _fig(
                s,
                f"Confusion matrix — {label}",
                plots.confusion_matrix(cms[m]["labels"], cms[m]["matrix"], label),
                "Rows: true class; cells: % of the true class's sites predicted as each column (diagonal = recall).",
            )
    imp_path = run_dir / "feature_importance.csv"
    if imp_path.is_file():
        _fig(
            s,
            "Feature importance (XGBoost)",
            plots.feature_importance(pd.read_csv(imp_path)),
            "Mean gain over folds: how much each feature improved the trees' splits.",
        )
    else:
        s.add(f"{imp_path} not found: no feature importance.")
    history = read_json(run_dir / "history.json")
    if history and history.get("cnn"):
        _fig(
            s,
            "CNN training curves",
            plots.training_curves(history["cnn"]),
            "One line per fold; a validation loss rising while training loss falls is over-fitting.",
        )
    else:
        s.add(f"{run_dir / 'history.json'} has no CNN curves (the CNN was not trained in this run).")
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
    _fig(s, "Activity: mAP vs significance", plots.activity_scatter(df, classes, palette, ACTIVITY_Q), caption)
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
        "Channel votes",
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
