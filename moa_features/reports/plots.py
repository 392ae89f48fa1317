"""Report figures: small functions, table (or array) in, :class:`matplotlib.figure.Figure` out.

Every function draws on the Agg backend and returns a new figure (the caller saves and closes
it). MoA colours come from one mapping, :func:`moa_palette`, so a class has the same colour in
every figure; ``Negative control`` is always the same grey. Colours are Paul Tol's
colour-blind-safe "muted" and "light" sets. Figures are sized by the number of classes and
long class names are wrapped and rotated so 15+ classes stay readable.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from moa_features import schema
from moa_features.display import contrast_limits, downsample
from moa_features.reports.model_names import MODEL_COLORS, model_label, model_order, model_palette

CONTROL_COLOR = "#888888"
# Paul Tol's colour-blind-safe qualitative sets: "muted" (9), then "light" (8) reordered so
# neighbours differ; 17 distinct colours before the cycle repeats.
MOA_COLORS = (
    "#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
    "#AA4499", "#EE8866", "#77AADD", "#BBCC33", "#FFAABB", "#44BB99", "#EEDD88", "#99DDFF",
    "#AAAA00",
)  # fmt: skip
METRIC_LABELS = {
    "macro_recall": "Macro recall",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "accuracy": "Accuracy",
}
# Figure style, applied only while a figure is drawn and saved (importing this module changes no rcParams).
STYLE = {"figure.dpi": 100, "savefig.dpi": 110, "font.size": 9, "axes.titlesize": 10}
P = ParamSpec("P")


def styled(draw: Callable[P, Figure]) -> Callable[P, Figure]:
    """Run a figure function under :data:`STYLE` (``matplotlib.rc_context``)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new :class:`Figure` (constrained layout, not registered with pyplot) and its axes."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


# --------------------------------------------------------------------------- colours & labels


def moa_order(moas: Sequence[str] | pd.Series) -> list[str]:
    """Distinct MoA names in display order: ``Negative control`` first, then alphabetical."""
    names = sorted({str(m) for m in pd.Series(moas).dropna()})
    first = [schema.NEGATIVE_CONTROL_MOA] if schema.NEGATIVE_CONTROL_MOA in names else []
    return first + [m for m in names if m != schema.NEGATIVE_CONTROL_MOA]


def moa_palette(moas: Sequence[str] | pd.Series) -> dict[str, str]:
    """One hex colour per MoA: control grey, the others from :data:`MOA_COLORS` in name order."""
    order = [m for m in moa_order(moas) if m != schema.NEGATIVE_CONTROL_MOA]
    palette = {m: MOA_COLORS[i % len(MOA_COLORS)] for i, m in enumerate(order)}
    palette[schema.NEGATIVE_CONTROL_MOA] = CONTROL_COLOR
    return palette


def wrap_label(text: str, width: int = 18) -> str:
    """Wrap each line of ``text`` onto lines of at most ``width`` characters (for tick labels)."""
    lines = [textwrap.wrap(line, width=width, break_long_words=False) or [line] for line in str(text).split("\n")]
    return "\n".join(part for line in lines for part in line)


def channel_label(channel: str, stains: Mapping[str, str] | None = None) -> str:
    """``"w1 · Hoechst (nuclei)"`` when a stain is known, else the channel name."""
    stain = (stains or {}).get(channel)
    return f"{channel} · {stain}" if stain else channel


def label_pitch(labels: Sequence[str], fontsize: float = 8.0) -> float:
    """Inches between ticks so 45-degree rotated, wrapped labels do not overlap.

    Parallel 45-degree text blocks anchored at the ticks stay apart when the tick spacing
    divided by sqrt(2) exceeds the tallest block's height (lines x line height).
    """
    lines = max((str(t).count("\n") + 1 for t in labels), default=1)
    return lines * fontsize / 72 * 1.25 * np.sqrt(2) + 0.04


def _legend_handles(order: Sequence[str], palette: Mapping[str, str]) -> list[Patch]:
    return [Patch(facecolor=palette[m], edgecolor="none", label=m) for m in order]


# --------------------------------------------------------------------------- dataset


@styled
def class_counts(
    labels: pd.Series, palette: Mapping[str, str] | None = None, title: str = "Sites per MoA", unit: str = "sites"
) -> Figure:
    """Horizontal bars of the number of rows per class (the class imbalance), counts annotated.

    labels: one class name per row (a site or a well: ``unit``). Bars in :func:`moa_order`,
    coloured by :func:`moa_palette`.
    """
    counts = labels.astype(str).value_counts()
    order = moa_order(counts.index)
    palette = dict(palette or moa_palette(order))
    fig, ax = _subplots(figsize=(7.5, 0.8 + 0.32 * len(order)))
    values = [int(counts[m]) for m in order]
    y = np.arange(len(order))
    ax.barh(y, values, color=[palette[m] for m in order])
    ax.set_yticks(y, [wrap_label(m, 30) for m in order])
    ax.invert_yaxis()
    for yi, v in zip(y, values):
        ax.text(v, yi, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel(unit)
    ax.set_xlim(0, max(values) * 1.15 if values else 1)
    ax.set_title(title)
    sns.despine(ax=ax)
    return fig


# --------------------------------------------------------------------------- intensities


def _channel_values(df: pd.DataFrame, measure: str, channels: Sequence[str]) -> list[str]:
    cols = [f"Image_Intensity_{measure}_{ch}" for ch in channels]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"intensity figure needs column(s) {missing}, which the table lacks")
    return cols


def _columns_for(raw: pd.DataFrame, normalized: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    panels = [("raw", raw)]
    if normalized is not None:
        panels.append(("plate-normalised (robust z vs the plate's controls)", normalized))
    return panels


def _moa_panels(
    df: pd.DataFrame,
    channels: Sequence[str],
    moa_col: str,
    measure: str,
    normalized: pd.DataFrame | None,
    palette: Mapping[str, str] | None,
) -> tuple[list[str], list[str], dict[str, str], list[tuple[str, pd.DataFrame]]]:
    """What a per-channel, per-MoA figure draws: the intensity columns, the MoA order, the palette
    (given or :func:`moa_palette`) and the raw | normalised panels."""
    cols = _channel_values(df, measure, channels)
    order = moa_order(df[moa_col])
    return cols, order, dict(palette or moa_palette(order)), _columns_for(df, normalized)


@styled
def intensity_histograms(
    df: pd.DataFrame,
    channels: Sequence[str],
    moa_col: str = schema.MOA,
    measure: str = "Sum",
    normalized: pd.DataFrame | None = None,
    palette: Mapping[str, str] | None = None,
    stains: Mapping[str, str] | None = None,
    bins: int = 30,
) -> Figure:
    """Per-image intensity histograms, one panel per channel, one outline per MoA.

    df: one row per site with ``Image_Intensity_<measure>_<channel>`` and ``moa_col``.
    Histograms are densities (each MoA integrates to 1, so small classes stay visible); the
    negative control is drawn filled grey as the reference. With ``normalized`` (the same rows
    after plate normalisation) a second column shows the normalised values: rows = channels,
    columns = raw | normalised. Bins span the 0.5-99.5th percentile of all rows.
    """
    cols, order, palette, panels = _moa_panels(df, channels, moa_col, measure, normalized, palette)
    fig = Figure(figsize=(4.6 * len(panels) + 2.6, 1.75 * len(channels) + 0.9), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels)))
    for subfig, (kind, table) in zip(subfigs, panels):
        subfig.suptitle(f"{measure} of intensity per image\n{kind}", fontsize=10)
        axes = subfig.subplots(len(channels), 1, squeeze=False)[:, 0]
        groups = table.groupby(table[moa_col].astype(str), sort=False)
        for i, (ch, col) in enumerate(zip(channels, cols)):
            ax = axes[i]
            values = table[col].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            for m in order:
                if m not in groups.groups:
                    continue
                v = groups.get_group(m)[col].to_numpy(dtype=np.float64)
                v = np.clip(v[np.isfinite(v)], edges[0], edges[-1])
                control = m == schema.NEGATIVE_CONTROL_MOA
                ax.hist(
                    v, bins=edges, density=True, histtype="stepfilled" if control else "step",
                    color=palette[m], edgecolor=palette[m], alpha=0.45 if control else 0.9, linewidth=1.1,
                    zorder=1 if control else 2,
                )  # fmt: skip
            ax.set_yticks([])
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.set_title(channel_label(ch, stains), loc="left", fontsize=8.5)
            sns.despine(ax=ax, left=True)
        axes[-1].set_xlabel("robust z-score" if kind != "raw" else f"per-image {measure.lower()} (grey levels)")
    fig.legend(
        handles=_legend_handles(order, palette), labels=[wrap_label(m, 24) for m in order],
        loc="outside right upper", ncol=1, frameon=False, fontsize=8, title="MoA",
    )  # fmt: skip
    return fig


def _violin(ax, x: float, values: np.ndarray, color: str, width: float = 0.8) -> None:
    """One violin (KDE scaled to ``width``) with an inner box: bar = quartiles, white dot = median.

    Groups with fewer than 2 distinct values are drawn as a short horizontal bar.
    """
    if values.size == 0:
        return
    if np.unique(values).size < 2:
        ax.hlines(values[:1], x - width / 3, x + width / 3, color=color, linewidth=2)
        return
    parts = ax.violinplot(values, positions=[x], widths=width, showextrema=False)
    for body in parts["bodies"]:
        body.set_facecolor(color)
        body.set_edgecolor("#333333")
        body.set_linewidth(0.6)
        body.set_alpha(1.0)
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    ax.vlines(x, q1, q3, color="#222222", linewidth=2.5, zorder=3)
    ax.scatter([x], [q2], s=12, color="white", edgecolors="#222222", linewidths=0.6, zorder=4)


@styled
def intensity_violins(
    df: pd.DataFrame,
    channels: Sequence[str],
    moa_col: str = schema.MOA,
    measure: str = "Mean",
    normalized: pd.DataFrame | None = None,
    palette: Mapping[str, str] | None = None,
    stains: Mapping[str, str] | None = None,
) -> Figure:
    """Violins of the per-image intensity ``measure`` per MoA, one panel row per channel.

    x = MoA in :func:`moa_order` (control first, so every violin compares against it), one
    violin per MoA coloured by :func:`moa_palette` (inner bar: quartiles, white dot: median). With
    ``normalized`` a second column shows the plate-normalised values. The control's median is
    a dashed grey reference line across each panel.
    """
    cols, order, palette, panels = _moa_panels(df, channels, moa_col, measure, normalized, palette)
    labels = [wrap_label(m, 22) for m in order]
    width = max(4.5, label_pitch(labels) * len(order) + 1.2)
    fig = Figure(figsize=(width * len(panels), 1.6 * len(channels) + 1.8), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels)))
    for subfig, (kind, table) in zip(subfigs, panels):
        subfig.suptitle(f"{measure} intensity per image\n{kind}", fontsize=10)
        axes = subfig.subplots(len(channels), 1, sharex=True, squeeze=False)[:, 0]
        groups = table.groupby(table[moa_col].astype(str)).indices
        for ax, ch, col in zip(axes, channels, cols):
            values = table[col].to_numpy(dtype=np.float64)
            for x, m in enumerate(order):
                v = values[groups[m]] if m in groups else np.empty(0)
                _violin(ax, x, v[np.isfinite(v)], palette[m])
            if schema.NEGATIVE_CONTROL_MOA in groups:
                ctrl = values[groups[schema.NEGATIVE_CONTROL_MOA]]
                ax.axhline(float(np.nanmedian(ctrl)), color=CONTROL_COLOR, linestyle="--", linewidth=0.8, zorder=0)
            ax.set_xlim(-0.6, len(order) - 0.4)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_title(channel_label(ch, stains), loc="left", fontsize=8.5)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            sns.despine(ax=ax)
        axes[-1].set_xticks(range(len(order)), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    return fig


@styled
def plate_effects(
    df: pd.DataFrame,
    channels: Sequence[str],
    normalized: pd.DataFrame | None = None,
    measure: str = "Mean",
    plate_col: str = schema.PLATE,
    stains: Mapping[str, str] | None = None,
) -> Figure:
    """Box plots of the per-image intensity ``measure`` per plate, one panel row per channel.

    df: typically the negative-control sites only, so plate-to-plate differences are batch
    effects; with ``normalized`` (the same rows normalised) a second column shows them
    removed. Plates in sorted order, boxes in the control grey.
    """
    cols = _channel_values(df, measure, channels)
    plates = sorted(df[plate_col].astype(str).unique())
    panels = _columns_for(df, normalized)
    width = max(4.5, 0.25 * len(plates) + 1.5)
    fig = Figure(figsize=(width * len(panels), 1.45 * len(channels) + 1.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels)))
    for subfig, (kind, table) in zip(subfigs, panels):
        subfig.suptitle(f"{measure} intensity of negative controls per plate\n{kind}", fontsize=10)
        axes = subfig.subplots(len(channels), 1, sharex=True, squeeze=False)[:, 0]
        groups = table.groupby(table[plate_col].astype(str)).indices
        for ax, ch, col in zip(axes, channels, cols):
            values = table[col].to_numpy(dtype=np.float64)
            data = [values[groups[p]][np.isfinite(values[groups[p]])] for p in plates]
            ax.boxplot(
                data, positions=range(len(plates)), widths=0.6, patch_artist=True,
                boxprops={"facecolor": CONTROL_COLOR, "edgecolor": "#333333", "linewidth": 0.7},
                medianprops={"color": "black", "linewidth": 1.0}, whiskerprops={"linewidth": 0.7},
                capprops={"linewidth": 0.7}, flierprops={"markersize": 1.5, "markerfacecolor": "#333333"},
            )  # fmt: skip
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_title(channel_label(ch, stains), loc="left", fontsize=8.5)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            sns.despine(ax=ax)
        last = axes[-1]
        last.set_xticks(range(len(plates)), plates, rotation=90, fontsize=7 if len(plates) > 24 else 8)
        last.set_xlabel("plate")
    return fig


# --------------------------------------------------------------------------- images


@styled
def channel_panel(
    treated: np.ndarray,
    control: np.ndarray,
    channels: Sequence[str],
    treated_title: str,
    control_title: str,
    stains: Mapping[str, str] | None = None,
    color: str = MOA_COLORS[0],
    max_size: int = 256,
) -> Figure:
    """Two rows of channel images: a treated site (top) over a control site (bottom).

    treated, control: ``(C, H, W)`` arrays of the same C. Each column is one channel, shown in
    grey with the same display range for both sites (:func:`contrast_limits`), so differences
    are biology, not contrast. Row titles name the sites; the treated row is marked in the
    MoA's colour.
    """
    if treated.shape[0] != len(channels) or control.shape[0] != len(channels):
        raise ValueError(f"expected {len(channels)} channels, got treated {treated.shape} and control {control.shape}")
    limits = contrast_limits(treated, control)
    n = len(channels)
    fig, axes = _subplots(2, n, figsize=(1.75 * n + 0.4, 4.3), squeeze=False)
    for r, (stack, title, edge) in enumerate(
        ((treated, treated_title, color), (control, control_title, CONTROL_COLOR))
    ):
        small = downsample(stack, max_size)
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(small[c], cmap="gray", vmin=limits[c, 0], vmax=limits[c, 1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(edge)
                spine.set_linewidth(2.5)
            if r == 0:
                ax.set_title(wrap_label(channel_label(channels[c], stains), 16), fontsize=8)
        axes[r, 0].set_ylabel(wrap_label(title, 22), fontsize=8)
    return fig


# --------------------------------------------------------------------------- features


def top_features(effects: pd.DataFrame, n: int = 30) -> list[str]:
    """Up to ``n`` discriminative features, shared fairly among the groups (rows of ``effects``).

    effects: groups x features (:func:`moa_features.profiling.effect_sizes`). Each group
    contributes its ``ceil(n / groups)`` largest-|effect| features (so one extreme group cannot
    take every slot); remaining slots go to the largest |effect| in any group. NaN-only
    features are skipped.
    """
    strength = effects.abs()
    per_group = -(-n // max(1, len(effects)))
    chosen: list[str] = []
    for g in effects.index:
        for f in strength.loc[g].dropna().sort_values(ascending=False, kind="stable").index[:per_group]:
            if f not in chosen and len(chosen) < n:
                chosen.append(f)
    overall = strength.max(axis=0, skipna=True).dropna().sort_values(ascending=False, kind="stable")
    chosen += [f for f in overall.index if f not in chosen][: n - len(chosen)]
    return chosen


@styled
def effect_heatmap(effects: pd.DataFrame, n: int = 30, vmax: float | None = None) -> Figure:
    """Heatmap of the most discriminative features (rows) by MoA (columns).

    effects: MoAs x features, robust effect size vs the negative control (robust z). Shows the
    :func:`top_features`, grouped by the MoA in which each is strongest. Colour scale diverging
    around 0, clipped at ``vmax`` (default: the 98th percentile of |effect|, at most 10, since
    beyond 10 robust SDs every effect is plainly strong); cells are annotated with the value.
    """
    feats = top_features(effects, n)
    if not feats:
        raise ValueError("no finite effect sizes to plot")
    sub = effects[feats]
    cols = [m for m in moa_order(sub.index) if m in sub.index]
    strongest = sub.abs().idxmax(axis=0)
    rank = {m: i for i, m in enumerate(cols)}
    feats = sorted(feats, key=lambda f: (rank[strongest[f]], -abs(sub.loc[strongest[f], f])))
    data = sub.loc[cols, feats].T
    if vmax is None:
        finite = np.abs(data.to_numpy(dtype=np.float64))
        finite = finite[np.isfinite(finite)]
        vmax = min(float(np.percentile(finite, 98)), 10.0) if finite.size else 1.0
    names = [wrap_label(c, 22) for c in cols]
    fig, ax = _subplots(
        figsize=(max(5.5, max(0.6, label_pitch(names)) * len(cols) + 4.5), 0.26 * len(feats) + 2.2),
    )
    sns.heatmap(
        data, cmap="vlag", center=0, vmin=-vmax, vmax=vmax, ax=ax, linewidths=0.3, linecolor="white",
        annot=len(cols) <= 20, fmt=".1f", annot_kws={"fontsize": 6.5},
        cbar_kws={"label": "effect size vs control (robust z)", "shrink": 0.6},
        xticklabels=names, yticklabels=feats,
    )  # fmt: skip
    ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), fontsize=7.5)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(f"Top {len(feats)} discriminative features")
    return fig


# --------------------------------------------------------------------------- models


def _error_bars(table: pd.DataFrame, model: str, metrics: Sequence[str]) -> np.ndarray:
    """(2, m) lower/upper error bar lengths: the 95 % CI (``<metric>_ci95``) where given, else the SD."""
    bars = np.zeros((2, len(metrics)))
    for j, m in enumerate(metrics):
        value = float(table.loc[model, m])
        ci = table.loc[model, f"{m}_ci95"] if f"{m}_ci95" in table.columns else None
        if isinstance(ci, (list, tuple, np.ndarray)) and len(ci) == 2 and np.all(np.isfinite(ci)):
            bars[:, j] = [max(value - float(ci[0]), 0.0), max(float(ci[1]) - value, 0.0)]
        elif f"{m}_std" in table.columns and np.isfinite(float(table.loc[model, f"{m}_std"])):
            bars[:, j] = float(table.loc[model, f"{m}_std"])
    return bars


@styled
def metric_comparison(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("macro_recall", "balanced_accuracy", "macro_f1"),
    level: str = "site",
) -> Figure:
    """Grouped bars: one group per metric, one bar per model, error bars = 95 % CI (else std across folds).

    table: index = model names, columns ``<metric>`` and optionally ``<metric>_ci95`` ([lo, hi])
    or ``<metric>_std`` (the ``models`` block of ``metrics.json`` with the ``level`` prefix
    removed). Metrics the table lacks are skipped.
    """
    metrics = [m for m in metrics if m in table.columns]
    if not metrics:
        raise KeyError(f"metrics table has none of the columns {list(METRIC_LABELS)}")
    models = model_order(list(table.index))
    colors = model_palette(models)
    fig, ax = _subplots(figsize=(max(6.0, 1.0 + 0.45 * len(models) * len(metrics)), 3.6))
    width = 0.8 / len(models)
    x = np.arange(len(metrics))
    for k, model in enumerate(models):
        mean = [float(table.loc[model, m]) for m in metrics]
        ax.bar(
            x + (k - (len(models) - 1) / 2) * width, mean, width, yerr=_error_bars(table, model, metrics), capsize=2,
            color=colors[model], label=model_label(model), error_kw={"linewidth": 0.8},
        )  # fmt: skip
    ax.set_xticks(x, [METRIC_LABELS.get(m, m) for m in metrics])
    ax.set_ylim(0, 1.0)
    ax.set_ylabel(f"score ({level} level, held-out)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    sns.despine(ax=ax)
    return fig


@styled
def per_class_recall(recall: pd.DataFrame, level: str = "treatment") -> Figure:
    """Horizontal grouped bars of recall per class (rows of ``recall``) and model (columns), at ``level``.

    recall: classes x models in [0, 1]. Classes in :func:`moa_order`; bars in model colours.
    """
    models = model_order(list(recall.columns))
    classes = [c for c in moa_order(recall.index) if c in recall.index]
    colors = model_palette(models)
    fig, ax = _subplots(figsize=(7.5, 1.2 + 0.16 * len(classes) * max(len(models), 2)))
    height = 0.8 / len(models)
    y = np.arange(len(classes))
    for k, model in enumerate(models):
        ax.barh(
            y + (k - (len(models) - 1) / 2) * height, recall.loc[classes, model].to_numpy(dtype=float), height,
            color=colors[model], label=model_label(model),
        )  # fmt: skip
    ax.set_yticks(y, [wrap_label(c, 28) for c in classes])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"recall ({level} level, held-out)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    sns.despine(ax=ax)
    return fig


@styled
def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[float]], title: str = "") -> Figure:
    """Row-normalised confusion matrix heatmap (rows = true class, cells = % of that class).

    labels: class names (order of rows and columns); matrix: counts, ``(K, K)``. Cells are
    annotated with the percentage when K <= 20.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    k = len(labels)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({k}, {k}) for {k} labels")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = 100 * counts / counts.sum(axis=1, keepdims=True)
    names = [wrap_label(c, 22) for c in labels]
    size = max(4.5, label_pitch(names) * k + 2.5)
    fig, ax = _subplots(figsize=(size + 1.0, size))
    sns.heatmap(
        np.nan_to_num(share), cmap="Blues", vmin=0, vmax=100, square=True, ax=ax, annot=k <= 20, fmt=".0f",
        annot_kws={"fontsize": 7}, cbar_kws={"label": "% of true class", "shrink": 0.6},
        xticklabels=names, yticklabels=names, linewidths=0.3, linecolor="white",
    )  # fmt: skip
    ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


@styled
def feature_importance(importance: pd.DataFrame, n: int = 25) -> Figure:
    """Horizontal bars of the ``n`` most important features (``feature``, ``importance`` columns)."""
    missing = {"feature", "importance"} - set(importance.columns)
    if missing:
        raise KeyError(f"feature importance table lacks column(s) {sorted(missing)}")
    top = importance.sort_values("importance", ascending=False, kind="stable").head(n)
    fig, ax = _subplots(figsize=(7.5, 0.8 + 0.24 * len(top)))
    y = np.arange(len(top))
    ax.barh(y, top["importance"].to_numpy(dtype=float), color=MODEL_COLORS[1])
    ax.set_yticks(y, top["feature"].astype(str), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("importance (mean XGBoost gain over folds)")
    sns.despine(ax=ax)
    return fig


@styled
def training_curves(folds: Sequence[Mapping[str, Sequence[float]]]) -> Figure:
    """CNN training curves: one panel per metric (``loss``, ``accuracy``, ...), one line per fold.

    folds: one Keras ``History.history`` dict per fold; ``val_<metric>`` is drawn dashed in
    the validation colour beside ``<metric>`` in the training colour.
    """
    names = sorted({k for f in folds for k in f if not k.startswith("val_")}, key=lambda s: (s != "loss", s))
    if not names:
        raise ValueError("training history has no metrics")
    fig, axes = _subplots(1, len(names), figsize=(3.8 * len(names) + 0.5, 3.0), squeeze=False)
    train_c, val_c = MODEL_COLORS[0], MODEL_COLORS[3]
    for ax, name in zip(axes[0], names):
        for fold in folds:
            for key, color, style in ((name, train_c, "-"), (f"val_{name}", val_c, "--")):
                values = fold.get(key)
                if values:
                    ax.plot(np.arange(1, len(values) + 1), values, style, color=color, linewidth=1.1, alpha=0.8)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        sns.despine(ax=ax)
    fig.legend(
        handles=[
            Line2D([], [], color=train_c, label="training"),
            Line2D([], [], color=val_c, linestyle="--", label="validation"),
        ],
        loc="outside lower center",
        ncol=2,
        frameon=False,
    )
    return fig


# --------------------------------------------------------------------------- votes


@styled
def channel_votes(summary: pd.DataFrame, channels: Sequence[str], stains: Mapping[str, str] | None = None) -> Figure:
    """Heatmap of people's channel choices: rows = MoA, columns = channel, cell = share of picks.

    summary: columns ``moa``, ``channel``, ``votes`` (counts). Each row is normalised to the
    MoA's total picks; cells are annotated with the raw count.
    """
    missing = {"moa", "channel", "votes"} - set(summary.columns)
    if missing:
        raise KeyError(f"vote summary lacks column(s) {sorted(missing)}")
    counts = summary.pivot_table(index="moa", columns="channel", values="votes", aggfunc="sum", fill_value=0)
    counts = counts.reindex(columns=list(channels), fill_value=0)
    counts = counts.loc[[m for m in moa_order(counts.index) if m in counts.index]]
    share = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    fig, ax = _subplots(figsize=(1.1 * len(channels) + 3.5, 0.38 * len(counts) + 1.8))
    sns.heatmap(
        share, cmap="Greens", vmin=0, ax=ax, annot=counts.to_numpy(), fmt="d", annot_kws={"fontsize": 8},
        cbar_kws={"label": "share of the MoA's channel picks", "shrink": 0.7}, linewidths=0.3, linecolor="white",
        xticklabels=[wrap_label(channel_label(c, stains), 14) for c in channels],
        yticklabels=[wrap_label(m, 28) for m in counts.index],
    )  # fmt: skip
    ax.set_xticklabels(ax.get_xticklabels(), rotation=0, fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title("Channels people chose to tell each MoA from control (count in cell)")
    return fig


@styled
def activity_scatter(
    activity: pd.DataFrame,
    classes: pd.Series | None = None,
    palette: Mapping[str, str] | None = None,
    threshold: float = 0.05,
) -> Figure:
    """Phenotypic activity: mAP (x) against -log10 of the corrected p-value (y), one dot per treatment.

    ``activity`` has ``mean_average_precision``, ``corrected_p_value`` (else ``p_value``) and
    ``active``; ``classes`` (indexed like ``activity``) colours dots by MoA with ``palette``.
    Active treatments are filled, inactive ones hollow; the dashed line is ``threshold``.
    """
    p_col = "corrected_p_value" if "corrected_p_value" in activity.columns else "p_value"
    x = activity["mean_average_precision"].to_numpy(dtype=float)
    p = activity[p_col].to_numpy(dtype=float)
    y = -np.log10(np.clip(p, np.finfo(float).tiny, 1.0))
    active = activity["active"].astype(bool).to_numpy() if "active" in activity.columns else p < threshold
    fig, ax = _subplots(figsize=(7.5, 4.2))
    if classes is not None and palette:
        colors = [palette.get(str(c), CONTROL_COLOR) for c in classes]
        handles = _legend_handles([c for c in moa_order(classes) if c in palette], palette)
    else:
        colors = [MODEL_COLORS[0]] * len(x)
        handles = []
    ax.scatter(
        x[active],
        y[active],
        c=[colors[i] for i in np.flatnonzero(active)],
        s=28,
        edgecolors="white",
        linewidths=0.5,
        label="active",
    )
    ax.scatter(
        x[~active],
        y[~active],
        facecolors="none",
        edgecolors=[colors[i] for i in np.flatnonzero(~active)],
        s=28,
        linewidths=1.0,
        label="inactive",
    )
    ax.axhline(-np.log10(threshold), color=CONTROL_COLOR, linestyle="--", linewidth=0.8)
    ax.set_xlabel("mean average precision (replicates vs negative controls)")
    ax.set_ylabel(f"-log10 {p_col.replace('_', ' ')}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(f"{int(active.sum())} of {len(x)} treatments active ({p_col.replace('_', ' ')} < {threshold:g})")
    sns.despine(ax=ax)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return fig
