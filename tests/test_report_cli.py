"""``moa-features report`` as a user runs it: where the page goes, whose page it replaces, which inputs belong together.

Issue 24 (reports named after the run, never silently replacing another run's report; controls
named by the user) and issue 22 (items 1, 15, 20, 26: outputs checked before any work, a run
reported only with its own table).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_predict_cli import screen

from moa_features import report, train

from _helpers import BBBC021, missing_reason

PROFILES = BBBC021 / "BBBC021_feature_selected_mad_robustize.csv"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    (root / "features").mkdir()
    table = root / "features" / "screen.csv"
    screen().to_csv(table, index=False)
    other = root / "features" / "other.csv"
    screen(seed=3).to_csv(other, index=False)
    run = root / "models" / "nsc"
    train.run_training(table, run, split="nsc", models=("knn",), n_permutations=20)
    return {"root": root, "table": table, "other": other, "run": run}


def _report(capsys, *argv: str | Path) -> tuple[int, str]:
    status = report.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.err + captured.out


def test_the_report_is_named_after_the_run_and_holds_the_per_treatment_table(made, capsys, monkeypatch):
    monkeypatch.chdir(made["root"])
    status, out = _report(capsys, made["table"], "--run", made["run"])
    assert status == 0, out
    page = made["root"] / "reports" / "nsc.html"
    html = page.read_text()
    assert "Every held-out treatment (treatment level)" in html
    for drug in ("a1@", "a2@", "b1@", "b2@"):
        assert drug not in html  # no concentration column: treatments are plain names
    assert re.search(r"<td>a1</td>\s*<td>A</td>", html)
    assert "The run was trained on this table" in html
    assert 'name="moa-features-report"' in html


def test_a_report_never_silently_replaces_another_runs_page(made, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other_run = tmp_path / "elsewhere" / "nsc"  # same run name, another run
    shutil.copytree(made["run"], other_run)
    assert _report(capsys, made["table"])[0] == 0  # the table's own page: reports/screen.html
    assert _report(capsys, made["table"], "--run", made["run"])[0] == 0
    before = (tmp_path / "reports" / "nsc.html").read_bytes()
    status, err = _report(capsys, made["table"], "--run", other_run)
    assert status == 2 and f"is the report of run {made['run'].resolve()}" in err and "--overwrite" in err
    assert (tmp_path / "reports" / "nsc.html").read_bytes() == before
    assert _report(capsys, made["table"], "--run", other_run, "--overwrite")[0] == 0
    # the run's page may replace the table's own page, not a page of another table
    assert _report(capsys, made["table"], "--run", made["run"], "-o", "reports/screen.html")[0] == 0
    status, err = _report(capsys, made["other"], "-o", "reports/screen.html")
    assert status == 2 and "is the report of run" in err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("TABLE", "would overwrite the input"),
        ("FOLDER", "is a folder"),
        ("/proc/x.html", "cannot write the report"),
    ],
)
def test_outputs_are_checked_before_any_work(made, capsys, tmp_path, target, message):
    table = tmp_path / "screen.csv"
    shutil.copy(made["table"], table)
    (tmp_path / "FOLDER").mkdir()
    output = {"TABLE": str(table), "FOLDER": str(tmp_path / "FOLDER")}.get(target, target)
    before = table.read_bytes()
    status, err = _report(capsys, table, "-o", output)
    assert status == 2 and message in err and "Traceback" not in err, err
    assert table.read_bytes() == before and list((tmp_path / "FOLDER").iterdir()) == []


def test_a_vote_store_that_is_not_sqlite_is_named(made, capsys, tmp_path):
    votes = tmp_path / "votes.csv"
    votes.write_text("moa,channel\nA,w1\n")
    status, err = _report(capsys, made["table"], "--votes", votes, "-o", tmp_path / "r.html")
    assert status == 2 and f"--votes {votes}: not an SQLite vote store" in err and not (tmp_path / "r.html").exists()


def test_a_run_trained_on_another_table_is_refused(made, capsys, tmp_path):
    status, err = _report(capsys, made["other"], "--run", made["run"], "-o", tmp_path / "r.html")
    assert status == 2 and f"was trained on {made['table'].resolve()}, not on {made['other']}" in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.skipif(not PROFILES.is_file(), reason=missing_reason(PROFILES))
def test_controls_are_the_users_and_rows_are_called_wells(capsys, tmp_path):
    """BBBC021 profiles: 330 DMSO wells found as controls with --treatment; one row per well, no channels."""
    status, out = _report(capsys, PROFILES, "--treatment", "Metadata_Compound", "-o", tmp_path / "b.html")
    assert status == 0, out
    html = (tmp_path / "b.html").read_text()
    assert "<td>negative-control wells</td><td>330</td>" in html
    assert "632 wells · 13 classes · features from" in html and "channels" not in html.split("</header>")[0]
    vehicle = pd.read_csv(PROFILES).replace({"Metadata_Compound": {"DMSO": "vehicle"}})
    path = tmp_path / "vehicle.csv"
    vehicle.to_csv(path, index=False)
    query = 'Metadata_Compound == "vehicle"'
    assert _report(capsys, path, "--control", query, "-o", tmp_path / "v.html")[0] == 0
    assert "<td>negative-control wells</td><td>330</td>" in (tmp_path / "v.html").read_text()


def test_run_sections_render_what_training_recorded(tmp_path):
    """The ensemble's weights, its embedding sentence, scored/unscored classes, the synthetic note; no CNN wording
    when no CNN trained."""
    from moa_features.reports.html import render_html
    from moa_features.reports.run_sections import models_section, question_section

    from _helpers import write_run

    run = tmp_path / "run"
    metrics = write_run(run, ["A", "B", "C"], nsc=True)
    for name in ("cnn",):
        metrics["models"].pop(name)
        metrics["per_class_recall"].pop(name)
        metrics["confusion_matrices"].pop(name)
    metrics["models"]["ensemble_no_embedding"] = dict(metrics["models"]["ensemble"], treatment_macro_recall=0.5)
    metrics["scored_classes"] = ["A", "B"]
    metrics["unscored_classes"] = ["C", "Negative control"]
    metrics["unscored_reasons"] = {
        "C": "tested only in folds whose training has none of this class",
        "Negative control": "no held-out truth: trained on but never held out",
    }
    metrics["negative_control"] = "Negative controls: used to normalise and sphere the profiles (training plates only)."
    metrics["ensemble"] = {
        "folds": [
            {"weights": {"xgboost": 0.7, "knn": 0.3}, "fallback": None, "validation_loss": 0.4},
            {"weights": {"xgboost": 1.0, "knn": 0.0}, "fallback": "xgboost", "validation_loss": 0.5},
        ],
        "note": "no blend beat the best single member on the inner validation in 1 of 2 folds",
        "embedding": "without thumbnails the embedding CNN was not trained; nothing to compare",
    }
    metrics["config"]["synthetic"] = True
    (run / "history.json").write_text("{}")  # no CNN trained, no curves
    html = render_html("t", [question_section(run, metrics), models_section(run, metrics)])
    assert "Synthetic screen." in html and "separable by construction" in html
    assert "1 class(es) cannot be scored (C)" in html and "over the 2 classes with held-out truth" in html
    assert "never held out, so not scored: Negative control" in html and "used to normalise and sphere" in html
    assert "Ensemble: without thumbnails the embedding CNN was not trained" in html
    assert "Ensemble weights chosen on each fold" in html and "<td>0.85</td>" not in html
    assert re.search(r"<td>XGBoost \(features\)</td>\s*<td class=\"num\">0.85</td>", html)
    assert "Ensemble without the CNN embedding" in html
    assert "Keras CNN" not in html and "CNN training curves" not in html
