"""Issue 24 for ``extract``: safe defaults, CellProfiler conventions, controls named by the user,
segmentation overlays and a summary that helps when sites fail.

Every test drives ``moa-features extract`` as a user would (``main`` / ``extract_command`` with a
command line) on real images: the RxRx1 sites (vendored three, or the full 36 in
../shared/data/rxrx1) and CellProfiler's ExampleHuman field with CellProfiler's own ``Image.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moa_features import schema
from moa_features.extract import EXIT_OK, EXIT_SITES_FAILED, EXIT_USAGE, build_parser, main

from _helpers import match_by_centre

EXAMPLEHUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cellprofiler_examplehuman"
QUIET = ["-q", "--no-report"]


def _summary(table: Path) -> dict:
    return json.loads(schema.sidecar_paths(table)["summary"].read_text())


# ----------------------------------------------------------------------------- 24.4 safe defaults on disk


def test_extract_without_input_is_an_error_pointing_at_the_demo(tmp_path, monkeypatch, capsys):
    from moa_features.pipeline import extract_command

    monkeypatch.chdir(tmp_path)
    status = extract_command(["--demo-preset", "tiny", "--demo-root", str(tmp_path / "screen"), "-q"])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "no input: give a dataset" in err and "`moa-features demo`" in err
    assert not (tmp_path / "screen").exists() and not (tmp_path / "features").exists()
    assert not (tmp_path / "reports").exists()


def test_thumbnails_are_written_only_when_asked_for(rxrx1_sample, tmp_path):
    plain, with_thumbs = tmp_path / "plain.parquet", tmp_path / "thumbs.parquet"
    args = ["--features", "intensity", "--channels", "w1,w2,w3,w4", *QUIET]
    assert main([str(rxrx1_sample), "-o", str(plain), *args]) == EXIT_OK
    assert not schema.sidecar_paths(plain)["thumbs"].exists() and _summary(plain)["thumbs"] is None
    assert main([str(rxrx1_sample), "-o", str(with_thumbs), "--thumbs", "16", *args]) == EXIT_OK
    assert np.load(schema.sidecar_paths(with_thumbs)["thumbs"]).shape == (3, 16, 16, 4)


def test_summary_records_the_segmentation_channels_used(rxrx1_sample, tmp_path):
    out = tmp_path / "t.parquet"
    args = ["--features", "intensity,morphology", "--channels", "w1,w2,w3,w4", "--illum", "none", *QUIET]
    assert main([str(rxrx1_sample), "-o", str(out), *args]) == EXIT_OK
    summary = _summary(out)
    assert summary["params"]["nuclear_channel"] == "w1" and summary["params"]["cell_channel"] == "w3"
    assert summary["segmentation"] == {
        "nuclear_channel": "w1",
        "cell_channel": "w3",
        "threshold": "otsu",
        "cells": "propagation",
        "regularization": 0.05,
        "masks": "segmented",
    }
    renamed = tmp_path / "named.parquet"
    names = ["--channel-names", "DNA,ER,Actin,RNA", "--cell-channel", "Actin", "--overlays", "0"]
    assert main([str(rxrx1_sample), "-o", str(renamed), *args, *names]) == EXIT_OK
    assert _summary(renamed)["segmentation"]["cell_channel"] == "Actin"
    assert not schema.sidecar_paths(renamed)["overlays"].exists()


# ----------------------------------------------------------------------------- 24.6 CellProfiler conventions


@pytest.fixture
def examplehuman_loaddata(tmp_path) -> Path:
    """CellProfiler's own ``Image.csv`` of the ExampleHuman field as a LoadData CSV: its image folder
    (``PathName_``) pointed at the shared copy; ``FileName_OrigOverlay`` (CellProfiler's saved overlay) kept."""
    if not (EXAMPLEHUMAN / "Image.csv").is_file():
        pytest.skip(f"real ExampleHuman data not found at {EXAMPLEHUMAN}")
    image = pd.read_csv(EXAMPLEHUMAN / "Image.csv")
    for channel in ("DNA", "PH3", "cellbody"):
        image[f"PathName_{channel}"] = str(EXAMPLEHUMAN)
    csv = tmp_path / "examplehuman.csv"
    image.to_csv(csv, index=False)
    return csv


def test_cellprofiler_preset_gives_cellprofilers_own_values(examplehuman_loaddata, tmp_path, capsys):
    out = tmp_path / "eh.parquet"
    status = main(
        [str(examplehuman_loaddata), "-o", str(out), "--cellprofiler", "--objects", "--overlays", "1", *QUIET]
    )
    assert status == EXIT_OK
    assert "FileName_OrigOverlay is a segmentation overlay, not an image channel" in capsys.readouterr().err
    summary = _summary(out)
    assert summary["channels"] == ["DNA", "PH3", "cellbody"]
    assert summary["params"]["intensity_units"] == "unit" and summary["params"]["threshold"] == "li"
    ours = pd.read_parquet(schema.sidecar_paths(out)["parts"].with_suffix(".objects.parquet"))
    theirs = pd.read_csv(EXAMPLEHUMAN / "Nuclei.csv")
    i, j = match_by_centre(ours[["Location_Center_X", "Location_Center_Y"]].to_numpy(),
                           theirs[["Location_Center_X", "Location_Center_Y"]].to_numpy(), 5.0)  # fmt: skip
    assert len(i) / len(theirs) >= 0.9
    for measure in ("MeanIntensity_DNA", "IntegratedIntensity_DNA", "MedianIntensity_PH3", "MaxIntensity_DNA"):
        mine = ours[f"Nuclei_Intensity_{measure}"].to_numpy()[i]
        cp = theirs[f"Intensity_{measure}"].to_numpy()[j]
        assert np.median(np.abs(mine - cp) / np.abs(cp)) < 1e-6, measure  # CellProfiler's 0..1 values, directly
    table = pd.read_parquet(out)
    assert 0 < table["Image_Intensity_Mean_DNA"].iloc[0] < 1 and table["Image_Intensity_Max_DNA"].iloc[0] <= 1
    raw = tmp_path / "raw.parquet"
    assert main([str(examplehuman_loaddata), "-o", str(raw), "--features", "intensity", *QUIET]) == EXIT_OK
    np.testing.assert_allclose(
        pd.read_parquet(raw)["Image_Intensity_Mean_DNA"] / 255, table["Image_Intensity_Mean_DNA"], rtol=1e-12
    )


def test_overlays_show_the_objects_measured(examplehuman_loaddata, tmp_path):
    out = tmp_path / "eh.parquet"
    assert main([str(examplehuman_loaddata), "-o", str(out), "--cellprofiler", *QUIET]) == EXIT_OK
    folder = schema.sidecar_paths(out)["overlays"]
    index = json.loads((folder / "index.json").read_text())
    assert [s["file"] for s in index["sites"]] == ["0000.png"]
    record = index["sites"][0]
    assert record["nuclear_channel"] == "DNA" and record["cell_channel"] == "cellbody"
    assert record["masks"] == "segmented" and record["nuclei"] == pd.read_parquet(out)["Nuclei_Count"].iloc[0]
    picture = np.asarray(Image.open(folder / record["file"]))
    assert picture.shape == (512, 512, 3) and picture.dtype == np.uint8
    yellow = (picture == (255, 255, 0)).all(axis=-1)
    magenta = (picture == (255, 0, 255)).all(axis=-1)
    assert 0.005 < yellow.mean() < 0.2 and 0.005 < magenta.mean() < 0.2  # outlines, not fills
    assert _summary(out)["overlays"] == str(folder)


def test_help_groups_the_options_and_states_the_defaults():
    text = build_parser().format_help()
    for group in ("input:", "output:", "features and segmentation:", "first pass, parallel and resumable runs:",
                  "metadata columns", "demo ("):  # fmt: skip
        assert group in text
    assert "how INPUT is organised" in text and "demo screen size: tiny" in text
    assert text.count("(default: no limit)") == 2
    assert "--cellprofiler" in text and "--channel-names" in text and "--control QUERY" in text


# ----------------------------------------------------------------------------- 24.1 controls named by the user


def test_control_query_chooses_the_first_pass_controls(rxrx1_sample, tmp_path, capsys):
    args = ["--features", "intensity,texture", "--channels", "w1,w2,w3,w4", "--illum", "none", *QUIET]
    default, u2os = tmp_path / "default.parquet", tmp_path / "u2os.parquet"
    assert main([str(rxrx1_sample), "-o", str(default), *args]) == EXIT_OK
    assert main([str(rxrx1_sample), "-o", str(u2os), *args, "--control", 'Metadata_cell_type == "U2OS"']) == EXIT_OK
    assert _summary(default)["controls"]["sites"] == 3 and _summary(default)["calibration"]["texture"]["sites"] == 3
    assert _summary(u2os)["controls"] == {"rule": 'rows where Metadata_cell_type == "U2OS"', "sites": 2}
    assert _summary(u2os)["calibration"]["texture"]["sites"] == 2
    texture = [c for c in pd.read_parquet(u2os).columns if c.startswith("Image_Texture_Contrast")]
    assert not pd.read_parquet(u2os)[texture].equals(pd.read_parquet(default)[texture])
    bad = tmp_path / "bad.parquet"
    assert main([str(rxrx1_sample), "-o", str(bad), *args, "--control", "Metadata_nope == 1"]) == EXIT_USAGE
    assert "--control 'Metadata_nope == 1' cannot be evaluated" in capsys.readouterr().err
    assert main([str(rxrx1_sample), "-o", str(bad), *args, "--control", 'Metadata_cell_type == "RPE"']) == EXIT_USAGE
    assert "selects none of the 3 sites" in capsys.readouterr().err and not bad.exists()


# ----------------------------------------------------------------------------- 24.7 a summary that helps


def test_failed_sites_are_summarised_with_reasons_and_the_obvious_fix(rxrx1_root, tmp_path, capsys):
    out = tmp_path / "rxrx1.parquet"
    assert main([str(rxrx1_root), "-o", str(out), "--features", "intensity", *QUIET]) == EXIT_SITES_FAILED
    printed = capsys.readouterr().out
    assert "18 site(s) FAILED" in printed
    assert "18 x read: file not found (channel w5 of site <site>)" in printed
    assert "suggestion: 18 site(s) lack channel(s) w5, w6 on disk: `--channels w1,w2,w3,w4` measures them" in printed
    assert printed.count("illumination correction skipped on every plate") == 1
    summary = _summary(out)
    assert summary["failure_reasons"][0]["count"] == 18 and "w1,w2,w3,w4" in summary["suggestion"]
    assert main([str(rxrx1_root), "-o", str(out), "--features", "intensity", "--channels", "w1,w2,w3,w4", *QUIET]) == 0
    assert len(pd.read_parquet(out)) == 36 and "suggestion" not in capsys.readouterr().out
