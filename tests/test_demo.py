"""``moa-features demo``: the train options it passes, its progress estimate, and a real end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from moa_features import demo, schema, train
from moa_features.io import read_table


def test_train_options_come_from_one_place_and_extra_options_win(tmp_path):
    argv = demo.train_argv(tmp_path / "t.parquet", tmp_path / "t.thumbs.npy", tmp_path / "run", "xgboost,knn", 3)
    args = train.build_parser().parse_args(argv)  # the real train parser accepts every option
    assert argv[-len(demo.TRAIN_OPTIONS) :] == list(demo.TRAIN_OPTIONS)
    assert args.split == demo.TRAIN_OPTIONS[demo.TRAIN_OPTIONS.index("--split") + 1]
    assert (args.models, args.seed, args.no_report) == ("xgboost,knn", 3, True)
    override = demo.train_argv(
        tmp_path / "t.parquet", tmp_path / "t.thumbs.npy", tmp_path / "run", "knn", 0, "--split plate --cnn-epochs 2"
    )
    args = train.build_parser().parse_args(override)
    assert (args.split, args.cnn_epochs) == ("plate", 2)


def test_default_demo_trains_the_ensemble_its_members_and_the_baseline():
    from moa_features.training.fitting import _expand_models

    models = demo.build_parser().parse_args([]).models.split(",")
    expanded = set(_expand_models(models, has_thumbs=True))
    assert {"ensemble", "xgboost", "knn", "cnn_embedding", "cnn", "majority"} <= expanded


def test_progress_estimate_uses_the_stages_done():
    first = demo.progress("extract", "go", 0.0, 100.0)
    assert first.startswith("[1/3] go") and "about 100 s left" in first
    # extraction took twice as long as expected: the estimate of what is left grows with it
    slow = demo.progress("train", "train", 70.0, 100.0)
    assert slow.startswith("[2/3]") and f"about {70 / demo.STAGE_SHARES['extract'] - 70:.0f} s left" in slow
    done = demo.STAGE_SHARES["extract"] + demo.STAGE_SHARES["train"]
    assert f"about {500 / done - 500:.0f} s left" in demo.progress("report", "r", 500.0, 100.0)
    assert demo.build_parser().parse_args(["--full"]).preset == "full"
    assert demo.build_parser().parse_args([]).preset == "demo"


@pytest.mark.slow
def test_demo_end_to_end_on_the_tiny_screen(tmp_path):
    """The real command in a subprocess: screen, features, annotation, held-out-treatment
    training and the report, with the ground truth beside the screen."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "moa_features",
            "demo",
            "--preset",
            "tiny",
            "--workdir",
            str(tmp_path),
            "--models",
            "xgboost,knn",
            "--n-jobs",
            "1",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[1/3]" in out.stdout and "[3/3]" in out.stdout and "s left" in out.stdout
    table = read_table(tmp_path / "features" / "demo-tiny.parquet")
    truth = pd.read_csv(tmp_path / ".cache" / "screen-tiny" / "ground_truth_treatments.csv")
    treated = table[table[schema.TREATMENT] != "EMPTY"]
    assert set(treated[schema.TREATMENT]) == set(truth["treatment"])
    # the annotation step gave every site the generator's MoA
    moa = dict(zip(truth["treatment"], truth["moa"]))
    assert (treated[schema.MOA] == treated[schema.TREATMENT].map(moa)).all()
    metrics = json.loads((tmp_path / "models" / "demo-tiny" / "metrics.json").read_text())
    split = demo.TRAIN_OPTIONS[demo.TRAIN_OPTIONS.index("--split") + 1]
    assert metrics["config"]["split_requested"] == split and {"xgboost", "knn"} <= set(metrics["models"])
    assert metrics["config"]["split"] in ("nsc", "nsc-plate")  # held-out treatments (and plates where possible)
    html = (tmp_path / "reports" / "demo-tiny.html").read_text()
    assert "demo train options" in html and split in html
    assert "Synthetic screen." in html and "separable by construction" in html  # said beside the figures
    assert "real-data evidence is BBBC021" in html
