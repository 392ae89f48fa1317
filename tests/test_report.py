"""End-to-end tests of the HTML report on a real small pipeline run.

The fixture runs the real pipeline: the built-in synthetic screen (``preset="tiny"``) with one
channel image corrupted, feature extraction, the screen's treatment -> MoA table as the
annotation side file, a vote store written with :class:`moa_features.votes.VoteStore`, and a
training-run folder in the documented ``models/RUN/`` layout.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moa_features import schema
from moa_features.extract import extract
from moa_features.report import build_report, class_labels, main
from moa_features.synthetic import make_screen
from moa_features.votes import VoteStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SECTIONS = ("dataset", "intensity", "examples", "features", "models", "votes", "provenance")


def write_run(run: Path, classes: list[str], seed: int = 0) -> dict:
    """A training-run folder in the documented layout (metrics, predictions, history, importance)."""
    rng = np.random.default_rng(seed)
    run.mkdir(parents=True, exist_ok=True)
    models = {
        "cnn": {"macro_recall": 0.41, "macro_recall_std": 0.05, "balanced_accuracy": 0.41,
                "balanced_accuracy_std": 0.05, "macro_f1": 0.38, "macro_f1_std": 0.06, "accuracy": 0.5,
                "well_macro_recall": 0.45, "well_macro_recall_std": 0.07},
        "xgboost": {"macro_recall": 0.62, "macro_recall_std": 0.04, "balanced_accuracy": 0.62,
                    "balanced_accuracy_std": 0.04, "macro_f1": 0.6, "macro_f1_std": 0.03, "accuracy": 0.7,
                    "well_macro_recall": 0.66, "well_macro_recall_std": 0.05},
        "ensemble": {"macro_recall": 0.655, "macro_recall_std": 0.03, "balanced_accuracy": 0.655,
                     "balanced_accuracy_std": 0.03, "macro_f1": 0.63, "macro_f1_std": 0.02, "accuracy": 0.72},
        "majority": {"macro_recall": 1 / len(classes), "balanced_accuracy": 1 / len(classes), "macro_f1": 0.05},
    }  # fmt: skip
    k = len(classes)
    metrics = {
        "models": models,
        "per_class_recall": {m: dict(zip(classes, rng.uniform(0, 1, k).round(3))) for m in models},
        "confusion_matrices": {
            m: {"labels": classes, "matrix": (np.eye(k, dtype=int) * 5 + rng.integers(0, 3, (k, k))).tolist()}
            for m in models
        },
        "classes": classes,
        "config": {"seed": 0, "split": "plate", "folds": 2},
        "timings": {"cnn_s": 12.5, "xgboost_s": 3.25},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"model": "xgboost", "fold": [0, 0, 1, 1], "y_true": classes[:2] * 2,
                  "y_pred": classes[:2] * 2}).to_parquet(run / "predictions.parquet")  # fmt: skip
    history = {"cnn": [{"loss": [2.0, 1.5, 1.2], "val_loss": [2.1, 1.8, 1.7],
                        "accuracy": [0.2, 0.4, 0.5], "val_accuracy": [0.2, 0.3, 0.35]}] * 2}  # fmt: skip
    (run / "history.json").write_text(json.dumps(history))
    pd.DataFrame({"feature": ["Image_Intensity_Mean_w2", "Nuclei_Count", "Image_Texture_Contrast_w3_1_avg_32"],
                  "importance": [5.0, 3.0, 1.0]}).to_csv(run / "feature_importance.csv", index=False)  # fmt: skip
    return metrics


def make_demo_run(root: Path) -> dict[str, Path]:
    """Run the real pipeline on the tiny synthetic screen; returns the paths of its outputs."""
    metadata = make_screen(root / "screen", preset="tiny", seed=0)
    meta = pd.read_csv(metadata)
    broken = meta.iloc[5]
    bad_png = next((root / "screen" / "images").rglob(f"{broken['well']}_s{broken['site']}_w3.png"))
    bad_png.write_bytes(b"not a png")  # one unreadable image: the report must list the failed site
    table = root / "features" / "tiny.parquet"
    extract(metadata, table, thumbs=32, progress=False)
    side = schema.sidecar_paths(table)
    spec = json.loads((root / "screen" / "screen.json").read_text())
    pd.DataFrame(
        [{"treatment": t["name"], "moa": t["moa"], "source": "curated", "evidence": "synthetic screen",
          "needs_review": t["name"] == "DKK-1"} for t in spec["treatments"]]
    ).to_csv(side["annotation"], index=False)  # fmt: skip
    votes = VoteStore(side["votes"])
    for i, chosen in enumerate((["w1", "w2", "w6"], ["w2", "w6", "w3"], ["w1", "w3", "w5"])):
        votes.add(f"session-{i}", "Interleukin" if i < 2 else "TNF ligand", "s1", "s0", chosen)
    classes = sorted({t["moa"] for t in spec["treatments"]})
    write_run(root / "models" / "tiny", classes)
    return {"table": table, "run": root / "models" / "tiny", "votes": side["votes"], "broken": Path(str(broken["site_id"]))}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    paths = make_demo_run(root)
    paths["html"] = build_report(paths["table"], run_dir=paths["run"], output=root / "reports" / "tiny.html",
                                 provenance={"command": "pytest demo", "seed": 0})  # fmt: skip
    paths["root"] = root
    return paths


def section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, flags=re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_report_is_self_contained_with_every_section(demo):
    html = demo["html"].read_text()
    assert [s for s in re.findall(r'<section id="([a-z]+)">', html)] == list(SECTIONS)
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything from the network"
    assert "<link" not in html and "<script" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    files = sorted((demo["html"].parent / "tiny_files").glob("*.png"))
    assert len(files) == len(sources)
    for lead in re.findall(r'<p class="lead">(.*?)</p>', html, flags=re.S):
        assert lead.strip().endswith(".")


def test_dataset_section_counts_classes_and_failed_site(demo):
    table = pd.read_parquet(demo["table"])
    body = section(demo["html"].read_text(), "dataset")
    assert f"<td class=\"num\">{len(table)}</td>" in body
    assert "MoAs come from the annotation table" in body
    for moa in ("Negative control", "Growth factor", "Interleukin", "TNF ligand"):
        assert f"<td>{moa}</td>" in body
    assert str(demo["broken"]) in body and "cannot decode image" in body  # the corrupted site and why
    # the annotation table with its evidence, one row per treatment
    assert "Treatment -&gt; MoA annotation with its evidence" in body and "1 flagged for review)" in body
    assert "<th>evidence</th>" in body and "DKK-1" in body


def test_intensity_examples_and_features_sections(demo):
    html = demo["html"].read_text()
    intensity = section(html, "intensity")
    for title in ("Sum of intensity per image", "Mean intensity per image", "Negative controls per plate"):
        assert f"<h3>{title}</h3>" in intensity
    assert "robust z-score against the plate&#39;s negative-control sites" in intensity
    examples = section(html, "examples")
    moas = pd.read_csv(schema.sidecar_paths(demo["table"])["annotation"])["moa"].unique()
    assert examples.count("<img") == len(moas)  # every MoA of the tiny screen has an example
    assert "most typical control on plate" in examples
    features = section(html, "features")
    assert "<h3>Most discriminative features</h3>" in features and "Strongest features per class" in features


def test_models_votes_and_provenance_sections(demo):
    html = demo["html"].read_text()
    models = section(html, "models")
    assert "Keras CNN (baseline)" in models and "XGBoost (features)" in models and "Ensemble" in models
    assert "<strong>0.655 ± 0.030</strong>" in models  # best site-level macro recall in bold
    assert "0.410 ± 0.050" in models and "Macro recall (well)" in models
    assert "2 held-out folds" in models
    for title in ("Model comparison", "Recall per class", "Confusion matrix — Keras CNN (baseline)",
                  "Confusion matrix — Ensemble", "Feature importance (XGBoost)", "CNN training curves"):
        assert f"<h3>{title}</h3>" in models, title
    assert "Confusion matrix — Majority class" not in models
    votes = section(html, "votes")
    assert "<h3>Channel votes</h3>" in votes
    prov = section(html, "provenance")
    assert "pytest demo" in prov and "versions.numpy" in prov and "config.seed" in prov
    assert "Feature extraction (summary.json)" in prov


def test_cli_missing_pieces_are_named_and_errors_reported(demo, tmp_path, capsys):
    """Without annotation, run or votes each section says what is absent; the page still renders."""
    table = pd.read_parquet(demo["table"]).drop(columns=[schema.MOA], errors="ignore")
    path = tmp_path / "bare.parquet"
    table.to_parquet(path)
    out = tmp_path / "bare.html"
    assert main([str(path), "-o", str(out)]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    html = out.read_text()
    assert "classes are treatments" in section(html, "dataset")
    assert "No errors table" in section(html, "dataset")
    assert "No training run given" in section(html, "models")
    assert "No vote store" in section(html, "votes")
    assert "moa-features report" in section(html, "provenance")
    assert (tmp_path / "bare_files").is_dir()
    assert main([str(tmp_path / "missing.parquet")]) == 2
    assert "table not found" in capsys.readouterr().err
    assert main([str(path), "--run", str(tmp_path / "no-run")]) == 2
    assert "training run folder not found" in capsys.readouterr().err


def test_class_labels_sources():
    df = pd.DataFrame({schema.TREATMENT: ["EMPTY", "EGF", "X"]})
    labels, note = class_labels(df, pd.DataFrame({"treatment": ["EGF"], "moa": ["Growth factor"]}))
    assert list(labels) == ["Negative control", "Growth factor", "Unannotated"] and "annotation" in note
    labels, note = class_labels(df)
    assert list(labels) == ["Negative control", "EGF", "X"] and "classes are treatments" in note
    with pytest.raises(KeyError, match="treatment, moa"):
        class_labels(df, pd.DataFrame({"name": ["EGF"]}))


@pytest.mark.slow
def test_report_on_real_rxrx1_sites(tmp_path):
    """Real RxRx1 images: every site is an untreated control and site 2 lacks w5/w6."""
    table = tmp_path / "rxrx1.parquet"
    extract(DATA / "rxrx1", table, thumbs=None, progress=False)
    html = build_report(table, output=tmp_path / "rxrx1.html").read_text()
    dataset = section(html, "dataset")
    assert "HEPG2-01_1_B02_2" in dataset and "file not found" in dataset  # missing w5 reported with reason
    assert "Only negative controls" in section(html, "features")
    assert "<h3>Negative controls per plate</h3>" in section(html, "intensity")
