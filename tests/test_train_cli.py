"""``moa-features train`` as a user runs it: the question it answers, clear refusals, what the run folder holds.

Issue 24 (no silent change of question, controls named by the user, the per-treatment table) and
issue 22 (items 21, 22, 25, 29: unclear messages and run-folder permissions).
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from moa_features import schema
from moa_features.training import cli
from moa_features.training.writing import TREATMENT_COLUMNS

from _helpers import BBBC021, bbbc021_raw_wells, constructed_screen, missing_reason

PROFILES = BBBC021 / "BBBC021_feature_selected_mad_robustize.csv"
needs_bbbc021 = pytest.mark.skipif(not PROFILES.is_file(), reason=missing_reason(PROFILES))


def _train(capsys, *argv: str) -> tuple[int, str]:
    status = cli.main([*map(str, argv), "--no-report"])
    return status, capsys.readouterr().err


@needs_bbbc021
def test_without_treatment_column_train_names_the_likely_one_and_stops(capsys, tmp_path):
    status, err = _train(capsys, PROFILES, "-o", tmp_path / "run")
    assert status == 2 and "Traceback" not in err
    assert "'Metadata_Compound' looks like one" in err and "--treatment Metadata_Compound" in err
    assert "--split plate" in err and not (tmp_path / "run").exists()


def test_an_explicit_plate_split_is_a_choice_not_refused(capsys, tmp_path):
    table, _ = constructed_screen(tmp_path)
    df = pd.read_parquet(table).rename(columns={schema.TREATMENT: "Metadata_Compound"})
    df.to_parquet(table)
    status, err = _train(capsys, table, "-o", tmp_path / "auto", "--models", "knn", "--permutations", "10")
    assert status == 2 and "--treatment Metadata_Compound" in err
    status, err = _train(
        capsys, table, "-o", tmp_path / "plate", "--models", "knn", "--permutations", "10", "--split", "plate"
    )
    assert status == 0, err


@pytest.mark.parametrize(
    ("edit", "extra", "message"),
    [
        ("header", [], "has no rows (only a header)"),
        ("nan_plates", ["--split", "plate"], "plate column 'Metadata_Plate' is empty in 3 row(s) (table rows 1, 2, 3"),
        ("none", ["--split", "nscb"], "--split nscb needs a batch column: pass --batch COLUMN"),
    ],
)
def test_unusable_tables_and_options_get_a_message(capsys, tmp_path, edit, extra, message):
    table, _ = constructed_screen(tmp_path)
    df = pd.read_parquet(table)
    if edit == "header":
        df = df.iloc[:0]
    elif edit == "nan_plates":
        df[schema.PLATE] = df[schema.PLATE].astype(object)
        df.loc[:2, schema.PLATE] = np.nan
    path = tmp_path / "edited.csv"
    df.to_csv(path, index=False)
    status, err = _train(capsys, path, "-o", tmp_path / "run", "--models", "knn", *extra)
    assert status == 2 and message in err and "Traceback" not in err, err
    assert "'--split" not in err  # a message, not the repr of a KeyError


def test_run_folder_holds_the_per_treatment_table_and_follows_the_umask(capsys, tmp_path):
    table, _ = constructed_screen(tmp_path, n_plates=4)
    old = os.umask(0o022)
    try:
        status, err = _train(capsys, table, "-o", tmp_path / "run", "--models", "knn", "--permutations", "10")
    finally:
        os.umask(old)
    assert status == 0, err
    run = tmp_path / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o755  # colleagues on a shared server can read it
    assert stat.S_IMODE((run / "metrics.json").stat().st_mode) == 0o644
    per_treatment = pd.read_csv(run / "treatment_predictions.csv")
    assert list(per_treatment.columns) == TREATMENT_COLUMNS
    metrics = json.loads((run / "metrics.json").read_text())
    knn = per_treatment[(per_treatment["model"] == "knn") & per_treatment["scored"]]
    assert set(per_treatment.loc[~per_treatment["scored"], "true_moa"]) == set(metrics["unscored_classes"])
    assert len(knn) == metrics["models"]["knn"]["treatment_n"]
    assert knn["correct"].mean() == pytest.approx(metrics["models"]["knn"]["treatment_accuracy"])
    assert (knn["probability"] >= knn["true_moa_probability"]).all()
    activity = pd.read_csv(run / "activity.csv").set_index("treatment")["active"]
    assert knn.set_index("treatment")["active"].astype(bool).to_dict() == activity.loc[knn["treatment"]].to_dict()
    assert len(metrics["config"]["table_sha256"]) == 64


@pytest.mark.slow
@needs_bbbc021
def test_controls_named_by_query_give_the_same_figures(capsys, tmp_path):
    """Issue 24: BBBC021 raw means with DMSO renamed "vehicle" and --control give the figures of "DMSO"."""
    raw = bbbc021_raw_wells()
    renamed = raw.replace({"Metadata_Compound": {"DMSO": "vehicle"}, "Metadata_moa": {"DMSO": "vehicle"}})
    common = ["--treatment", "Metadata_Compound", "--models", "knn", "--permutations", "20", "--folds", "4"]
    figures = []
    for name, df, extra in (
        ("dmso", raw, ["--exclude-label", "DMSO"]),
        ("vehicle", renamed, ["--exclude-label", "vehicle", "--control", 'Metadata_Compound == "vehicle"']),
    ):
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        status, err = _train(capsys, path, "-o", tmp_path / name, *common, *extra)
        assert status == 0, err
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        # the controls, found in both, scale and sphere every fold (the recipe adds no per-plate table step)
        assert metrics["config"]["normalize_applied"] == "none"
        assert metrics["preprocessing"]["sphered_folds"] == metrics["config"]["n_folds"]
        figures.append(metrics["models"])
    assert figures[0] == figures[1]
