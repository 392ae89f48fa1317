"""The main job on real images: tables, errors, thumbnails, resume, Dask, exit status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moa_features import schema
from moa_features.extract import EXIT_SITES_FAILED, EXIT_USAGE, extract, main, thumbnail
from moa_features.features import FeatureParams

from _helpers import load_rxrx1_site

INTENSITY = FeatureParams(families=("intensity",))


def test_rxrx1_table_errors_and_thumbs(tmp_path, rxrx1_root):
    out = tmp_path / "rxrx1.parquet"
    result = extract(rxrx1_root, out, params=INTENSITY, thumbs=100, progress=False)
    assert (result.n_sites, result.n_ok, result.n_failed) == (36, 18, 18)
    assert result.exit_status == EXIT_SITES_FAILED
    df = pd.read_parquet(out)
    assert len(df) == 18 and df[schema.SITE_ID].is_monotonic_increasing
    assert (df[schema.SITE] == 1).all()  # site 2 of every well lacks w5/w6
    features = schema.feature_columns(df.columns)
    assert "Image_Intensity_Sum_w1" in features and all(df[features].dtypes == np.float64)
    # Intensity sum is exact against the PNG itself
    row = df.iloc[0]
    png = np.asarray(Image.open(row["Metadata_Path_w2"]))
    assert row["Image_Intensity_Sum_w2"] == png.sum(dtype=np.int64)
    errors = pd.read_parquet(schema.sidecar_paths(out)["errors"])
    assert len(errors) == 18 and set(errors["stage"]) == {"read"}
    assert errors["error"].str.contains(r"_s2_w5\.png: file not found").all()
    thumbs = np.load(schema.sidecar_paths(out)["thumbs"])
    assert thumbs.shape == (18, 100, 100, 6) and thumbs.dtype == np.uint8
    # row-aligned: the thumbnail's mean follows the site's mean intensity
    np.testing.assert_allclose(thumbs[:, :, :, 0].mean(axis=(1, 2)), df["Image_Intensity_Mean_w1"], rtol=0.02)
    summary = json.loads(schema.sidecar_paths(out)["summary"].read_text())
    assert summary["n_failed"] == 18 and summary["channels"] == ["w1", "w2", "w3", "w4", "w5", "w6"]
    assert not schema.sidecar_paths(out)["parts"].exists()


def test_thumbnail_is_area_average():
    img = np.zeros((2, 200, 200), np.uint8)
    img[0, :100] = 200  # top half bright
    img[1] = 7
    t = thumbnail(img, 100)
    assert t.shape == (100, 100, 2)
    assert (t[:50, :, 0] == 200).all() and (t[50:, :, 0] == 0).all() and (t[..., 1] == 7).all()
    t16 = thumbnail((img.astype(np.uint16) * 257), 50)
    np.testing.assert_array_equal(t16, thumbnail(img, 50))


def test_corrupt_png_and_wrong_size_are_recorded_and_run_goes_on(tmp_path, rxrx1_copy):
    imgs = rxrx1_copy / "images"
    bad_png = imgs / "HUVEC-01/Plate1/B02_s1_w2.png"
    bad_png.write_bytes(bad_png.read_bytes()[:1500])
    wrong = imgs / "RPE-01/Plate2/B02_s1_w1.png"
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(wrong)
    out = tmp_path / "t.csv"
    status = main([str(rxrx1_copy), "-o", str(out), "--features", "intensity", "--thumbs", "0", "-q", "--no-report"])
    assert status == EXIT_SITES_FAILED
    df = pd.read_csv(out)
    assert len(df) == 16
    errors = pd.read_parquet(schema.sidecar_paths(out)["errors"]).set_index(schema.SITE_ID)
    assert "cannot decode image" in errors.loc["HUVEC-01_1_B02_1", "error"]
    assert errors.loc["HUVEC-01_1_B02_1", "path"] == str(bad_png)
    assert "has size 300x300, expected 512x512" in errors.loc["RPE-01_2_B02_1", "error"]
    assert not schema.sidecar_paths(out)["thumbs"].exists()


def test_missing_column_stops_before_any_work(tmp_path, rxrx1_copy, capsys):
    meta = pd.read_csv(rxrx1_copy / "metadata.csv").drop(columns=["plate"])
    meta.to_csv(rxrx1_copy / "metadata.csv", index=False)
    out = tmp_path / "x.parquet"
    assert main([str(rxrx1_copy), "-o", str(out), "-q", "--no-report"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "missing required column(s) plate" in err and "metadata.csv" in err
    assert not out.exists() and not schema.sidecar_paths(out)["parts"].exists()


def test_parallel_equals_serial(tmp_path, rxrx1_root):
    a = extract(rxrx1_root, tmp_path / "a.parquet", params=INTENSITY, thumbs=32, n_jobs=1, chunk_size=5, progress=False)
    b = extract(rxrx1_root, tmp_path / "b.parquet", params=INTENSITY, thumbs=32, n_jobs=2, chunk_size=3, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(a.table), pd.read_parquet(b.table))
    np.testing.assert_array_equal(np.load(a.thumbs), np.load(b.thumbs))


def _write_screen(root: Path, n_sites: int, size: int = 384) -> Path:
    """A small RxRx-layout screen from real RxRx1 pixels (crops shifted per site)."""
    src = list(load_rxrx1_site("HUVEC-01"))  # vendored in tests/data
    rows = []
    for i in range(n_sites):
        plate, well, site = 1 + i % 2, f"B{2 + i // 4:02d}", 1 + (i // 2) % 2
        folder = root / "images" / "EXP-01" / f"Plate{plate}"
        folder.mkdir(parents=True, exist_ok=True)
        off = (7 * i) % (512 - size)
        for c in range(6):
            Image.fromarray(np.ascontiguousarray(src[c][off : off + size, off : off + size])).save(
                folder / f"{well}_s{site}_w{c + 1}.png"
            )
        rows.append(
            dict(
                site_id=f"EXP-01_{plate}_{well}_{site}",
                well_id=f"EXP-01_{plate}_{well}",
                cell_type="HUVEC",
                dataset="train",
                experiment="EXP-01",
                plate=plate,
                well=well,
                site=site,
                well_type="treatment",
                treatment="EGF",
                treatment_conc=10.0,
            )
        )
    pd.DataFrame(rows).drop_duplicates("site_id").to_csv(root / "metadata.csv", index=False)
    return root


@pytest.mark.slow
def test_sigkill_then_resume_recomputes_only_unfinished_chunks(tmp_path):
    screen = _write_screen(tmp_path / "screen", 24)
    ref = extract(screen, tmp_path / "ref.parquet", thumbs=32, chunk_size=2, progress=False)
    assert ref.n_ok == 24, pd.read_parquet(ref.errors)["error"].head().tolist()
    out = tmp_path / "run.parquet"
    parts = schema.sidecar_paths(out)["parts"]
    cmd = [
        sys.executable,
        "-m",
        "moa_features.extract",
        str(screen),
        "-o",
        str(out),
        "--thumbs",
        "32",
        "--chunk-size",
        "2",
        "-q",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 120
    while len(list(parts.glob("chunk-*[0-9].parquet"))) < 3:
        assert proc.poll() is None, "extract finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("chunk-*[0-9].parquet")))
    assert not out.exists() and 3 <= done_before < ref.n_chunks
    result = extract(screen, out, thumbs=32, chunk_size=2, progress=False)
    assert result.chunks_resumed == done_before
    assert result.chunks_computed == ref.n_chunks - done_before
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref.table))
    np.testing.assert_array_equal(np.load(result.thumbs), np.load(ref.thumbs))


def test_changed_parameters_do_not_reuse_stale_chunks(tmp_path, rxrx1_root):
    out = tmp_path / "t.parquet"
    from moa_features.datasets import open_dataset
    from moa_features.extraction.chunks import ChunkStore, fingerprint

    sites = open_dataset(rxrx1_root).sites
    store = ChunkStore(schema.sidecar_paths(out)["parts"], fingerprint(sites, FeatureParams(), 100, 16))
    (store.folder / "chunk-00000.parquet").write_text("stale")
    result = extract(rxrx1_root, out, params=INTENSITY, thumbs=None, progress=False)
    assert result.chunks_resumed == 0 and result.n_ok == 18


@pytest.mark.slow
def test_dask_local_cluster_matches_local_run(tmp_path, rxrx1_root):
    from dask.distributed import LocalCluster

    local = extract(rxrx1_root, tmp_path / "local.parquet", params=INTENSITY, thumbs=32, chunk_size=4, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dist = extract(
            rxrx1_root,
            tmp_path / "dask.parquet",
            params=INTENSITY,
            thumbs=32,
            chunk_size=4,
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert dist.backend == "dask"
    pd.testing.assert_frame_equal(pd.read_parquet(local.table), pd.read_parquet(dist.table))
    np.testing.assert_array_equal(np.load(local.thumbs), np.load(dist.thumbs))
    pd.testing.assert_frame_equal(pd.read_parquet(local.errors), pd.read_parquet(dist.errors))


@pytest.mark.slow
def test_dask_worker_lost_mid_run_loses_and_duplicates_nothing(tmp_path):
    import threading

    from dask.distributed import Client, LocalCluster

    screen = _write_screen(tmp_path / "screen", 40, size=384)
    ref = extract(screen, tmp_path / "ref.parquet", thumbs=None, chunk_size=1, progress=False)
    assert ref.n_ok == 40, pd.read_parquet(ref.errors)["error"].head().tolist()
    out = tmp_path / "dask.parquet"
    parts = schema.sidecar_paths(out)["parts"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster.scheduler_address) as c:
            victim = sorted(c.run(os.getpid).items())[0][1]
        done_at_kill, finished = [], threading.Event()

        def kill_one_worker():
            deadline = time.monotonic() + 120
            while not finished.is_set() and time.monotonic() < deadline:
                n_done = len(list(parts.glob("chunk-*[0-9].parquet")))
                if n_done >= 4:
                    os.kill(victim, signal.SIGKILL)  # the nanny restarts it; its tasks are rescheduled
                    done_at_kill.append(n_done)
                    return
                time.sleep(0.005)

        t = threading.Thread(target=kill_one_worker)
        t.start()
        try:
            result = extract(
                screen, out, thumbs=None, chunk_size=1, scheduler=cluster.scheduler_address, progress=False
            )
        finally:
            finished.set()
            t.join()
    assert done_at_kill and done_at_kill[0] < ref.n_chunks, "the worker was not killed mid-run"
    assert result.chunks_computed == ref.n_chunks
    df = pd.read_parquet(out)
    assert result.n_ok == ref.n_ok and df[schema.SITE_ID].is_unique
    pd.testing.assert_frame_equal(df, pd.read_parquet(ref.table))


def test_extract_start_up_imports_no_deep_learning_framework():
    code = (
        "import sys, moa_features, moa_features.cli, moa_features.extract, moa_features.features.morphology;"
        "heavy = sorted(m for m in ('keras', 'jax', 'torch', 'tensorflow') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    help_ = subprocess.run([sys.executable, "-m", "moa_features.extract", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--scheduler" in help_.stdout


def test_python_m_extract_runs_its_module_once():
    """``python -m moa_features.extract`` is one module run once: nothing imports it again as a library."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['moa_features.extract', '--help']\n"
        "try:\n"
        "    runpy.run_module('moa_features.extract', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print('again' if 'moa_features.extract' in sys.modules else 'once')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "once", out.stdout[-500:]
