"""Issue 22 (extraction side): inputs that are never overwritten, sites that fail alone, runs that resume
only what their inputs made, outputs swapped in together, and messages instead of tracebacks.

Every case runs ``moa-features extract`` as a user does (``main``, or a real subprocess where a
file-size limit or a kill is involved) on copies of the real RxRx1 sites in ../shared/data/rxrx1
(skipped when absent) or the vendored ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moa_features import schema
from moa_features.extract import EXIT_OK, EXIT_SITES_FAILED, EXIT_USAGE, extract, main
from moa_features.features import FeatureParams

QUIET = ["-q", "--no-report", "--thumbs", "0"]
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, pre: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m moa_features.extract ARGS`` in a real shell (``pre``: e.g. a ``ulimit``)."""
    command = " ".join([pre, f"'{sys.executable}' -m moa_features.extract", *(f"'{a}'" for a in args)])
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _site_files(root: Path, experiment: str, plate: int) -> list[Path]:
    return sorted((root / "images" / experiment / f"Plate{plate}").glob("B02_s1_w*.png"))


# ----------------------------------------------------------------------------- 22.1: -o naming an input


@pytest.mark.parametrize("layout", ["rxrx", "loaddata", "manifest"])
def test_output_naming_the_input_is_refused_before_any_work(rxrx1_sample_copy, tmp_path, capsys, layout):
    root = rxrx1_sample_copy
    folder = root / "images" / "HUVEC-01" / "Plate1"
    if layout == "rxrx":
        given, csv = root, root / "metadata.csv"
    else:
        csv = tmp_path / f"{layout}.csv"
        row = {"Metadata_Plate": "P1", "Metadata_Well": "B02", "Metadata_Site": 1}
        if layout == "loaddata":
            row |= {f"FileName_w{c}": f"B02_s1_w{c}.png" for c in (1, 2, 3)}
            row |= {f"PathName_w{c}": str(folder) for c in (1, 2, 3)}
        else:
            row |= {f"path_w{c}": str(folder / f"B02_s1_w{c}.png") for c in (1, 2, 3)}
        pd.DataFrame([row]).to_csv(csv, index=False)
        given = csv
    before = csv.read_bytes()
    status = main([str(given), "-o", str(csv), "--features", "intensity", *QUIET])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and f"-o {csv} would overwrite the input" in err, err
    assert csv.read_bytes() == before


# ----------------------------------------------------------------------------- 22.11, 22.12: options


def test_min_diameter_above_max_diameter_is_refused(rxrx1_sample, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    status = main([str(rxrx1_sample), "-o", str(out), "--min-diameter", "50", "--max-diameter", "5", *QUIET])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and "--min-diameter 50 is larger than --max-diameter 5" in err, err
    assert not out.exists()


def test_objects_without_morphology_is_refused_not_an_empty_table(rxrx1_sample, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    status = main([str(rxrx1_sample), "-o", str(out), "--objects", "--features", "intensity", *QUIET])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and "--objects needs the morphology family" in err, err
    assert not out.exists() and not out.with_name("t.objects.parquet").exists()


# ----------------------------------------------------------------------------- 22.18: manifest stacks


def test_manifest_whose_first_stack_is_missing_measures_the_others(rxrx1_sample, tmp_path, capsys):
    folder = rxrx1_sample / "images" / "HUVEC-01" / "Plate1"
    stack = np.stack([np.asarray(Image.open(folder / f"B02_s1_w{c}.png")) for c in (1, 2, 3)])
    np.save(tmp_path / "good.npy", stack)
    manifest = tmp_path / "stacks.csv"
    rows = [("missing.npy", "A01"), ("good.npy", "A02")]
    pd.DataFrame([{"path": p, "Metadata_Plate": "P1", "Metadata_Well": w, "Metadata_Site": 1} for p, w in rows]).to_csv(
        manifest, index=False
    )
    out = tmp_path / "t.parquet"
    status = main([str(manifest), "-o", str(out), "--features", "intensity", "--illum", "none", *QUIET])
    err = capsys.readouterr().err
    assert status == EXIT_SITES_FAILED and "Traceback" not in err, err
    errors = pd.read_parquet(schema.sidecar_paths(out)["errors"])
    assert list(errors["path"]) == [str(tmp_path / "missing.npy")]
    assert list(pd.read_parquet(out)[schema.WELL]) == ["A02"]
    # no stack readable: a message naming the files, exit 2
    (tmp_path / "good.npy").unlink()
    status = main([str(manifest), "-o", str(tmp_path / "u.parquet"), "--features", "intensity", *QUIET])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and "none of the first 2 'path' files can be read" in err and "missing.npy" in err


# ----------------------------------------------------------------------------- 22.19: file size limit


def test_file_size_limit_while_writing_thumbnails_names_the_file_and_keeps_the_table(d18, tmp_path):
    out = tmp_path / "t.parquet"
    done = _cli(str(d18), "-o", str(out), "--features", "intensity", "-q", "--no-report", "--illum", "none")
    assert done.returncode == EXIT_OK, done.stderr
    before = out.read_bytes()
    args = [str(d18), "-o", str(out), "--features", "intensity", "-q", "--no-report", "--thumbs", "100"]
    done = _cli(*args, pre="ulimit -f 200;")  # 200 KiB: a chunk of 16 thumbnails is 960 KB
    assert done.returncode == EXIT_USAGE and "Traceback" not in done.stderr, done.stderr
    assert "File too large" in done.stderr and ".thumbs.npy" in done.stderr
    assert f"any previous {out} is kept as it was" in done.stderr
    assert out.read_bytes() == before


# ----------------------------------------------------------------------------- 22.6, 22.7: first pass


def test_a_16bit_site_is_an_error_row_under_the_default_texture_scheme(d18, tmp_path):
    for p in _site_files(d18, "HEPG2-01", 1):  # HEPG2-01_1: the first site of the run
        Image.fromarray(np.asarray(Image.open(p)).astype(np.uint16) * 257).save(p)
    out = tmp_path / "t.parquet"
    assert main([str(d18), "-o", str(out), "--features", "intensity,texture", *QUIET]) == EXIT_SITES_FAILED
    errors = pd.read_parquet(schema.sidecar_paths(out)["errors"])
    assert list(errors[schema.SITE_ID]) == ["HEPG2-01_1_B02_1"]
    assert errors["path"].iloc[0] == str(_site_files(d18, "HEPG2-01", 1)[0])
    assert "16-bit image, but the dataset's images are 8-bit" in errors["error"].iloc[0]
    assert len(pd.read_parquet(out)) == 17


def test_unreadable_control_sites_do_not_fail_the_good_sites(d18, tmp_path, capsys):
    meta = pd.read_csv(d18 / "metadata.csv")
    controls = meta["experiment"].isin(["HEPG2-01", "HUVEC-01"])  # 8 of 18 sites stay controls
    assert controls.sum() == 8
    meta.loc[~controls, "sirna"], meta.loc[~controls, "well_type"] = "s21721", "treatment"
    meta.to_csv(d18 / "metadata.csv", index=False)
    for experiment, plate in meta.loc[controls, ["experiment", "plate"]].itertuples(index=False):
        _site_files(d18, experiment, plate)[0].write_bytes(b"not a png")
    out = tmp_path / "t.parquet"
    status = main([str(d18), "-o", str(out), "--features", "intensity,texture", *QUIET])
    captured = capsys.readouterr()
    assert status == EXIT_SITES_FAILED, captured.err
    errors = pd.read_parquet(schema.sidecar_paths(out)["errors"])
    assert len(errors) == 8 and set(errors["stage"]) == {"read"}
    table = pd.read_parquet(out)
    contrast = [c for c in table.columns if c.startswith("Image_Texture_Contrast_w1_1")]
    assert len(table) == 10 and contrast and table[contrast].notna().all().all()
    assert "only 0 of 8 control site(s) could be read, so 10 other site(s) completed the sample" in captured.out
    texture = json.loads(schema.sidecar_paths(out)["summary"].read_text())["calibration"]["texture"]
    assert texture["controls_read"] == 0 and texture["other_sites"] == 10


# ----------------------------------------------------------------------------- 22.2: resume


def _killed_after_three_chunks(d18: Path, out: Path, *extra: str) -> None:
    """Start extract with one site per chunk and kill -9 it once three chunks are on disk."""
    import signal
    import time

    parts = schema.sidecar_paths(out)["parts"]
    args = [str(d18), "-o", str(out), "--chunk-size", "1", "--illum", "none", *extra, *QUIET]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "moa_features.extract", *args], start_new_session=True, env=env)
    deadline = time.time() + 120
    while not (parts / "chunk-00002.parquet").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before three chunks were done"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()


def _assert_resumed_in_part(d18, out):
    """Extract again over a killed run: some chunks are resumed, not all (the changed one is measured again)."""
    result = extract(
        d18,
        out,
        params=FeatureParams(families=("intensity", "morphology"), illum="none"),
        thumbs=None,
        chunk_size=1,
        progress=False,
    )
    assert result.exit_status == EXIT_OK and 1 <= result.chunks_resumed < 18


def test_resume_measures_again_a_chunk_whose_metadata_changed(d18, tmp_path):
    out = tmp_path / "t.parquet"
    _killed_after_three_chunks(d18, out, "--features", "intensity,morphology")
    meta = pd.read_csv(d18 / "metadata.csv")
    meta.loc[meta["site_id"] == "HEPG2-01_1_B02_1", "sirna"] = "s21721"  # the first site: chunk 0
    meta.to_csv(d18 / "metadata.csv", index=False)
    _assert_resumed_in_part(d18, out)
    table = pd.read_parquet(out).set_index(schema.SITE_ID)
    assert table.loc["HEPG2-01_1_B02_1", schema.TREATMENT] == "s21721"
    assert (table.drop(index="HEPG2-01_1_B02_1")[schema.TREATMENT] == "UNTREATED").all()


def test_resume_measures_again_a_chunk_whose_images_changed(d18, tmp_path):
    out = tmp_path / "t.parquet"
    _killed_after_three_chunks(d18, out, "--features", "intensity,morphology")
    first = _site_files(d18, "HEPG2-01", 1)[0]  # w1 of the first site (chunk 0), replaced by a darker copy
    Image.fromarray(np.asarray(Image.open(first)) // 2).save(first)
    _assert_resumed_in_part(d18, out)
    row = pd.read_parquet(out).set_index(schema.SITE_ID).loc["HEPG2-01_1_B02_1"]
    assert row["Image_Intensity_Max_w1"] == np.asarray(Image.open(first)).max()


# ----------------------------------------------------------------------------- 22.14, 22.17: outputs together


def test_a_run_killed_while_swapping_its_outputs_in_is_completed_by_the_next(d18, tmp_path):
    out = tmp_path / "t.parquet"
    side = schema.sidecar_paths(out)
    assert main([str(d18), "-o", str(out), "--features", "intensity", *QUIET]) == EXIT_OK
    old_errors = side["errors"].read_bytes()
    (tmp_path / ".t.parquet.dead1234.tmp").write_bytes(b"left by a killed run")
    # a run killed with SIGKILL right after the first rename of its swap (a real kill -9, in a real process)
    _site_files(d18, "HEPG2-01", 1)[0].write_bytes(b"broken")
    killer = (
        "import os, signal, sys; from moa_features.extraction import writer; real = os.replace\n"
        "def replace(a, b):\n    real(a, b)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        "def roll(journal, _real=writer.roll_forward):\n"
        "    if journal.exists():\n        os.replace = replace\n    _real(journal)\n"
        "writer.roll_forward = roll\n"
        "from moa_features.extraction.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [str(d18), "-o", str(out), "--features", "intensity", *QUIET]
    done = subprocess.run([sys.executable, "-c", killer, *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == -9, done.stderr
    assert side["journal"].exists()  # killed among its renames: errors are the new run's, the table still the old
    # the next run (here: the same command) completes the swap before anything else, and removes stale temporaries
    assert main(args) == EXIT_SITES_FAILED
    assert not side["journal"].exists() and not list(tmp_path.glob(".t.*.tmp"))
    errors = pd.read_parquet(side["errors"])
    assert side["errors"].read_bytes() != old_errors and list(errors[schema.SITE_ID]) == ["HEPG2-01_1_B02_1"]
    assert len(pd.read_parquet(out)) == 17 and json.loads(side["summary"].read_text())["n_failed"] == 1


def test_a_failed_run_that_keeps_the_table_keeps_its_first_pass_and_names_its_errors(d18, tmp_path):
    out = tmp_path / "t.parquet"
    args = [str(d18), "-o", str(out), "--features", "intensity,texture", "-q", "--thumbs", "0"]
    assert _cli(*args, "--no-report").returncode == EXIT_OK
    calibration = tmp_path / "t.calibration"
    before = {p.name: p.read_bytes() for p in calibration.iterdir()}
    for p in (d18 / "images").rglob("*_w1.png"):
        p.write_bytes(b"broken")
    done = _cli(*args)  # every site fails: the table is kept, and so is the first pass that made it
    assert done.returncode == EXIT_SITES_FAILED, done.stderr
    assert {p.name: p.read_bytes() for p in calibration.iterdir()} == before
    assert not (tmp_path / "t.calibration.new").exists()
    assert "see " + str(tmp_path / "t.failed-run.errors.parquet") in done.stderr


def test_the_summary_counts_sites_with_no_objects(rxrx1_sample_copy, tmp_path, capsys):
    first = rxrx1_sample_copy / "images" / "HUVEC-01" / "Plate1"
    for p in first.glob("B02_s1_w*.png"):  # an all-zero site: no cells
        Image.fromarray(np.zeros_like(np.asarray(Image.open(p)))).save(p)
    out = tmp_path / "t.parquet"
    args = [str(rxrx1_sample_copy), "-o", str(out), "--channels", "w1,w2,w3,w4", "--illum", "none", *QUIET]
    assert main([*args, "--features", "intensity,morphology"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "1 of 3 measured site(s) had no objects (Nuclei_Count 0)" in printed, printed
    assert json.loads(schema.sidecar_paths(out)["summary"].read_text())["n_without_objects"] == 1


# ----------------------------------------------------------------------------- scale: the site index


def _big_manifest(rxrx1_sample: Path, tmp_path: Path, n: int) -> Path:
    """A manifest of ``n`` sites (each its own plate, well and id) over the vendored real site's files."""
    folder = rxrx1_sample / "images" / "HUVEC-01" / "Plate1"
    files = {f"path_w{c}": str(folder / f"B02_s1_w{c}.png") for c in range(1, 7)}
    rows = [
        {**files, "Metadata_Plate": f"P{i // 384:04d}", "Metadata_Well": f"W{i % 384:03d}", "Metadata_Site": 1}
        for i in range(n)
    ]
    csv = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_the_site_index_holds_little_per_site(rxrx1_sample, tmp_path):
    """RxRx2 has 131,953 sites: the index a run holds must stay small per site (2.2 KB before)."""
    import gc
    import tracemalloc

    from moa_features.datasets import open_dataset

    def traced(n: int):
        """The dataset of an ``n``-site manifest and the memory held and peaking while it is opened."""
        (tmp_path / str(n)).mkdir()
        csv = _big_manifest(rxrx1_sample, tmp_path / str(n), n)
        gc.collect()
        tracemalloc.start()
        try:
            ds = open_dataset(csv)
            gc.collect()
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return ds, held, peak

    traced(10)  # lazy imports and caches: not per-site memory
    _, held_small, peak_small = traced(2_000)
    ds, held, peak = traced(20_000)
    assert len(ds.sites) == 20_000
    per_site = ((held - held_small) / 18_000, (peak - peak_small) / 18_000)  # marginal bytes per site
    # ~1.1 KB held per site with current pandas/numpy, ~1.3 KB at the dependency floors (pandas 1.5)
    assert per_site[0] < 1500 and per_site[1] < 1800, per_site
    site = ds.sites[0]
    assert site.paths[5] == str(rxrx1_sample.resolve() / "images" / "HUVEC-01" / "Plate1" / "B02_s1_w6.png")
    assert site.metadata["Metadata_Path_w6"] == site.paths[5] and "Metadata_Path_w6" not in site.keys


def test_an_index_csv_read_in_blocks_types_its_columns_as_a_whole_read_does(tmp_path):
    from moa_features.datasets import INDEX_ROWS, _read_index

    n = INDEX_ROWS + 10
    plates = [str(i % 7) for i in range(n)]
    plates[-1] = "x"  # text only in the last block: the column is text, as in one read of the whole file
    concentration = [0.5 if i % 3 else None for i in range(n)]
    csv = tmp_path / "index.csv"
    pd.DataFrame({"plate": plates, "concentration": concentration, "well": ["B02"] * n}).to_csv(csv, index=False)
    pd.testing.assert_frame_equal(_read_index(csv), pd.read_csv(csv))
