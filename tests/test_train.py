"""End-to-end training runs on a constructed screen, the output contract, CLI, predict and Dask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from moa_features import predict as predict_mod
from moa_features import profiling, schema, train
from moa_features.columns import Columns, control_mask
from moa_features.io import read_table

from _helpers import CLASSES, constructed_screen

CORE = ("macro_recall", "balanced_accuracy", "macro_f1", "accuracy")


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> tuple[Path, Path]:
    return constructed_screen(tmp_path_factory.mktemp("screen"))


@pytest.fixture(scope="module")
def full_run(screen, tmp_path_factory) -> tuple[Path, dict]:
    table, thumbs = screen
    out = tmp_path_factory.mktemp("runs") / "full"
    metrics = train.run_training(table, out, thumbs, split="plate", cnn_epochs=2, cnn_patience=1)
    return out, metrics


@pytest.mark.slow
def test_full_run_writes_the_contract(full_run, screen):
    out, metrics = full_run
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["models"].keys() == metrics["models"].keys()
    assert set(on_disk["models"]) == {
        "cnn", "xgboost", "knn", "cnn_embedding", "ensemble", "ensemble_no_embedding", "majority"
    }  # fmt: skip
    for name, m in on_disk["models"].items():
        assert m["aggregation"] == on_disk["aggregation"]
        for prefix in ("", "well_", "treatment_"):
            for key in CORE:
                assert 0.0 <= m[f"{prefix}{key}"] <= 1.0, (name, prefix, key)
            for key in ("accuracy", "macro_recall"):
                lo, hi = m[f"{prefix}{key}_ci95"]
                assert 0 <= lo <= hi <= 1 and 0 < m[f"{prefix}{key}_p"] <= 1
            assert m[f"{prefix}expected_chance"]["macro_recall"] == pytest.approx(1 / 3)
    assert on_disk["classes"] == sorted(CLASSES) and on_disk["unscored_classes"] == []
    for name in on_disk["models"]:
        assert set(on_disk["per_class_recall"][name]) == set(CLASSES)
        cm = np.array(on_disk["confusion_matrices"][name]["matrix"])
        assert cm.sum() == 15 and cm.shape == (3, 3)  # 5 treatment profiles per held-out plate
    cfg = on_disk["config"]
    assert cfg["table"] == str(screen[0].resolve()) and cfg["thumbs"] == str(screen[1].resolve())
    assert cfg["split"] == "plate" and cfg["label"] == schema.MOA and cfg["group"] == schema.PLATE
    assert cfg["question"].startswith("treatment recognition")
    assert cfg["seed"] == 0 and {"xgboost", "xgboost-cpu"} & set(cfg["versions"]) and cfg["n_folds"] == 3
    assert len(cfg["cnn_embedding_epochs"]) == 3 and all(1 <= e <= 2 for e in cfg["cnn_embedding_epochs"])
    assert {"ensemble", "cnn", "final_fit"} <= set(on_disk["timings"])
    assert len(on_disk["ensemble"]["folds"]) == 3 and on_disk["ensemble"]["note"]
    for fold in on_disk["ensemble"]["folds"]:  # weights per fold, with and without the embedding
        assert set(fold["weights"]) == {"xgboost", "knn", "cnn_embedding"}
        assert sum(fold["weights"].values()) == pytest.approx(1)
        assert set(fold["temperatures"]) == set(fold["weights"]) and all(t > 0 for t in fold["temperatures"].values())
        assert set(fold["ensemble_no_embedding_weights"]) == {"xgboost", "knn"}
    assert on_disk["embedding"] == on_disk["ensemble"]["embedding"] and "CNN embedding" in on_disk["embedding"]
    # The informative models beat chance on held-out plates; the centred 1-NN places controls too.
    m = on_disk["models"]
    for name in ("xgboost", "knn", "ensemble", "cnn"):
        assert m[name]["treatment_accuracy"] > m[name]["treatment_expected_chance"]["accuracy"] + 0.3, name
    assert on_disk["per_class_recall"]["knn"]["Negative control"] > 0.5
    assert m["majority"]["macro_recall"] == pytest.approx(1 / 3)

    pred = read_table(out / "predictions.parquet")
    assert set(pred["model"]) == set(m)
    for c in (
        "model",
        "fold",
        schema.SITE_ID,
        schema.PLATE,
        schema.WELL,
        "y_true",
        "y_pred",
        "well_key",
        "treatment_key",
        "unit_key",
    ):
        assert c in pred.columns
    proba = pred[[f"proba_{c}" for c in sorted(CLASSES)]].to_numpy()
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-4)
    for _, f in pred.groupby("model"):
        assert f[schema.SITE_ID].is_unique and len(f) == 54
        # a plate is only ever predicted in its own fold
        assert (f.groupby(schema.PLATE)["fold"].nunique() == 1).all()
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["cnn"]) == 3 and "val_loss" in hist["cnn"][0]
    imp = read_table(out / "feature_importance.csv")
    assert list(imp.columns) == ["feature", "importance"] and imp["importance"].sum() > 0
    for f in ("preprocess.joblib", "xgboost.json", "knn.joblib", "ensemble.joblib", "cnn.keras", "cnn_embedding.keras"):
        assert (out / f).is_file(), f


@pytest.mark.slow
def test_predict_reloads_the_run(full_run, screen, tmp_path):
    out, _ = full_run
    table, thumbs = screen
    dest = tmp_path / "pred.parquet"
    assert predict_mod.main([str(out), str(table), "--thumbs", str(thumbs), "-o", str(dest)]) == 0
    pred = read_table(dest)
    assert set(pred["model"]) == {"cnn", "xgboost", "knn", "cnn_embedding", "ensemble"}
    x = pred[pred["model"] == "xgboost"]
    assert len(x) == 54 and (x["y_pred"] == x["y_true"]).mean() > 0.8  # refitted on these rows
    # Without thumbnails only the table models run (the ensemble has a CNN member).
    assert predict_mod.main([str(out), str(table), "-o", str(dest)]) == 0
    assert set(read_table(dest)["model"]) == {"xgboost", "knn"}
    assert predict_mod.main([str(tmp_path), str(table)]) == 2


@pytest.mark.slow
def test_cli_nsc_with_exclusion_and_treatment_accuracy(screen, tmp_path, capsys):
    table, _ = screen
    out = tmp_path / "nsc"
    rc = train.main(
        [
            str(table),
            "-o",
            str(out),
            "--split",
            "nsc",
            "--exclude-label",
            "Negative control",
            "--models",
            "xgboost,knn",
            "--no-report",
            "--no-save-models",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["DNA damage", "Microtubule"]
    assert metrics["config"]["command"].startswith("python -m moa_features.train")
    assert metrics["config"]["question"] == "MoA of held-out treatments"
    for name in ("xgboost", "knn", "majority"):
        m = metrics["models"][name]
        assert 0 <= m["treatment_accuracy"] <= 1 and m["n_treatments"] == 4
    # held-out compounds of a known MoA are still recognised by their shifted feature
    assert metrics["models"]["knn"]["treatment_accuracy"] == 1.0
    assert "fold 4/4" in capsys.readouterr().err


def test_auto_split_holds_out_treatments_and_leaves_out_unscorable_classes(screen, tmp_path, capsys):
    table, _ = screen
    out = tmp_path / "auto"
    assert (
        train.main(
            [
                str(table),
                "-o",
                str(out),
                "--models",
                "knn",
                "--folds",
                "loo",
                "--permutations",
                "100",
                "--no-report",
                "--no-save-models",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    # every treatment sits on every plate, so nsc-plate is impossible and auto means nsc
    assert metrics["config"]["split"] == "nsc" and metrics["config"]["split_requested"] == "auto"
    assert metrics["config"]["folds"] == "leave-one-out" and metrics["config"]["n_folds"] == 5
    # the control class has a single treatment: never in training when tested, so not scored
    assert metrics["unscored_classes"] == ["Negative control"]
    assert "cannot be scored" in capsys.readouterr().err
    assert metrics["models"]["knn"]["n_treatments"] == 4


def test_inner_split_of_an_nsc_run_is_nsc(screen):
    table, _ = screen
    data = train.load_training_data(read_table(table), exclude_labels=["Negative control"])
    settings = train.Settings(models=("ensemble",), split="nsc")
    folds, params = train.outer_folds(data, settings.split, settings.n_splits)
    fitted, _ = train.fit_fold(data, folds[0][0], settings, params)
    inner, val = fitted["inner_split"]
    assert len(inner) and len(val) and not set(data.treatments[inner]) & set(data.treatments[val])
    assert set(np.concatenate([inner, val])) <= set(folds[0][0])


def test_cli_errors_are_clear(screen, tmp_path, capsys):
    table, _ = screen
    df = read_table(table).drop(columns=[schema.MOA])
    no_label = tmp_path / "nolabel.parquet"
    df.to_parquet(no_label)
    assert train.main([str(no_label), "-o", str(tmp_path / "x"), "--no-report"]) == 2
    assert "--annotation" in capsys.readouterr().err
    assert train.main([str(table), "-o", str(tmp_path / "x"), "--models", "cnn", "--no-report"]) == 2
    assert "--thumbs" in capsys.readouterr().err
    assert train.main([str(table), "-o", str(tmp_path / "x"), "--split", "nscb", "--no-report"]) == 2
    assert "batch" in capsys.readouterr().err


@pytest.mark.slow
def test_bbbc021_profiles_nsc_subset(tmp_path, bbbc021_profiles_slice):
    """A real CellProfiler profile table (BBBC021, the vendored slice) with its own column names trains under NSC."""
    df = read_table(bbbc021_profiles_slice)
    keep = df["Metadata_moa"].isin(["DMSO", "Eg5 inhibitors", "Microtubule destabilizers", "Actin disruptors"])
    table = tmp_path / "bbbc021_subset.csv"
    df[keep].to_csv(table, index=False)
    metrics = train.run_training(
        table,
        tmp_path / "run",
        split="nsc",
        columns=Columns(treatment="Metadata_Compound"),
        exclude_labels=["DMSO"],
        normalize="none",
        models=("knn",),
        save_models=False,
    )
    assert metrics["config"]["n_folds"] == 9  # 2 + 4 + 3 compounds (10 folds capped at 9 compounds)
    assert metrics["models"]["knn"]["treatment_accuracy"] > 0.7
    assert metrics["models"]["majority"]["treatment_accuracy"] < 0.5


def test_dask_scheduler_run_matches_local_structure(screen, tmp_path):
    distributed = pytest.importorskip("distributed")
    table, _ = screen
    local = train.run_training(table, tmp_path / "local", split="plate", models=("xgboost",), save_models=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        remote = train.run_training(
            table,
            tmp_path / "dask",
            split="plate",
            models=("xgboost",),
            scheduler=c.scheduler_address,
            save_models=False,
        )
    assert remote["models"].keys() == local["models"].keys()
    assert remote["models"]["xgboost"].keys() == local["models"]["xgboost"].keys()
    assert remote["models"]["xgboost"]["macro_recall"] > remote["models"]["majority"]["macro_recall"] + 0.3
    assert remote["config"]["scheduler"] == c.scheduler_address


def test_active_only_drops_inactive_treatments(screen, tmp_path):
    activity = pytest.importorskip("moa_features.activity", reason="phenotypic activity (copairs) not installed")
    if Path(activity.__file__).parent != Path(train.__file__).parent:
        pytest.skip(f"moa_features.activity comes from another checkout ({activity.__file__})")
    table, _ = screen
    df = read_table(table)
    # make drug2_1 inactive: its wells look like controls
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    inert = df[schema.TREATMENT] == "drug2_1"
    ctrl = df[df[schema.TREATMENT] == "EMPTY"][feats].to_numpy()
    df.loc[inert, feats] = ctrl[: int(inert.sum())]
    df[feats] += 1000.0  # raw, as extract writes it: activity must be called on control-normalised profiles
    path = tmp_path / "inert.parquet"
    df.to_parquet(path)
    expected = activity.phenotypic_activity(profiling.normalize(df, "controls", control=control_mask(df)), seed=0)
    inactive = sorted(expected.loc[~expected["active"].astype(bool), "treatment"].astype(str))
    metrics = train.run_training(
        path,
        tmp_path / "run",
        split="plate",
        models=("knn",),
        active_only=True,
        save_models=False,
        n_permutations=100,
    )
    assert [t.split("@")[0] for t in inactive] == ["drug2_1"]
    assert metrics["config"]["inactive_treatments_dropped"] == inactive
    assert metrics["config"]["n_rows"] == len(df) - int(inert.sum())


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the second process needs 2 cores")
def test_second_process_gives_the_same_run(screen, tmp_path, capsys):
    """With --n-jobs 2 a second process fits the Keras baseline of every fold and the final refit beside
    the folds' other models: the same predictions, histories and saved models as in one process."""
    table, thumbs = screen
    runs = {}
    for n_jobs in (1, 2):
        out = tmp_path / f"n{n_jobs}"
        metrics = train.run_training(table, out, thumbs, split="plate", models=("cnn", "xgboost", "knn"), cnn_epochs=2,
                                     cnn_patience=1, n_jobs=n_jobs, n_permutations=20)  # fmt: skip
        runs[n_jobs] = out
        assert ("a second process fits" in capsys.readouterr().err) == (n_jobs == 2)
        assert "final_fit" in metrics["timings"]
    one, two = (read_table(runs[n] / "predictions.parquet") for n in (1, 2))
    assert list(one["model"].unique()) == list(two["model"].unique()) == ["cnn", "xgboost", "knn", "majority"]
    proba = [c for c in one.columns if c.startswith("proba_")]
    np.testing.assert_array_equal(one[proba].to_numpy(), two[proba].to_numpy())
    hist = [json.loads((runs[n] / "history.json").read_text())["cnn"] for n in (1, 2)]
    assert hist[0] == hist[1] and len(hist[0]) == 3
    assert sorted(p.name for p in runs[1].iterdir()) == sorted(p.name for p in runs[2].iterdir())
    for n in (1, 2):  # the saved models reload and predict the same
        argv = [str(runs[n]), str(table), "--thumbs", str(thumbs), "-o", str(tmp_path / f"p{n}.parquet")]
        assert predict_mod.main(argv) == 0
    p1, p2 = (read_table(tmp_path / f"p{n}.parquet") for n in (1, 2))
    assert set(p1["model"]) == {"cnn", "xgboost", "knn"}
    cols = [c for c in p1.columns if c.startswith("proba_")]
    np.testing.assert_array_equal(p1[cols].to_numpy(), p2[cols].to_numpy())


def test_second_process_only_with_two_cores_and_leaves_the_rest():
    from moa_features.training.fitting import SecondProcess, Settings

    class Data:  # what wanted() reads: thumbnails present or not
        thumbs = np.zeros((1, 4, 4, 1), np.uint8)

    cores = os.cpu_count() or 1
    assert not SecondProcess.wanted(Settings(models=("cnn", "knn"), n_jobs=1), Data(), True)
    assert SecondProcess.wanted(Settings(models=("cnn", "knn"), n_jobs=-1), Data(), False) == (cores >= 2)
    assert SecondProcess.wanted(Settings(models=("xgboost", "knn"), n_jobs=-1), Data(), True) == (cores >= 2)
    assert not SecondProcess.wanted(Settings(models=("xgboost", "knn"), n_jobs=-1), Data(), False)
    assert not SecondProcess.wanted(Settings(models=("cnn",), n_jobs=-1, scheduler="tcp://x:1"), Data(), True)
    if cores >= 2:
        assert SecondProcess.rest(Settings(n_jobs=2)).n_jobs == 1
        assert SecondProcess.rest(Settings(n_jobs=-1)).n_jobs == cores - 1
