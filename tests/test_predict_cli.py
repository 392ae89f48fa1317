"""``moa-features predict`` as a user runs it: abstention, bad rows and columns, where its output goes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features import predict, schema, train
from moa_features.io import read_table

pytest.importorskip("copairs")
P = 8  # features


def screen(seed: int = 0, inert: bool = False) -> pd.DataFrame:
    """4 plates x (8 EMPTY wells + 4 drugs of 2 MoAs, one well each), one row per well.

    ``inert=True`` adds a treatment "inert" whose 4 wells (one per plate) are drawn like controls.
    """
    rng = np.random.default_rng(seed)
    drugs = {"a1": ("A", 0), "a2": ("A", 0), "b1": ("B", 1), "b2": ("B", 1)}
    rows = []
    for p in range(4):
        gain = rng.normal(0, 0.3, size=P)
        wells = [("EMPTY", "Negative control", None)] * 8 + [(d, m, j) for d, (m, j) in drugs.items()]
        wells += [("inert", "A", None)] if inert else []
        for w, (treatment, moa, j) in enumerate(wells):
            f = rng.normal(0, 1, size=P) + gain
            if j is not None:
                f[j] += 6
            rows.append({schema.PLATE: f"P{p}", schema.WELL: f"W{w:02d}", schema.TREATMENT: treatment,
                         schema.MOA: moa, **{f"Cells_Intensity_Mean_f{i}": v for i, v in enumerate(f)}})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    table = root / "screen.csv"
    screen().to_csv(table, index=False)
    run = root / "models" / "screen"
    train.run_training(table, run, split="nsc", models=("knn",), n_permutations=20, exclude_labels=["Negative control"])
    new = root / "new.csv"
    screen(seed=1, inert=True).to_csv(new, index=False)
    return {"root": root, "table": table, "run": run, "new": new}


def _predict(trained, capsys, *args: str) -> tuple[int, str]:
    status = predict.main([str(trained["run"]), *args])
    return status, capsys.readouterr().err


def test_inactive_treatments_abstain_and_active_ones_get_their_moa(trained, capsys, tmp_path):
    out = tmp_path / "pred.parquet"
    status, err = _predict(trained, capsys, str(trained["new"]), "-o", str(out))
    assert status == 0, err
    per_treatment = read_table(predict.treatments_path(out)).set_index("treatment")
    assert per_treatment.loc["inert", "call"] == "inactive" and not per_treatment.loc["inert", "active"]
    assert "not active against its plate's negative controls" in per_treatment.loc["inert", "reason"]
    for drug, moa in {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}.items():
        assert per_treatment.loc[drug, "call"] == moa and per_treatment.loc[drug, "active"]
    rows = read_table(out)
    assert set(rows.loc[rows[schema.TREATMENT] == "inert", "call"]) == {"inactive"}
    assert set(rows.loc[rows[schema.TREATMENT] == "EMPTY", "call"]) == {"negative control"}
    assert "inert" in rows[schema.TREATMENT].tolist() and {"y_pred", "active", "call", "reason"} <= set(rows.columns)
    assert "1 inactive" in err and "0 uncertain" in err


def test_low_probability_is_uncertain_with_its_reason(trained, capsys, tmp_path):
    out = tmp_path / "pred.csv"
    status, err = _predict(trained, capsys, str(trained["new"]), "-o", str(out), "--uncertain-below", "1.01")
    assert status == 2 and "--uncertain-below" in err  # not a probability
    status, _ = _predict(
        trained, capsys, str(trained["new"]), "-o", str(out), "--uncertain-below", "1", "--no-activity"
    )
    per_treatment = pd.read_csv(predict.treatments_path(out))
    assert status == 0 and (per_treatment["call"] == "uncertain").all()
    assert per_treatment["reason"].str.contains("< 1 \\(--uncertain-below\\)").all()


def test_rows_without_finite_features_get_no_prediction_and_are_counted(trained, capsys, tmp_path):
    df = pd.read_csv(trained["new"])
    features = schema.feature_columns(df.columns)
    df.loc[[12, 13], features] = np.nan
    df.loc[14, features] = np.inf
    path = tmp_path / "holes.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "pred.parquet"
    status, err = _predict(trained, capsys, str(path), "-o", str(out))
    assert status == 0, err
    rows = read_table(out)
    assert len(rows) == len(df)
    holes = rows[rows["call"] == "no prediction"]
    assert sorted(holes[schema.WELL].tolist()) == sorted(df.loc[[12, 13, 14], schema.WELL].tolist())
    assert holes["y_pred"].isna().all() and "3 row(s) with no finite feature value" in err


def test_text_in_a_feature_column_is_named(trained, capsys, tmp_path):
    df = pd.read_csv(trained["new"]).astype({"Cells_Intensity_Mean_f3": object})
    df.loc[5, "Cells_Intensity_Mean_f3"] = "abc"
    path = tmp_path / "text.csv"
    df.to_csv(path, index=False)
    status, err = _predict(trained, capsys, str(path), "-o", str(tmp_path / "p.parquet"))
    assert status == 2 and "Traceback" not in err
    assert str(path) in err and "'Cells_Intensity_Mean_f3'" in err and "'abc'" in err and "data row 6" in err


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("RUN/predictions.parquet", "inside the run folder"),
        ("RUN/sub/x.csv", "inside the run folder"),
        ("TABLE", "would overwrite the input"),
        ("x.txt", "unknown table format"),
        ("FOLDER.parquet", "is a folder"),
    ],
)
def test_outputs_are_checked_before_any_work(trained, capsys, tmp_path, output, message):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    table = tmp_path / "new.csv"
    shutil.copy(trained["new"], table)
    (tmp_path / "FOLDER.parquet").mkdir()
    target = output.replace("RUN", str(run)).replace("TABLE", str(table)).replace("FOLDER", str(tmp_path / "FOLDER"))
    target = target if target.startswith("/") else str(tmp_path / target)
    before = {p: p.read_bytes() for p in [*run.rglob("*"), table] if p.is_file()}
    status = predict.main([str(run), str(table), "-o", target])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in before} == before  # nothing overwritten
    assert not (run / "sub").exists()


def test_default_output_is_outside_the_run(trained, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, err = _predict(trained, capsys, str(trained["new"]))
    assert status == 0, err
    assert (tmp_path / "predictions" / "screen" / "new.parquet").is_file()
    assert (tmp_path / "predictions" / "screen" / "new-treatments.parquet").is_file()


def test_a_run_config_without_normalize_is_named(trained, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("normalize", "normalize_applied", "label", "columns"):
        metrics["config"].pop(key)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "manifest.json").unlink()  # an older run
    status = predict.main([str(run), str(trained["new"]), "-o", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err
    assert status == 2 and "config has no 'normalize' entry" in err and "--normalize" not in err


def test_controls_named_by_query(trained, capsys, tmp_path):
    """A new table whose controls are called "vehicle": --control finds them and the calls are the same."""
    out = tmp_path / "dmso.parquet"
    assert predict.main([str(trained["run"]), str(trained["new"]), "-o", str(out)]) == 0
    df = pd.read_csv(trained["new"]).replace({schema.TREATMENT: {"EMPTY": "vehicle"}})
    path = tmp_path / "vehicle.csv"
    df.to_csv(path, index=False)
    vehicle = tmp_path / "vehicle.parquet"
    query = f'{schema.TREATMENT} == "vehicle"'
    assert predict.main([str(trained["run"]), str(path), "-o", str(vehicle), "--control", query]) == 0
    a, b = (read_table(predict.treatments_path(p)) for p in (out, vehicle))
    pd.testing.assert_frame_equal(a, b)
    capsys.readouterr()
