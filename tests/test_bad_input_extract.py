"""Issue 15 reproductions for extraction: concurrency, typos, bad files, image sets, resume.

Every case uses copies of the real RxRx1 sites in ../shared/data/rxrx1 and real subprocesses
where a second process is involved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
from moa_features.datasets import DatasetError, SiteReadError, open_dataset, read_image
from moa_features.extract import (
    EXIT_OK,
    EXIT_SITES_FAILED,
    EXIT_USAGE,
    ChunkStore,
    extract,
    main,
)
from moa_features.extraction.chunks import fingerprint
from moa_features.features import FeatureParams, measure

from _helpers import RXRX1

INTENSITY = FeatureParams(families=("intensity",))
QUIET = ["-q", "--no-report", "--thumbs", "0"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "moa_features.extract", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the first run ended before {what}: {proc.communicate()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- 1. one writer per output


@pytest.mark.slow
def test_second_extract_into_the_same_output_refuses_and_names_the_holder(tmp_path, d18):
    out = tmp_path / "out" / "t.parquet"
    side = schema.sidecar_paths(out)
    base = [str(d18), "-o", str(out), "--n-jobs", "1", "--chunk-size", "2", "--features", "morphology", *QUIET]
    first = subprocess.Popen(
        [sys.executable, "-m", "moa_features.extract", *base, "--nuclear-channel", "w2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: any(side["parts"].glob("chunk-*[0-9].parquet")), first, "its first chunk")
    first.send_signal(signal.SIGSTOP)  # mid-run, holding the lock, however slow the others start
    try:
        other = _cli(*base)  # other settings (nuclei on w1)
        same = _cli(*base, "--nuclear-channel", "w2")  # identical run
    finally:
        first.send_signal(signal.SIGCONT)
    for second in (other, same):
        assert second.returncode == EXIT_USAGE, second.stderr
        assert f"being written by another run (pid {first.pid} on " in second.stderr
        assert "started 20" in second.stderr and "Traceback" not in second.stderr
        assert "Failed to open local file" not in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == EXIT_OK, stderr
    assert not side["lock"].exists() and not side["parts"].exists()
    df = pd.read_parquet(out)
    assert len(df) == 18
    ds = open_dataset(d18)
    w2 = FeatureParams(families=("morphology",), nuclear_channel="w2")
    for i in (0, 1, 17):  # rows 0-1 held the other run's values before the lock
        site = ds.sites[i]
        assert df[schema.SITE_ID].iat[i] == site.site_id
        assert df["Nuclei_Count"].iat[i] == measure(site.load(), site.channels, w2)["Nuclei_Count"]
    assert json.loads(side["summary"].read_text())["params"]["nuclear_channel"] == "w2"


def test_a_chunk_made_with_other_settings_is_never_assembled(tmp_path, d18):
    out = tmp_path / "t.parquet"
    side = schema.sidecar_paths(out)
    sites = open_dataset(d18).sites
    # A chunk written by a run with nuclei on w2, left in a folder whose config names this run's settings
    # (what a racing second writer used to leave behind).
    w2 = FeatureParams(families=("morphology",), nuclear_channel="w2")
    from moa_features.extract import process_chunk

    stale = ChunkStore(side["parts"], fingerprint(sites, w2, None, 4))
    stale.write(process_chunk(0, sites[:4], w2, None, None), sites[:4])
    w1 = FeatureParams(families=("morphology",))
    config = {"fingerprint": fingerprint(sites, w1, None, 4)}
    (side["parts"] / "config.json").write_text(json.dumps(config))
    result = extract(d18, out, params=w1, thumbs=None, chunk_size=4, progress=False)
    assert result.chunks_resumed == 0 and result.chunks_computed == result.n_chunks
    df = pd.read_parquet(out)
    first = sites[0]
    assert df["Nuclei_Count"].iat[0] == measure(first.load(), first.channels, w1)["Nuclei_Count"]


def test_lock_of_a_killed_run_does_not_block_the_next(tmp_path, d18):
    """The lock is the kernel's: a SIGKILLed holder leaves a lock file but no lock."""
    out = tmp_path / "t.parquet"
    side = schema.sidecar_paths(out)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moa_features.extract",
            str(d18),
            "-o",
            str(out),
            "--chunk-size",
            "1",
            "--features",
            "morphology",
            *QUIET,
        ],
        start_new_session=True,
    )
    _wait_for(side["lock"].exists, proc, "it took the lock")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert side["lock"].exists()
    assert main([str(d18), "-o", str(out), "--features", "intensity", *QUIET]) == EXIT_OK
    assert not side["lock"].exists()


# ----------------------------------------------------------------------------- 3, 9. validate before work


@pytest.fixture
def good_table(tmp_path, d18) -> Path:
    out = tmp_path / "good.parquet"
    assert main([str(d18), "-o", str(out), "--features", "intensity", "-q", "--no-report", "--thumbs", "16"]) == EXIT_OK
    return out


@pytest.mark.parametrize(
    "option, message",
    [
        (
            ["--nuclear-channel", "W1"],
            (
                "--nuclear-channel W1: not a channel of .*metadata.csv; the channels are "
                "w1, w2, w3, w4, w5, w6 \\(names are case-sensitive: did you mean w1\\?\\)"
            ),
        ),
        (["--cell-channel", "w9"], "--cell-channel w9: not a channel"),
        (["--texture-levels", "1"], "--texture-levels 1: expected a number of grey levels, 2 to 65536"),
        (["--image-size", "256x256"], "--image-size 256x256: none of 18 sites probed has that size \\(found 512x512"),
        (["--image-size", "abc"], "--image-size abc: expected whole numbers separated by 'x'"),
        (["--texture-distances", "1,x"], "--texture-distances 1,x: expected whole numbers"),
        (["--chunk-size", "0"], "--chunk-size 0: expected a whole number of sites >= 1"),
        (["--thumbs", "-1"], "--thumbs -1: expected a thumbnail size in pixels >= 1"),
        (["--features", "intensity,textures"], "unknown feature family \\['textures'\\]"),
    ],
)
def test_a_typo_fails_before_work_and_keeps_the_good_table(good_table, d18, capsys, option, message):
    side = schema.sidecar_paths(good_table)
    before = {p: p.read_bytes() for p in (good_table, side["thumbs"], side["errors"], side["summary"])}
    status = main([str(d18), "-o", str(good_table), "--features", "intensity,texture,morphology", "-q", *option])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert re.search(message, err), err
    assert {p: p.read_bytes() for p in before} == before
    assert not side["parts"].exists() and not side["lock"].exists()


def test_output_that_is_a_folder_or_unwritable_fails_before_work(tmp_path, d18, capsys):
    folder = tmp_path / "out.parquet"
    folder.mkdir()
    assert main([str(d18), "-o", str(folder), *QUIET]) == EXIT_USAGE
    assert "out.parquet: output table is a folder; expected a file name" in capsys.readouterr().err
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses new files even to root
        unwritable = Path("/sys/moa_features_test/t.parquet")
        if not Path("/sys").is_dir():
            pytest.skip("no read-only folder available to root")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        unwritable = ro / "t.parquet"
    assert main([str(d18), "-o", str(unwritable), *QUIET]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{unwritable}: cannot write the output table into {unwritable.parent}" in err
    assert "Traceback" not in err


def test_malformed_annotation_fails_before_work(tmp_path, d18, capsys):
    bad = tmp_path / "ann.csv"
    pd.DataFrame({"treatment": ["UNTREATED"], "mechanism": ["x"]}).to_csv(bad, index=False)
    out = tmp_path / "t.parquet"
    assert main([str(d18), "-o", str(out), "--annotation", str(bad), *QUIET]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{bad}: annotation table lacks column(s) moa (found: treatment, mechanism)" in err
    assert main([str(d18), "-o", str(out), "--annotation", str(tmp_path / "nope.csv"), *QUIET]) == EXIT_USAGE
    assert "nope.csv: annotation table not found" in capsys.readouterr().err
    assert not out.exists() and not schema.sidecar_paths(out)["parts"].exists()


# ----------------------------------------------------------------------------- 8. every site fails


def _missing_file_loaddata(tmp_path: Path) -> Path:
    csv = tmp_path / "load.csv"
    pd.DataFrame(
        {
            "Metadata_Plate": ["P1"],
            "Metadata_Well": ["B02"],
            "FileName_DNA": ["gone.png"],
            "PathName_DNA": [str(tmp_path)],
        }
    ).to_csv(csv, index=False)
    return csv


def test_every_site_failing_says_why_and_writes_no_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "t.parquet"
    from moa_features.pipeline import extract_command  # `moa-features extract`: extract, then the report

    status = extract_command([str(_missing_file_loaddata(tmp_path)), "-o", str(out), "-q", "--thumbs", "0"])
    captured = capsys.readouterr()
    assert status == EXIT_SITES_FAILED
    assert "no report: no site of" in captured.err
    assert "every site failed, e.g. " in captured.out and "gone.png: file not found" in captured.out
    assert not (tmp_path / "reports").exists()


def test_every_site_failing_keeps_the_existing_table(tmp_path, good_table, capsys):
    side = schema.sidecar_paths(good_table)
    before = {p: p.read_bytes() for p in (good_table, side["thumbs"], side["errors"], side["summary"])}
    status = main([str(_missing_file_loaddata(tmp_path)), "-o", str(good_table), *QUIET])
    out = capsys.readouterr().out
    assert status == EXIT_SITES_FAILED
    assert f"the previous table {good_table} and its side files were KEPT" in out
    assert {p: p.read_bytes() for p in before} == before
    failed = pd.read_parquet(side["failed_errors"])
    assert len(failed) == 1 and failed["error"].str.contains("gone.png: file not found").all()


# ----------------------------------------------------------------------------- 4. channels of the whole dataset


def test_channels_come_from_every_plate_not_the_first(tmp_path, d18):
    first_plate = d18 / "images" / "HEPG2-01" / "Plate1"  # holds the first site read
    for p in [*first_plate.glob("*_w5.png"), *first_plate.glob("*_w6.png")]:
        p.unlink()
    ds = open_dataset(d18)
    assert ds.channels == ("w1", "w2", "w3", "w4", "w5", "w6")
    result = extract(d18, tmp_path / "t.parquet", params=INTENSITY, thumbs=None, progress=False)
    assert result.exit_status == EXIT_SITES_FAILED and result.n_failed == 1
    errors = pd.read_parquet(result.errors)
    assert errors[schema.SITE_ID].tolist() == ["HEPG2-01_1_B02_1"]
    assert errors["error"].str.contains(r"B02_s1_w5\.png: file not found").all()
    assert "Image_Intensity_Sum_w6" in pd.read_parquet(result.table).columns


# ----------------------------------------------------------------------------- 7. palette, RGB, bit depth


def _palette_png(grey: np.ndarray, path: Path, colour: bool = False) -> None:
    """Save ``grey`` as a palette PNG whose indices are NOT the grey values (a shuffled palette)."""
    rng = np.random.default_rng(0)
    order = rng.permutation(256)  # index i shows grey value order[i]
    inverse = np.argsort(order)
    index = np.ascontiguousarray(inverse[grey].astype(np.uint8))
    im = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    palette = np.repeat(order[:, None], 3, axis=1).astype(np.uint8)
    if colour:
        palette[:, 1] //= 2
    im.putpalette(palette.ravel().tolist())
    im.save(path)


def test_palette_png_is_read_as_grey_values(tmp_path, d18):
    png = d18 / "images" / "HUVEC-01" / "Plate1" / "B02_s1_w1.png"
    grey = np.asarray(Image.open(png))
    _palette_png(grey, png)
    assert Image.open(png).mode == "P"
    np.testing.assert_array_equal(read_image(png), grey)
    result = extract(d18, tmp_path / "t.parquet", params=INTENSITY, thumbs=None, progress=False)
    assert result.exit_status == EXIT_OK
    df = pd.read_parquet(result.table).set_index(schema.SITE_ID)
    assert df.loc["HUVEC-01_1_B02_1", "Image_Intensity_Sum_w1"] == grey.sum(dtype=np.int64)
    _palette_png(grey, png, colour=True)
    with pytest.raises(SiteReadError, match=r"B02_s1_w1\.png: a colour palette image; expected grey values"):
        read_image(png)


@pytest.mark.parametrize("experiment, plate", [("RPE-01", 2), ("HEPG2-01", 1)])  # HEPG2-01_1: the first site
def test_a_16bit_site_among_8bit_sites_is_an_error_naming_the_file(tmp_path, d18, experiment, plate):
    folder = d18 / "images" / experiment / f"Plate{plate}"
    for c in range(1, 7):
        p = folder / f"B02_s1_w{c}.png"
        Image.fromarray(np.asarray(Image.open(p)).astype(np.uint16) * 257).save(p)
    result = extract(d18, tmp_path / "t.parquet", params=INTENSITY, thumbs=None, progress=False)
    assert result.n_failed == 1 and result.n_ok == 17
    err = pd.read_parquet(result.errors).iloc[0]
    assert err[schema.SITE_ID] == f"{experiment}_{plate}_B02_1" and err["path"] == str(folder / "B02_s1_w1.png")
    assert "16-bit image, but the dataset's images are 8-bit" in err["error"]


# ----------------------------------------------------------------------------- 10. plate numbers


@pytest.mark.parametrize("value, shown", [(np.nan, "nan"), ("two", "'two'"), (1.5, "1.5")])
def test_nan_or_non_integer_plate_is_exit_2_naming_column_and_row(tmp_path, d18, capsys, value, shown):
    meta = pd.read_csv(d18 / "metadata.csv")
    meta["plate"] = meta["plate"].astype(object)
    meta.loc[4, "plate"] = value
    meta.to_csv(d18 / "metadata.csv", index=False)
    assert main([str(d18), "-o", str(tmp_path / "t.parquet"), *QUIET]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "metadata.csv: column 'plate' row 5 (line 6) is" in err and shown in err
    assert "expected a whole number in every row (1 row(s) are not)" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- 11. LoadData rows are image sets


def _crops_loaddata(tmp_path: Path, tile: int = 256, with_crop_column: bool = True) -> tuple[Path, dict]:
    """Single-cell-style crops on disk: two real RxRx1 fields cut into 4 tiles each, per channel."""
    if not (RXRX1 / "metadata.csv").is_file():
        pytest.skip(f"real RxRx1 sample not found at {RXRX1}")
    folder = tmp_path / "crops"
    folder.mkdir()
    rows, sums = [], {}
    for well, src in (("B02", "HUVEC-01/Plate1/B02_s1"), ("B03", "RPE-01/Plate1/B02_s1")):
        planes = [np.asarray(Image.open(RXRX1 / "images" / f"{src}_w{c}.png")) for c in (1, 2)]
        for k in range(4):
            y, x = divmod(k, 2)
            row = {"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": 1}
            if with_crop_column:
                row["Metadata_Crop"] = k + 1
            for ch, plane in zip(("DNA", "Actin"), planes):
                name = f"{well}_crop{k + 1}_{ch}.png"
                part = np.ascontiguousarray(plane[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile])
                Image.fromarray(part).save(folder / name)
                row[f"FileName_{ch}"], row[f"PathName_{ch}"] = name, "crops"
                sums[(well, k + 1, ch)] = int(part.sum(dtype=np.int64))
            rows.append(row)
    csv = tmp_path / "crops.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, sums


def test_loaddata_of_single_cell_crops_gives_one_row_per_crop(tmp_path):
    csv, sums = _crops_loaddata(tmp_path)
    out = tmp_path / "crops.parquet"
    assert main([str(csv), "-o", str(out), "--features", "intensity", "--illum", "none", *QUIET]) == EXIT_OK
    df = pd.read_parquet(out)
    assert len(df) == 8 and df[schema.SITE_ID].is_unique
    assert "Metadata_Crop" in df.columns and sorted(df["Metadata_Crop"]) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert "P1_B02_1_Crop-3" in set(df[schema.SITE_ID])
    for _, row in df.iterrows():
        for ch in ("DNA", "Actin"):
            assert row[f"Image_Intensity_Sum_{ch}"] == sums[(row[schema.WELL], row["Metadata_Crop"], ch)]


def test_loaddata_rows_with_nothing_to_tell_them_apart_use_the_row_number(tmp_path):
    csv, _ = _crops_loaddata(tmp_path, with_crop_column=False)
    ds = open_dataset(csv)
    assert len(ds.sites) == 8
    assert {s.site_id for s in ds.sites if s.metadata[schema.WELL] == "B02"} == {
        f"P1_B02_1_row{i}" for i in (1, 2, 3, 4)
    }


def test_explicit_duplicate_site_ids_are_refused_with_a_hint(tmp_path):
    csv, _ = _crops_loaddata(tmp_path)
    df = pd.read_csv(csv).assign(Metadata_site_id="same")
    df.to_csv(csv, index=False)
    with pytest.raises(DatasetError, match="site id 'same' occurs more than once; every row must be its own site"):
        open_dataset(csv)


# ----------------------------------------------------------------------------- 12. resume re-measures fixed files


def test_resume_remeasures_a_site_whose_unreadable_file_was_fixed(tmp_path, d18):
    good = d18 / "images" / "HEPG2-01" / "Plate1" / "B02_s1_w3.png"  # the first site of the first chunk
    original = good.read_bytes()
    good.write_bytes(original[:1500])
    out = tmp_path / "t.parquet"
    parts = schema.sidecar_paths(out)["parts"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moa_features.extract",
            str(d18),
            "-o",
            str(out),
            "--chunk-size",
            "1",
            "--features",
            "intensity,morphology",
            *QUIET,
        ],
        start_new_session=True,
    )
    _wait_for(lambda: (parts / "chunk-00001.parquet").exists(), proc, "two chunks were done")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first_meta = json.loads((parts / "chunk-00000.meta.json").read_text())
    assert first_meta["inputs"]  # the digest of the chunk's metadata and files (sizes, mtimes)
    good.write_bytes(original)  # the user fixes the file, then resumes
    result = extract(
        d18, out, params=FeatureParams(families=("intensity", "morphology")), thumbs=None, chunk_size=1, progress=False
    )
    assert result.exit_status == EXIT_OK and result.n_ok == 18
    assert 1 <= result.chunks_resumed < 18  # chunk 1 onwards kept; chunk 0 measured again
    assert "HEPG2-01_1_B02_1" in set(pd.read_parquet(out)[schema.SITE_ID])


# ----------------------------------------------------------------------------- 10. disk full


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system (tmpfs); skipped where mounting is not allowed (not root, containers)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_names_the_file_and_keeps_the_old_table(small_disk, d18, capsys):
    out = small_disk / "t.parquet"
    assert main([str(d18), "-o", str(out), "--features", "intensity", *QUIET]) == EXIT_OK
    before = out.read_bytes()
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 8192))  # leave 8 KiB: too little for a chunk
    status = main([str(d18), "-o", str(out), "--features", "intensity,texture", *QUIET])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "No space left on device" in err and f"any previous {out} is kept as it was" in err
    assert out.read_bytes() == before
    assert not schema.sidecar_paths(out)["lock"].exists()
