"""End-to-end tests of the HTML report on a real small pipeline run.

The fixture runs the real pipeline: the built-in synthetic screen (``preset="tiny"``) with one
channel image corrupted, feature extraction, the screen's treatment -> MoA table as the
annotation side file, a vote store written with :class:`moa_features.votes.VoteStore`, and a
training-run folder in the documented ``models/RUN/`` layout.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from moa_features import schema
from moa_features.extract import extract
from moa_features.report import build_report, class_labels, main
from moa_features.reports import run_sections, sections
from moa_features.reports.html import render_html

from _helpers import make_demo_run, write_activity, write_run

SECTIONS = ("question", "dataset", "intensity", "examples", "features", "models", "activity", "votes", "provenance")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    paths = make_demo_run(root)
    paths["html"] = build_report(
        paths["table"],
        run_dir=paths["run"],
        output=root / "reports" / "tiny.html",
        provenance={"command": "pytest demo", "seed": 0},
    )
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
    assert f'<td class="num">{len(table)}</td>' in body
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
        assert f"<h3>{title} (site level)</h3>" in intensity
    assert "robust z-score against the plate&#39;s negative-control" in intensity
    examples = section(html, "examples")
    moas = pd.read_csv(schema.sidecar_paths(demo["table"])["annotation"])["moa"].unique()
    assert examples.count("<img") == len(moas)  # every MoA of the tiny screen has an example
    assert "most typical control on plate" in examples
    features = section(html, "features")
    assert "<h3>Most discriminative features (class level, from sites)</h3>" in features
    assert "Strongest features per class" in features


def test_models_votes_and_provenance_sections(demo):
    html = demo["html"].read_text()
    models = section(html, "models")
    assert "Keras CNN (baseline)" in models and "XGBoost (features)" in models and "Ensemble" in models
    assert "Model comparison at the treatment level" in models  # the headline's level
    assert "<strong>0.580 [0.410, 0.730]</strong>" in models  # best treatment-level macro recall in bold
    assert "0.410 ± 0.050" in models and "Macro recall (well level)" in models
    assert "2 held-out folds" in models
    for title in (
        "Model comparison (treatment level)",
        "Recall per class (treatment level)",
        "Confusion matrix — Keras CNN (baseline) (treatment level)",
        "Confusion matrix — Ensemble (treatment level)",
        "Feature importance (XGBoost, training-row level)",
        "CNN training curves (epoch level)",
    ):
        assert f"<h3>{title}</h3>" in models, title
    assert "Confusion matrix — Majority class" not in models
    votes = section(html, "votes")
    assert "<h3>Channel votes (class level)</h3>" in votes
    prov = section(html, "provenance")
    assert "pytest demo" in prov and "versions.numpy" in prov and "config.seed" in prov
    assert "Feature extraction (summary.json)" in prov


@pytest.mark.slow
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


def test_report_on_real_rxrx1_sites(tmp_path, rxrx1_sample):
    """Real RxRx1 images (vendored): every site is an untreated control and U2OS site 2 lacks w5/w6."""
    table = tmp_path / "rxrx1.parquet"
    extract(rxrx1_sample, table, thumbs=None, progress=False)
    html = build_report(table, output=tmp_path / "rxrx1.html").read_text()
    dataset = section(html, "dataset")
    assert "U2OS-01_1_B02_2" in dataset and "file not found" in dataset  # missing w5 reported with reason
    assert "Only negative controls" in section(html, "features")
    assert "<h3>Negative controls per plate (site level)</h3>" in section(html, "intensity")


def test_question_section_states_split_labels_chance_and_p(demo):
    """The first section says which question the figures answer, on which labels, with CI, chance and p."""
    html = demo["html"].read_text()
    assert html.index('<section id="question">') < html.index('<section id="dataset">')
    q = section(html, "question")
    assert "Question: MoA of treatments never trained on" in q and "<code>nsc</code>" in q
    assert "signalling pathway" in q and "<code>Metadata_pathway</code>" in q
    assert "treatment median of well medians" in q
    assert "Headline figures (treatment level;" in q
    assert "0.580 [0.410, 0.730]" in q and "0.600 [0.450, 0.750]" in q  # value [95% CI]
    assert "0.010" in q and "0.020" in q  # per-metric permutation p of XGBoost
    assert "0.210" in q and "0.280" in q  # CNN's scalar p; XGBoost's per-metric expected chance
    assert "Class prior (DummyClassifier) (chance reference)" in q
    models = section(html, "models")
    assert "Model comparison at the treatment level" in models and "0.580 [0.410, 0.730]" in models
    assert "chance macro recall 0.250" in models  # expected chance replaces 1 / number of classes


def test_activity_section_scatter_and_inactive_treatments(demo):
    html = demo["html"].read_text()
    act = section(html, "activity")
    table = pd.read_csv(demo["run"] / "activity.csv")
    n, n_active = len(table), int(table["active"].sum())
    assert n_active == n - 1
    assert f"{n_active} of {n} treatments active" in act
    assert "<h3>Activity: mAP vs significance (treatment level)</h3>" in act and 'src="data:image/png;base64,' in act
    assert "Inactive treatments (first 1 of 1" in act and f"<td>{table['treatment'][0]}</td>" in act


@pytest.mark.parametrize(
    ("split", "question"),
    [("plate", "treatment recognition"), ("nsc_plate", "on plates never trained on"), ("nscb", "batches never")],
)
def test_question_follows_the_split_and_tolerates_old_runs(tmp_path, split, question):
    """A run without the new fields still renders: question from the split, label and p-values said missing."""
    run = tmp_path / "run"
    metrics = write_run(run, ["A", "B"])
    metrics["config"]["split"] = split
    html = render_html("t", [run_sections.question_section(run, metrics), sections.activity_section(None, {}, {})])
    q = section(html, "question")
    assert question in q
    assert "did not record its label column" in q and "no permutation null" in q
    assert "Headline figures (site level;" in q and "0.620" in q
    assert "No activity table" in section(html, "activity")


def test_broken_inputs_are_named(demo, tmp_path, capsys):
    run = tmp_path / "run"
    write_run(run, ["A", "B"])
    (run / "metrics.json").write_text('{"models": {"cnn": ')  # truncated
    assert main([str(demo["table"]), "--run", str(run), "-o", str(tmp_path / "x.html")]) == 2
    assert "metrics.json is not valid JSON" in capsys.readouterr().err
    bad = tmp_path / "activity.csv"
    pd.DataFrame({"treatment": ["a"], "score": [1.0]}).to_csv(bad, index=False)
    html = render_html("t", [sections.activity_section(bad, {}, {})])
    assert "lacks column(s) [&#39;mean_average_precision&#39;, &#39;corrected_p_value&#39;]" in section(
        html, "activity"
    )
    assert main([str(demo["table"]), "--activity", str(tmp_path / "none.csv")]) == 2
    assert "activity table not found" in capsys.readouterr().err


def test_activity_without_treatment_classes(tmp_path):
    """An activity table for treatments without a known class still plots, uncoloured, and lists no class."""
    path = tmp_path / "activity.csv"
    write_activity(path, ["t1", "t2", "t3"])
    act = section(render_html("t", [sections.activity_section(path, {}, {})]), "activity")
    assert "2 of 3 treatments active" in act and "<h3>Activity: mAP vs significance (treatment level)</h3>" in act
    assert "<th>class</th>" not in act and "<td>t1</td>" in act
    coloured = section(render_html("t", [sections.activity_section(path, {"t1": "X"}, {"X": "#CC6677"})]), "activity")
    assert "<th>class</th>" in coloured and "<td>X</td>" in coloured


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the second process needs 2 cores")
def test_two_cores_draw_the_same_page(demo, tmp_path):
    """n_jobs=2: a second process draws the intensity and example sections; the page holds the same
    sections in the same order and byte-identical figures."""
    html = build_report(demo["table"], run_dir=demo["run"], output=tmp_path / "two.html", n_jobs=2)
    text = html.read_text()
    assert [s for s in re.findall(r'<section id="([a-z]+)">', text)] == list(SECTIONS)
    one = sorted((demo["html"].parent / "tiny_files").glob("*.png"))
    two = sorted((tmp_path / "two_files").glob("*.png"))
    assert [p.name for p in one] == [p.name for p in two] and len(one) > 5
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
    assert re.search(r"intensity_s.{0,80}examples_s", text, flags=re.S)  # timings in section order
