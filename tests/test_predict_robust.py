"""Issue 15 for run folders and predict: written whole, one run id, corrupt or missing files named."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features import predict, schema, train
from moa_features.columns import Columns
from moa_features.io import OutputLockedError, read_json, read_thumbs
from moa_features.runs import (
    MANIFEST,
    RunFolderError,
    check_run_folder,
    open_run,
    read_manifest,
)

RXRX1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rxrx1"
CLASSES = ("Negative control", "Microtubule", "DNA damage")


def _table(folder: Path, seed: int = 0, n_features: int = 6) -> Path:
    """A small feature table: 3 plates x 3 classes x 3 wells x 2 sites, classes shift one feature each."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(3):
        for k, moa in enumerate(CLASSES):
            for w in range(3):
                for s in (1, 2):
                    f = rng.normal(10, 1, size=n_features)
                    f[k] += 6 * (k > 0)
                    well = f"{'BCD'[k]}{w + 2:02d}"
                    rows.append(
                        {
                            schema.PLATE: f"e_{p}",
                            schema.WELL: well,
                            schema.SITE: s,
                            schema.TREATMENT: "EMPTY" if k == 0 else f"drug{k}",
                            schema.MOA: moa,
                            schema.SITE_ID: f"e_{p}_{well}_{s}",
                            schema.WELL_ID: f"e_{p}_{well}",
                            **{f"Image_Intensity_Mean_w{i + 1}": v for i, v in enumerate(f)},
                        }
                    )
    path = folder / f"table{seed}_{n_features}.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def _train(table: Path, output: Path, models: tuple[str, ...], overwrite: bool = False) -> str:
    """Train into ``output`` (locked, written whole through :func:`open_run`); return the run id."""
    train.run_training(table, output, models=models, split="plate", overwrite=overwrite)
    return read_manifest(output)["run_id"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    table = _table(root)
    _train(table, root / "both", ("xgboost", "knn"))
    _train(_table(root, seed=1), root / "xgb", ("xgboost",))  # another run: other rows, other model
    return {"table": table, "both": root / "both", "xgb": root / "xgb"}


@pytest.fixture
def run(runs, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(runs["both"], dst)
    return dst


def _predict(run_dir: Path, table: Path, capsys, *extra: str) -> tuple[int, str]:
    status = predict.main([str(run_dir), str(table), "-o", str(run_dir.parent / "pred.parquet"), *extra])
    return status, capsys.readouterr().err


# ----------------------------------------------------------------------------- 2. run folders written whole


def test_every_run_file_is_in_the_manifest_under_one_run_id(runs):
    manifest = read_manifest(runs["both"])
    assert manifest["run_id"] and {"metrics.json", "preprocess.joblib", "xgboost.json", "knn.joblib"} <= set(
        manifest["files"]
    )
    assert predict.load_run(runs["both"])["run_id"] == manifest["run_id"]
    assert not list(runs["both"].parent.glob(".both.*"))  # no temporary folder left behind


def test_retraining_into_a_used_folder_is_refused_without_overwrite_and_replaces_it_whole(runs, tmp_path, capsys):
    out = tmp_path / "r"
    shutil.copytree(runs["both"], out)
    with pytest.raises(RunFolderError, match=r"r: already holds a run \(.*knn.joblib.*\); pass --overwrite"):
        check_run_folder(out)
    old_id = read_manifest(out)["run_id"]
    new_id = _train(runs["table"], out, ("xgboost",), overwrite=True)
    assert new_id != old_id and not (out / "knn.joblib").exists()  # the old kNN is gone, not silently reused
    status, _ = _predict(out, runs["table"], capsys)
    pred = pd.read_parquet(tmp_path / "pred.parquet")
    assert status == 0 and set(pred["model"]) == {"xgboost"}


def test_a_failed_training_leaves_the_previous_run_untouched(runs, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(runs["both"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyError):
        train.run_training(
            runs["table"], out, models=("xgboost",), columns=Columns(label="Metadata_nope"), overwrite=True
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "models" / "r"
    code = (
        "import sys, time; from moa_features.runs import open_run\n"
        f"with open_run({str(out)!r}) as run:\n"
        "    print('holding', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        locked = rf"run folder .*r is being written by another run \(pid {holder.pid} on"
        with pytest.raises(OutputLockedError, match=locked), open_run(out):
            pass
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    with open_run(out) as run:  # the kernel released the dead holder's lock
        (run.path / "x.txt").write_text("x")
    assert (out / "x.txt").read_text() == "x" and (out / MANIFEST).exists()


def test_run_folder_in_an_unwritable_place_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"):
        check_run_folder(tmp_path / "file")
    with pytest.raises(RunFolderError, match="cannot write a run folder into"):
        check_run_folder(Path("/sys/moa_features_test/run") if Path("/sys").is_dir() else tmp_path / "file" / "run")


# ----------------------------------------------------------------------------- predict: files of one run


def test_a_model_file_from_another_run_is_named(runs, run, capsys):
    shutil.copy(runs["xgb"] / "xgboost.json", run / "xgboost.json")  # same name, another run
    status, err = _predict(run, runs["table"], capsys)
    assert status == 2 and "xgboost.json was changed or truncated after run" in err
    mixed = runs["xgb"].parent / "mixed"
    shutil.copytree(runs["xgb"], mixed)
    shutil.copy(runs["both"] / "knn.joblib", mixed / "knn.joblib")  # a stale kNN beside a fresh XGBoost
    status, err = _predict(mixed, runs["table"], capsys, "--models", "knn")
    assert status == 2 and "knn.joblib is not part of run " in err


def test_a_missing_model_file_is_named_not_skipped(runs, run, capsys):
    (run / "xgboost.json").unlink()
    status, err = _predict(run, runs["table"], capsys)
    assert status == 2
    assert "model file(s) xgboost.json saved by this run but missing; predict would silently leave out xgboost" in err
    assert not (run.parent / "pred.parquet").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("xgboost.json", "xgboost.json: XGBoost model is truncated or not valid JSON"),
        ("knn.joblib", "knn.joblib: cannot load the knn model"),
        ("metrics.json", "metrics.json: run metrics is truncated or not valid JSON"),
        ("preprocess.joblib", "preprocess.joblib: cannot load the preprocessing pipeline"),
    ],
)
def test_truncated_files_of_a_run_without_manifest_are_named(runs, run, capsys, name, message):
    (run / MANIFEST).unlink()  # a run of an older version: only the file's own check can catch it
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: len(data) // 2])
    status, err = _predict(run, runs["table"], capsys)
    assert status == 2 and message in err, err
    assert "Traceback" not in err and "dmlc" not in err and "Stack trace" not in err


def test_truncated_file_of_a_run_with_manifest_is_named(runs, run, capsys):
    data = (run / "knn.joblib").read_bytes()
    (run / "knn.joblib").write_bytes(data[:100])
    status, err = _predict(run, runs["table"], capsys)
    assert status == 2 and "knn.joblib was changed or truncated after run" in err


def test_truncated_manifest_or_summary_json_is_named(run, tmp_path):
    (run / MANIFEST).write_text('{"run_id": "x", "fi')
    with pytest.raises(RunFolderError, match=r"manifest.json: truncated or not a run manifest"):
        predict.load_run(run)
    summary = tmp_path / "t.summary.json"
    summary.write_text('{"n_sites": 3, "n_ok"')
    with pytest.raises(ValueError, match=r"t.summary.json: run summary is truncated or not valid JSON"):
        read_json(summary, "run summary")


# ----------------------------------------------------------------------------- thumbnails


@pytest.fixture(scope="module")
def rxrx1_table(tmp_path_factory) -> Path:
    if not (RXRX1 / "metadata.csv").is_file():
        pytest.skip(f"real RxRx1 sample not found at {RXRX1}")
    from moa_features.extract import extract
    from moa_features.features import FeatureParams

    out = tmp_path_factory.mktemp("rx") / "rx.parquet"
    extract(RXRX1, out, params=FeatureParams(families=("intensity",)), thumbs=16, progress=False)
    return out


def test_thumbs_must_be_npy_with_one_aligned_row_per_table_row(rxrx1_table, tmp_path):
    table = pd.read_parquet(rxrx1_table)
    thumbs_path = schema.sidecar_paths(rxrx1_table)["thumbs"]
    assert read_thumbs(thumbs_path, table).shape == (18, 16, 16, 6)
    not_npy = tmp_path / "thumbs.csv"
    table.head().to_csv(not_npy)
    with pytest.raises(ValueError, match=r"thumbs.csv: thumbnails must be a .npy array"):
        read_thumbs(not_npy, table)
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj.npy: not a readable .npy thumbnail array"):
        read_thumbs(pickled, table)
    arr = np.load(thumbs_path)
    np.save(tmp_path / "short.npy", arr[:-1])
    with pytest.raises(ValueError, match=r"short.npy: 17 thumbnails, but the table has 18 rows"):
        read_thumbs(tmp_path / "short.npy", table)
    np.save(tmp_path / "shuffled.npy", arr[np.random.default_rng(0).permutation(len(arr))])
    with pytest.raises(ValueError, match=r"shuffled.npy: the thumbnails do not follow the table's rows"):
        read_thumbs(tmp_path / "shuffled.npy", table)


def test_predict_names_a_bad_thumbs_file(runs, run, capsys, tmp_path):
    bad = tmp_path / "thumbs.txt"
    bad.write_text("not an array")
    status, err = _predict(run, runs["table"], capsys, "--thumbs", str(bad))
    assert status == 2 and "thumbs.txt: thumbnails must be a .npy array" in err and "allow_pickle" not in err
