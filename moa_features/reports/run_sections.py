"""The report's sections about a training run: what its figures mean, and how its models compare.

Everything is said at the level the run's headline is at: treatments (one prediction per held-out
treatment, probabilities averaged site -> well -> treatment) when the run held out treatments,
with every figure and table labelled with its level. Reads what ``moa-features train`` writes
(``metrics.json``, ``treatment_predictions.csv``, ``predictions.parquet``, ``history.json``,
``feature_importance.csv``); wording follows the models the run actually trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from moa_features import schema
from moa_features.reports import plots
from moa_features.reports.html import Section, Table
from moa_features.reports.model_names import MAIN_MODELS, is_chance, model_label, model_order
from moa_features.reports.sections import _fig, read_json

TREATMENT_TABLE = "treatment_predictions.csv"
MAX_TABLE_MODELS = 3  # model columns of the per-treatment table


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
LEVEL_KEYS = ["macro_recall", "balanced_accuracy", "macro_f1", "accuracy"]
SYNTHETIC_NOTE = (
    "This screen is synthetic (the built-in demo screen): each MoA's phenotype was drawn into the images and its "
    "classes are separable by construction. The figures show that the pipeline works end to end, not how well the "
    "MoA of a real treatment can be predicted; the real-data evidence is BBBC021 and the CellProfiler comparisons "
    "(README, benchmarks/README.md)."
)


def describe_split(config: Mapping[str, Any]) -> tuple[str, str]:
    """(question, explanation) of a run's split: ``config.question`` when the run recorded one."""
    split = str(config.get("split", "")).lower().replace("_", "-")
    question, how = QUESTIONS.get(split, ("", ""))
    if config.get("question"):
        question = str(config["question"])
    if not question:
        return "not recorded", f"The run's split ({split or 'unknown'}) has no recorded question."
    return question, how


def headline_level(models: Mapping[str, Mapping[str, Any]]) -> str:
    """``treatment`` when the run has treatment-level figures, else ``site``."""
    has = any("treatment_macro_recall" in m or "treatment_accuracy" in m for m in models.values())
    return "treatment" if has else "site"


def best_model(models: Mapping[str, Mapping[str, Any]], key: str) -> str | None:
    """The real (non-chance) model with the highest ``key``."""
    scored = {n: m.get(key) for n, m in models.items() if not is_chance(n) and _finite(m.get(key))}
    return max(scored, key=lambda n: scored[n]) if scored else None


def _bold_if(text: str, bold: bool) -> Any:
    return Markup("<strong>{}</strong>").format(text) if bold else text


def headline_table(models: Mapping[str, Mapping[str, Any]]) -> Table | None:
    """Headline figures per model with 95 % CI, expected chance and permutation p (treatment level if any).

    The best real model on each figure is in bold (the same model the comparison table marks).
    """
    level = headline_level(models)
    metrics = [(k, t) for k, t in HEADLINE_METRICS[level] if any(k in m for m in models.values())]
    if not metrics:
        return None
    columns = ["model"]
    for _key, title in metrics:
        columns += [f"{title.split(' (')[0]} [95% CI]", "chance", "p"]
    rows = []
    for name in model_order(list(models)):
        m = models[name]
        row: list[Any] = [model_label(name) + (" (chance reference)" if is_chance(name) else "")]
        for key, _ in metrics:
            chance = metric_chance(m, key)
            row += [
                _bold_if(_with_ci(m.get(key), metric_ci(m, key)), name == best_model(models, key)),
                f"{chance:.3f}" if _finite(chance) else "—",
                _p_value(metric_p(m, key)),
            ]
        rows.append(row)
    return Table(
        columns,
        rows,
        caption=f"Headline figures ({level} level; chance: expected from the class priors; p: permutation test; "
        "best in bold)",
        numeric=[False] + [True] * (len(columns) - 1),
    )


def _is_synthetic(config: Mapping[str, Any], table: pd.DataFrame | None) -> bool:
    """Whether the run or table says it is the synthetic demo screen (``config.synthetic``, ``Metadata_dataset``)."""
    if config.get("synthetic"):
        return True
    column = "Metadata_dataset"
    if table is None or column not in table.columns:
        return False
    return table[column].astype(str).str.contains("synthetic|demo", case=False).any()


def training_warnings(metrics: Mapping[str, Any]) -> list[str]:
    """What training warned about, in words: unscored classes, dropped treatments, excluded labels."""
    config = metrics.get("config") or {}
    out = []
    unscored = [c for c in metrics.get("unscored_classes") or [] if c not in (metrics.get("unscored_reasons") or {})
                or not str(metrics["unscored_reasons"][c]).startswith("no held-out truth")]  # fmt: skip
    if unscored:
        out.append(
            f"{len(unscored)} class(es) cannot be scored ({', '.join(map(str, unscored))}): their held-out treatments "
            "were tested in folds whose training had none of that class (under a held-out-treatment split: fewer "
            "than 2 treatments). They stay in training but are left out of every figure."
        )
    reasons = metrics.get("unscored_reasons") or {}
    never = [c for c, why in reasons.items() if why.startswith("no held-out truth")]
    if never:
        out.append(f"Trained on but never held out, so not scored: {', '.join(never)}.")
    scored = metrics.get("scored_classes")
    if scored:
        out.append(f"Macro statistics average over the {len(scored)} classes with held-out truth.")
    if metrics.get("negative_control"):
        out.append(str(metrics["negative_control"]))
    dropped = config.get("inactive_treatments_dropped") or []
    if dropped:
        out.append(f"--active-only: {len(dropped)} inactive treatment(s) were left out: {', '.join(dropped[:10])}.")
    excluded = config.get("exclude_labels") or []
    if excluded:
        out.append(f"Labels excluded from training and scoring: {', '.join(map(str, excluded))}.")
    return out


def _absent(s: Section, run_dir: Path | None, metrics: Mapping[str, Any] | None, no_run: str, no_metrics: str) -> bool:
    """Say what is missing (no run, or no ``metrics.json``) and return True, else False."""
    if run_dir is None:
        s.add(f"No training run given: {no_run}.")
    elif metrics is None:
        s.add(f"{run_dir / 'metrics.json'} not found: {no_metrics}.")
    return run_dir is None or metrics is None


def question_section(
    run_dir: Path | None,
    metrics: Mapping[str, Any] | None,
    origin: str | None = None,
    table: pd.DataFrame | None = None,
) -> Section:
    """What the model figures mean: the question the split answers, the label level, chance, p-values, warnings."""
    s = Section(
        "question",
        "What the numbers mean",
        "Read this first: which question the model figures answer, which labels were predicted, and how far each "
        "headline figure is from chance.",
    )
    no_run = "this page describes the feature table only (add --run models/RUN)"
    if _absent(s, run_dir, metrics, no_run, "the run's question and figures are unknown"):
        return s
    config = metrics.get("config") or {}
    question, how = describe_split(config)
    split = config.get("split", "not recorded")
    s.add(Markup("<strong>Question: {}</strong> (split <code>{}</code>). {}").format(question, split, how))
    if _is_synthetic(config, table):
        s.add(Markup("<strong>Synthetic screen.</strong> {}").format(SYNTHETIC_NOTE))
    label = config.get("label")
    if label:
        level = LABEL_LEVELS.get(str(label), str(label).removeprefix("Metadata_"))
        s.add(Markup("<strong>Labels:</strong> {} (column <code>{}</code>).").format(level, label))
    else:
        s.add(f"Labels: the run did not record its label column (config.label); {schema.MOA} is the default.")
    if config.get("control"):
        s.add(f"Negative controls: {config['control']}.")
    aggregation = config.get("aggregation") or config.get("metric_aggregation")
    if aggregation:
        s.add(f"Aggregation: {aggregation}.")
    if origin:
        s.add(origin)
    models = metrics.get("models") or {}
    headline = headline_table(models) if models else None
    if headline is None:
        s.add("metrics.json has no model figures.")
        return s
    s.add(headline)
    if not any(_finite(metric_p(m, k)) for m in models.values() for k, _ in HEADLINE_METRICS["treatment"]):
        s.add("This run has no permutation null: the p-values are missing, compare with the chance references.")
    for warning in training_warnings(metrics):
        s.add(Markup("<strong>Training warned:</strong> {}").format(warning))
    ensemble = metrics.get("ensemble") or {}
    for key in ("embedding", "note"):
        if ensemble.get(key):
            s.add(f"Ensemble: {ensemble[key]}.".replace("..", "."))
    return s


def models_table(metrics: Mapping[str, Mapping[str, Any]], level: str = "treatment") -> Table:
    """One row per model: the four scores at ``level`` with their 95 % CI (or ± SD); best real model in bold."""
    prefix = "" if level == "site" else f"{level}_"
    models = model_order(list(metrics))
    keys = [k for k in LEVEL_KEYS if any(f"{prefix}{k}" in metrics[m] for m in models)]
    rows = []
    for m in models:
        row: list[Any] = [model_label(m) + (" (chance reference)" if is_chance(m) else "")]
        for k in keys:
            v, ci = metrics[m].get(f"{prefix}{k}"), metric_ci(metrics[m], f"{prefix}{k}")
            text = _with_ci(v, ci) if ci is not None else _pm(v, metrics[m].get(f"{prefix}{k}_std"))
            row.append(_bold_if(text, m == best_model(metrics, f"{prefix}{k}")))
        rows.append(row)
    return Table(
        ["model", *(plots.METRIC_LABELS[k] for k in keys)],
        rows,
        caption=f"Model comparison at the {level} level ([95% CI], or ± SD across folds; best in bold)",
        numeric=[False] + [True] * len(keys),
    )


def other_levels_table(metrics: Mapping[str, Mapping[str, Any]], headline: str) -> Table | None:
    """Macro recall of every model at the levels other than the headline's (one column per level)."""
    levels = [lvl for lvl in ("well", "site") if lvl != headline]
    keys = {lvl: "macro_recall" if lvl == "site" else f"{lvl}_macro_recall" for lvl in levels}
    levels = [lvl for lvl in levels if any(keys[lvl] in m for m in metrics.values())]
    if not levels:
        return None

    def cell(m: Mapping[str, Any], key: str) -> str:
        ci = metric_ci(m, key)
        return _with_ci(m.get(key), ci) if ci is not None else _pm(m.get(key), m.get(f"{key}_std"))

    rows = [[model_label(m), *(cell(metrics[m], keys[lvl]) for lvl in levels)] for m in model_order(list(metrics))]
    return Table(
        ["model", *(f"Macro recall ({lvl} level)" for lvl in levels)],
        rows,
        caption="The same held-out predictions scored per well and per site (every site or well counts, so "
        "treatments with many sites weigh more)",
        numeric=[False] + [True] * len(levels),
    )


def _level_frame(models: Mapping[str, Mapping[str, Any]], level: str) -> pd.DataFrame:
    """The models block with the ``level`` prefix removed (for the comparison bar chart)."""
    prefix = "" if level == "site" else f"{level}_"
    rows = {}
    for name, m in models.items():
        if prefix:
            rows[name] = {k[len(prefix) :]: v for k, v in m.items() if k.startswith(prefix)}
        else:
            rows[name] = {k: v for k, v in m.items() if not k.startswith(("well_", "treatment_"))}
    return pd.DataFrame(rows).T


def trained_models(metrics: Mapping[str, Any]) -> list[str]:
    """The real models of the run (chance references left out), in display order."""
    return [m for m in model_order(list(metrics.get("models") or {})) if not is_chance(m)]


def _prediction_cell(row: pd.Series) -> Any:
    mark = "✓" if bool(row["correct"]) else "✗"
    return Markup("{} <em>({:.2f})</em> {}").format(row["predicted_moa"], float(row["probability"]), mark)


def _yes_no(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "—"
    return "yes" if str(value).lower() in ("true", "1", "1.0") else "no"


def treatment_table(path: Path, models: Sequence[str], level: str) -> Table | str:
    """The per-treatment answer: true MoA, each shown model's prediction (probability, ✓/✗), activity.

    ``models``: at most :data:`MAX_TABLE_MODELS`, best first; rows mispredicted by the first come first.
    """
    df = pd.read_csv(path)
    needed = {"model", "treatment", "true_moa", "predicted_moa", "probability", "correct"}
    if missing := sorted(needed - set(df.columns)):
        return f"{path} lacks column(s) {missing}: no per-treatment table."
    shown = [m for m in models if m in set(df["model"])][:MAX_TABLE_MODELS]
    if not shown:
        return f"{path} has no predictions of the models {list(models)}."
    repeated = "fold" in df.columns and df.duplicated(["model", "treatment"]).any()  # plate splits: one row per fold
    keys = ["treatment", "fold"] if repeated else ["treatment"]
    first = df[df["model"] == shown[0]].set_index(keys)
    rows = []
    for key, base in first.sort_values(["correct"], kind="stable").iterrows():
        scored = bool(base.get("scored", True)) if str(base.get("scored", "True")).lower() != "false" else False
        truth = base["true_moa"] if scored else Markup("{} <em>(not scored)</em>").format(base["true_moa"])
        cells: list[Any] = [*(key if isinstance(key, tuple) else (key,)), truth, _yes_no(base.get("active"))]
        for m in shown:
            other = df[(df["model"] == m)].set_index(keys)
            cells.append(_prediction_cell(other.loc[key]) if key in other.index else "—")
        rows.append(cells)
    n_wrong = int((~first["correct"].astype(bool)).sum())
    return Table(
        [*keys, "true MoA", "active", *(f"{model_label(m)}: predicted (probability)" for m in shown)],
        rows,
        caption=f"Every held-out treatment ({level} level): {n_wrong} of {len(first)} mispredicted by "
        f"{model_label(shown[0])} (listed first); ✓ correct, ✗ wrong. Also in {path.name}.",
        numeric=[False] * (len(keys) + 2 + len(shown)),
    )


def ensemble_table(ensemble: Mapping[str, Any]) -> Table | None:
    """Per member of the ensemble: its weight over the outer folds (mean, range) and how often it was the fallback."""
    folds = [f for f in ensemble.get("folds") or [] if isinstance(f.get("weights"), Mapping)]
    if not folds:
        return None
    weights = pd.DataFrame([f["weights"] for f in folds]).fillna(0.0)
    fallback = pd.Series([f.get("fallback") for f in folds]).value_counts()
    rows = [
        [model_label(str(m)), f"{w.mean():.2f}", f"{w.min():.2f} – {w.max():.2f}", int(fallback.get(m, 0))]
        for m, w in weights.items()
    ]
    return Table(
        ["member", "mean weight", "range over folds", "folds where the ensemble is this member alone"],
        rows,
        caption=f"Ensemble weights chosen on each fold's inner validation ({len(folds)} outer folds)",
        numeric=[False, True, True, True],
    )


def _run_line(run_dir: Path, metrics: Mapping[str, Any]) -> str:
    models = metrics.get("models") or {}
    classes = metrics.get("classes") or []
    preds = run_dir / "predictions.parquet"
    folds = pd.read_parquet(preds, columns=["fold"])["fold"].nunique() if preds.is_file() else None
    chances = [c for m in models.values() if _finite(c := metric_chance(m, "treatment_macro_recall"))]
    chances = chances or [c for m in models.values() if _finite(c := metric_chance(m, "macro_recall"))]
    chance = chances[0] if chances else (1 / len(classes) if classes else None)
    return (
        f"Run {run_dir}: {len(classes)} classes"
        + (f", {folds} held-out folds" if folds else "")
        + (f"; chance macro recall {chance:.3f}." if chance is not None else ".")
    )


def _model_figures(s: Section, metrics: Mapping[str, Any], level: str) -> None:
    """Bar chart, recall per class and confusion matrices, all at ``level`` (metrics.json computes them there)."""
    models = metrics.get("models") or {}
    frame = _level_frame(models, level)
    if any(k in frame.columns for k in LEVEL_KEYS):
        _fig(
            s,
            f"Model comparison ({level} level)",
            plots.metric_comparison(frame, level=level),
            f"{level.capitalize()}-level scores of the held-out predictions; error bars: 95% CI where computed, "
            "else SD across folds.",
        )
    recall = {m: v for m, v in (metrics.get("per_class_recall") or {}).items() if not is_chance(m)}
    if recall:
        _fig(
            s,
            f"Recall per class ({level} level)",
            plots.per_class_recall(pd.DataFrame(recall), level=level),
            f"Fraction of each class's held-out {level}s predicted correctly, per model.",
        )
    cms = metrics.get("confusion_matrices") or {}
    main = [m for m in MAIN_MODELS if m in cms] or [m for m in model_order(list(cms)) if not is_chance(m)]
    for m in main:
        label = model_label(m)
        _fig(
            s,
            f"Confusion matrix — {label} ({level} level)",
            plots.confusion_matrix(cms[m]["labels"], cms[m]["matrix"], label),
            f"Rows: true class; cells: % of the true class's held-out {level}s predicted as each column "
            "(diagonal = recall).",
        )


def models_section(run_dir: Path | None, metrics: Mapping[str, Any] | None) -> Section:
    """Comparison tables and figures of a training run ``models/RUN/`` at the headline's level (each piece optional)."""
    trained = trained_models(metrics or {})
    names = ", ".join(model_label(m) for m in trained) or "the models"
    s = Section(
        "models",
        "Models",
        f"Compare {names} on held-out treatments (macro recall: every class counts equally), then see which "
        "treatments each model gets wrong and which classes it confuses.",
    )
    if _absent(s, run_dir, metrics, "build the report with --run models/RUN to compare models", "no model comparison"):
        return s
    models = metrics.get("models") or {}
    level = headline_level(models)
    s.add(_run_line(run_dir, metrics))
    if models:
        s.add(models_table(models, level))
        if (other := other_levels_table(models, level)) is not None:
            s.add(other)
        _model_figures(s, metrics, level)
    if (ens := ensemble_table(metrics.get("ensemble") or {})) is not None:
        s.add(ens)
    path = run_dir / TREATMENT_TABLE
    if path.is_file():
        key = "treatment_macro_recall" if level == "treatment" else "macro_recall"
        order = sorted(trained, key=lambda m: -(models[m].get(key) or 0) if _finite(models[m].get(key)) else 1)
        s.add(treatment_table(path, order, level))
    else:
        s.add(f"{path} not found (runs before per-treatment tables): no per-treatment predictions.")
    _extras(s, run_dir, trained)
    return s


def _extras(s: Section, run_dir: Path, trained: Sequence[str]) -> None:
    """Feature importance (when XGBoost trained) and CNN training curves (when a CNN trained)."""
    imp_path = run_dir / "feature_importance.csv"
    if imp_path.is_file():
        _fig(
            s,
            "Feature importance (XGBoost, training-row level)",
            plots.feature_importance(pd.read_csv(imp_path)),
            "Mean gain over folds: how much each feature improved the trees' splits on the training rows.",
        )
    elif "xgboost" in trained:
        s.add(f"{imp_path} not found: no feature importance.")
    history = read_json(run_dir / "history.json")
    if history and history.get("cnn"):
        _fig(
            s,
            "CNN training curves (epoch level)",
            plots.training_curves(history["cnn"]),
            "One line per fold; a validation loss rising while training loss falls is over-fitting.",
        )
