"""Unit tests of the report figure functions on small constructed tables."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from moa_features import schema
from moa_features.reports import plots

CONTROL = schema.NEGATIVE_CONTROL_MOA
CHANNELS = ["w1", "w2", "w3"]


def intensity_table(n_classes: int = 3, per_class: int = 12, seed: int = 0) -> pd.DataFrame:
    """Sites of ``n_classes`` MoAs + controls on two plates; MoA k shifts every channel by k."""
    rng = np.random.default_rng(seed)
    moas = [CONTROL] + [f"MoA {chr(65 + k)} inhibitor of a long pathway name" for k in range(n_classes)]
    rows = []
    for k, moa in enumerate(moas):
        for i in range(per_class):
            plate = f"P{i % 2 + 1}"
            row = {schema.MOA: moa, schema.PLATE: plate}
            for ch in CHANNELS:
                mean = 20 + 3 * k + (5 if plate == "P2" else 0) + rng.normal(0, 1)
                row[f"Image_Intensity_Mean_{ch}"] = mean
                row[f"Image_Intensity_Sum_{ch}"] = mean * 512 * 512
            rows.append(row)
    return pd.DataFrame(rows)


def test_palette_control_grey_distinct_and_order_independent():
    moas = [f"class {i:02d}" for i in range(17)] + [CONTROL]
    pal = plots.moa_palette(moas)
    assert pal[CONTROL] == plots.CONTROL_COLOR
    others = [pal[m] for m in moas if m != CONTROL]
    assert len(set(others)) == 17 and plots.CONTROL_COLOR not in others
    assert plots.moa_palette(list(reversed(moas))) == pal
    assert plots.moa_order(["b", CONTROL, "a", "b"]) == [CONTROL, "a", "b"]


def test_intensity_histograms_panels_and_colours():
    df = intensity_table()
    norm = df.copy()
    fig = plots.intensity_histograms(df, CHANNELS, normalized=norm, stains=schema.RXRX_STAINS)
    axes = fig.get_axes()
    assert len(axes) == len(CHANNELS) * 2
    pal = plots.moa_palette(df[schema.MOA])
    for ax in axes:
        # one histogram outline (one patch) per class
        assert len(ax.patches) == df[schema.MOA].nunique()
        colours = {to_hex(p.get_edgecolor()) for p in ax.patches}
        assert colours == {v.lower() for v in pal.values()}
    titles = [ax.get_title(loc="left") for ax in axes]
    assert titles[0] == "w1 · Hoechst (nuclei)"
    legend = fig.legends[0]
    assert [t.get_text().replace("\n", " ") for t in legend.get_texts()] == plots.moa_order(df[schema.MOA])
    assert "grey levels" in axes[len(CHANNELS) - 1].get_xlabel()
    assert "z-score" in axes[-1].get_xlabel()


def test_intensity_histograms_density_integrates_to_one():
    df = intensity_table(n_classes=1)
    fig = plots.intensity_histograms(df, ["w1"], bins=10)
    ax = fig.get_axes()[0]
    for patch in ax.patches:  # a step outline: area under it is 1 (density=True)
        xy = patch.get_xy()
        x, y = xy[:, 0], xy[:, 1]
        assert abs(np.sum(np.diff(x) * y[:-1])) == pytest.approx(1.0, rel=1e-6)


def test_intensity_violins_one_violin_per_class_in_palette_colour():
    df = intensity_table(n_classes=4)
    fig = plots.intensity_violins(df, CHANNELS, normalized=df)
    axes = fig.get_axes()
    assert len(axes) == 2 * len(CHANNELS)
    order = plots.moa_order(df[schema.MOA])
    pal = plots.moa_palette(order)
    for ax in axes:
        bodies = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bodies) == len(order)
        assert [to_hex(b.get_facecolor()[0]) for b in bodies] == [pal[m].lower() for m in order]
    labels = [t.get_text().replace("\n", " ") for t in axes[len(CHANNELS) - 1].get_xticklabels()]
    assert labels == order


def test_fifteen_class_tick_labels_do_not_overlap():
    """Labels are parallel 45-degree text blocks anchored at the ticks: they stay apart when the
    perpendicular distance between neighbouring baselines (tick spacing / sqrt 2) exceeds the
    height of the tallest (wrapped) label block."""
    df = intensity_table(n_classes=15, per_class=4)
    fig = plots.intensity_violins(df, ["w1"])
    fig.canvas.draw()
    ax = fig.get_axes()[0]
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) == 16 and all(t.get_rotation() == 45 for t in labels)
    ticks_px = ax.transData.transform(np.column_stack([ax.get_xticks(), np.zeros(16)]))[:, 0]
    spacing = np.diff(ticks_px).min()
    lines = max(t.get_text().count("\n") + 1 for t in labels)
    line_px = labels[0].get_fontsize() * fig.dpi / 72 * 1.2
    assert spacing / np.sqrt(2) > lines * line_px


def test_plate_effects_one_box_per_plate():
    df = intensity_table()
    ctrl = df[df[schema.MOA] == CONTROL]
    fig = plots.plate_effects(ctrl, CHANNELS, normalized=ctrl)
    axes = fig.get_axes()
    assert len(axes) == 2 * len(CHANNELS)
    assert [t.get_text() for t in axes[len(CHANNELS) - 1].get_xticklabels()] == ["P1", "P2"]
    assert all(len(ax.patches) == 2 for ax in axes)


def test_contrast_limits_shared_and_known():
    a = np.zeros((2, 10, 10), np.uint8)
    b = np.full((2, 10, 10), 200, np.uint8)
    lim = plots.contrast_limits(a, b, low=0, high=100)
    np.testing.assert_array_equal(lim, [[0, 200], [0, 200]])
    flat = plots.contrast_limits(a, a)  # constant image: a non-empty range
    assert (flat[:, 1] > flat[:, 0]).all()
    with pytest.raises(ValueError, match="same C"):
        plots.contrast_limits(a, b[:1])


def test_downsample_block_mean():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_allclose(plots.downsample(img, max_size=2), [[2.5, 4.5], [10.5, 12.5]])
    assert plots.downsample(np.zeros((3, 1024, 1000)), 256).shape == (3, 256, 250)


def test_channel_panel_same_contrast_per_channel():
    rng = np.random.default_rng(1)
    treated = rng.integers(0, 255, (3, 64, 64), dtype=np.uint8)
    control = (treated // 2).astype(np.uint8)
    fig = plots.channel_panel(treated, control, CHANNELS, "MoA A\nsite 1", "Negative control\nsite 2")
    axes = np.array(fig.get_axes()).reshape(2, 3)
    for c in range(3):
        assert axes[0, c].images[0].get_clim() == axes[1, c].images[0].get_clim()
    assert axes[0, 0].get_title() == "w1"
    assert "site 1" in axes[0, 0].get_ylabel() and "site 2" in axes[1, 0].get_ylabel()
    with pytest.raises(ValueError, match="expected 3 channels"):
        plots.channel_panel(treated[:2], control, CHANNELS, "a", "b")


def test_top_features_share_slots_among_groups():
    effects = pd.DataFrame(
        {"f1": [100.0, 0.0], "f2": [90.0, 0.0], "f3": [80.0, 0.0], "f4": [0.0, 3.0], "f5": [0.0, np.nan]},
        index=["A", "B"],
    )
    assert plots.top_features(effects, n=2) == ["f1", "f4"]  # B gets a slot despite tiny effects
    assert plots.top_features(effects, n=4) == ["f1", "f2", "f4", "f3"]


def test_effect_heatmap_rows_columns_and_clipping():
    effects = pd.DataFrame({"f1": [5.0, -1.0], "f2": [0.5, -20.0], "f3": [0.1, 0.2]}, index=["B", "A"])
    fig = plots.effect_heatmap(effects, n=2)
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"]
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["f1", "f2"]
    vmin, vmax = ax.collections[0].get_clim()
    assert vmin == -vmax and vmax <= 10


def test_metric_comparison_bars_and_error_bars():
    table = pd.DataFrame(
        {"macro_recall": [0.5, 0.8], "macro_recall_std": [0.1, 0.05], "macro_f1": [0.4, 0.7]},
        index=["xgboost", "cnn"],
    )
    fig = plots.metric_comparison(table)
    ax = fig.get_axes()[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.8, 0.4 + 0.3, 0.5, 0.4]  # cnn first (model order), then xgboost
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Keras CNN (baseline)", "XGBoost (features)"]
    with pytest.raises(KeyError):
        plots.metric_comparison(pd.DataFrame({"x": [1.0]}, index=["cnn"]))


def test_per_class_recall_bar_lengths():
    recall = pd.DataFrame({"cnn": {"B": 0.25, "A": 1.0}, "ensemble": {"B": 0.5, "A": 0.75}})
    fig = plots.per_class_recall(recall)
    ax = fig.get_axes()[0]
    assert [p.get_width() for p in ax.patches] == [1.0, 0.25, 0.75, 0.5]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]


def test_confusion_matrix_row_percentages():
    fig = plots.confusion_matrix(["A", "B"], [[3, 1], [0, 2]], "cnn")
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.texts] == ["75", "25", "0", "100"]
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        plots.confusion_matrix(["A", "B", "C"], [[1, 0], [0, 1]])


def test_feature_importance_top_sorted():
    imp = pd.DataFrame({"feature": ["a", "b", "c"], "importance": [1.0, 3.0, 2.0]})
    ax = plots.feature_importance(imp, n=2).get_axes()[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "c"]
    with pytest.raises(KeyError, match="importance"):
        plots.feature_importance(pd.DataFrame({"feature": ["a"]}))


def test_training_curves_panels_and_lines():
    folds = [{"loss": [1.0, 0.5], "val_loss": [1.1, 0.9], "accuracy": [0.3, 0.6], "val_accuracy": [0.2, 0.4]}] * 3
    fig = plots.training_curves(folds)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    assert all(len(ax.lines) == 6 for ax in axes)  # 3 folds x (training, validation)


def test_channel_votes_shares_and_counts():
    summary = pd.DataFrame({"moa": ["A", "A", "A", "B"], "channel": ["w1", "w2", "w3", "w1"], "votes": [2, 1, 1, 4]})
    fig = plots.channel_votes(summary, CHANNELS)
    ax = fig.get_axes()[0]
    share = ax.collections[0].get_array().reshape(2, 3)
    np.testing.assert_allclose(share, [[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    assert [t.get_text() for t in ax.texts] == ["2", "1", "1", "4", "0", "0"]


def test_class_counts_bars():
    labels = pd.Series(["A"] * 3 + [CONTROL] * 5 + ["B"])
    ax = plots.class_counts(labels).get_axes()[0]
    assert [p.get_width() for p in ax.patches] == [5, 3, 1]
    assert to_hex(ax.patches[0].get_facecolor()) == plots.CONTROL_COLOR.lower()


def test_figures_use_the_report_style_without_touching_global_state():
    """Figures are plain ``Figure`` objects drawn under ``plots.STYLE``; pyplot and rcParams are left alone."""
    import matplotlib.pyplot as plt

    before = {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}
    fig = plots.class_counts(pd.Series(["A", "B", "B", CONTROL]), title="Sites")
    assert isinstance(fig, Figure) and plt.get_fignums() == []
    assert {k: v for k, v in matplotlib.rcParams.items() if k != "backend"} == before
    assert fig.axes[0].title.get_fontsize() == plots.STYLE["axes.titlesize"]
    assert fig.get_dpi() == plots.STYLE["figure.dpi"]
