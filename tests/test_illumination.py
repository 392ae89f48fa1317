"""Illumination correction: the function, its application, and the first pass inside extract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moa_features.illumination import MIN_SITES, block_means, correct, illumination_function


def _vignette(shape=(128, 128), fall_off=0.5, centre=(0.45, 0.55)) -> np.ndarray:
    h, w = shape
    y = (np.arange(h) / h - centre[0])[:, None]
    x = (np.arange(w) / w - centre[1])[None, :]
    return 1 - fall_off * (y**2 + x**2) / 0.5


def _vignetted_sites(n: int, seed: int = 0, shape=(128, 128), blobs: int = 8) -> list[np.ndarray]:
    """Random bright blobs ('cells') on a dim background, times a vignette, 8-bit."""
    rng = np.random.default_rng(seed)
    vig = _vignette(shape)
    sites = []
    for _ in range(n):
        scene = np.full(shape, 20.0)
        for _ in range(blobs):
            r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            scene[max(r - 4, 0) : r + 4, max(c - 4, 0) : c + 4] = rng.uniform(120, 200)
        sites.append(np.clip(rng.poisson(scene * vig), 0, 255).astype(np.uint8)[None])
    return sites


def test_function_recovers_the_vignette_and_correction_flattens_it():
    sites = _vignetted_sites(32)
    function = illumination_function([block_means(s) for s in sites], (128, 128))
    assert function.shape == (1, 128, 128) and function.dtype == np.float32
    assert function.min() == pytest.approx(1.0)
    truth = _vignette()
    assert np.corrcoef(function[0].ravel(), truth.ravel())[0, 1] > 0.98
    corrected = [correct(s, function) for s in sites]
    raw_r = np.corrcoef(np.mean(sites, axis=0)[0].ravel(), truth.ravel())[0, 1]
    cor_r = np.corrcoef(np.mean(corrected, axis=0)[0].ravel(), truth.ravel())[0, 1]
    assert abs(cor_r) < 0.2 * abs(raw_r)
    assert all(c.dtype == np.uint8 and (c <= s).all() for c, s in zip(corrected, sites))


def test_function_needs_enough_sites_and_matching_shapes():
    with pytest.raises(ValueError, match=f"at least {MIN_SITES}"):
        illumination_function([np.ones((1, 4, 4))] * (MIN_SITES - 1), (64, 64))
    with pytest.raises(ValueError, match="differs"):
        correct(np.ones((1, 8, 8), np.uint8), np.ones((1, 4, 4), np.float32))


def _write_screen(root: Path, n_per_plate: int, plates=("P1",), seed=0) -> Path:
    """A real folder of PNGs and a manifest CSV: vignetted sites, half of them controls."""
    rows = []
    for p, plate in enumerate(plates):
        for i, image in enumerate(_vignetted_sites(n_per_plate, seed + p, (96, 96))):
            paths = {}
            for c, plane in enumerate([image[0], image[0] // 2]):
                path = root / f"{plate}_{i}_w{c + 1}.png"
                Image.fromarray(plane).save(path)
                paths[f"path_w{c + 1}"] = path.name
            rows.append(
                {
                    "plate": plate,
                    "well": f"B{i:02d}",
                    "site": 1,
                    "site_id": f"{plate}_{i}",
                    "treatment": "EMPTY" if i % 2 == 0 else "drug",
                    **paths,
                }
            )
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _extract(manifest: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "moa_features.extract",
        str(manifest),
        "-o",
        str(out),
        "--no-report",
        "-q",
        "--thumbs",
        "0",
        "--features",
        "intensity,texture,morphology",
        "--channels",
        "w1,w2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # three extract subprocesses (~12 s)
def test_extract_runs_the_first_pass_records_it_and_writes_objects(tmp_path):
    manifest = _write_screen(tmp_path, MIN_SITES + 2, plates=("P1", "P2"))
    manifest_small = tmp_path / "small.csv"
    df = pd.read_csv(manifest)
    pd.concat([df, df.assign(plate="P3", site_id=df.site_id + "b").head(3)]).to_csv(manifest_small, index=False)
    out = tmp_path / "t.parquet"
    done = _extract(manifest_small, out, "--objects")
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.with_name("t.summary.json").read_text())
    calibration = summary["calibration"]
    assert calibration["illumination"]["P1"]["corrected"] and calibration["illumination"]["P2"]["corrected"]
    assert not calibration["illumination"]["P3"]["corrected"]  # 3 sites: too few, left as they are
    texture = calibration["texture"]
    assert texture["sample"] == "negative controls" and texture["sites"] == 12 and len(texture["level_edges"]) == 2
    table = pd.read_parquet(out)
    assert "Image_Texture_Contrast_w1_1_avg_run32" in table and "Cells_Count" not in table
    objects = pd.read_parquet(tmp_path / "t.objects.parquet")
    assert {
        "Metadata_Plate",
        "Metadata_site_id",
        "ObjectNumber",
        "Location_Center_X",
        "Nuclei_AreaShape_Area",
        "Cytoplasm_Intensity_MeanIntensity_w2",
    } <= set(objects.columns)
    assert not any(c.startswith("Metadata_Path_") for c in objects.columns)
    counts = objects.groupby("Metadata_site_id").size()
    np.testing.assert_array_equal(counts.reindex(table["Metadata_site_id"]).fillna(0), table["Nuclei_Count"])
    # the correction only ever divides by a function >= 1: no site gets brighter
    off = tmp_path / "off.parquet"
    assert _extract(manifest_small, off, "--illum", "none").returncode == 0
    plain = pd.read_parquet(off)
    assert json.loads(off.with_name("off.summary.json").read_text())["calibration"]["illumination"] == {}
    assert (table["Image_Intensity_Mean_w1"] <= plain["Image_Intensity_Mean_w1"]).all()
    # a rerun reuses the first pass (same files, not rewritten)
    stamp = (tmp_path / "t.calibration" / "calibration.json").stat().st_mtime_ns
    assert _extract(manifest_small, out, "--objects").returncode == 0
    assert (tmp_path / "t.calibration" / "calibration.json").stat().st_mtime_ns == stamp


def test_full_scheme_without_illumination_needs_no_first_pass(tmp_path):
    manifest = _write_screen(tmp_path, 4)
    out = tmp_path / "t.parquet"
    done = _extract(manifest, out, "--texture-scheme", "full", "--illum", "none")
    assert done.returncode == 0, done.stderr
    assert json.loads(out.with_name("t.summary.json").read_text())["calibration"] is None
    assert "Image_Texture_Contrast_w1_1_avg_32" in pd.read_parquet(out)
    assert not (tmp_path / "t.calibration").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--texture-levels", "1"), "--texture-levels"),
        (("--texture-levels", "300"), "between 2 and 256"),
        (("--min-diameter", "-3"), "--min-diameter"),
    ],
)
def test_bad_feature_options_are_refused_before_any_work(tmp_path, args, message):
    manifest = _write_screen(tmp_path, 2)
    done = _extract(manifest, tmp_path / "t.parquet", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "t.calibration").exists() and not (tmp_path / "t.parquet").exists()


def test_zero_padded_borders_do_not_set_the_illumination_function(rxrx1_root):
    """Issue 22.13: real RxRx1 sites whose outer 64 px are zero padding (a stitched or cropped field)."""

    sites = []
    for path in sorted((rxrx1_root / "images").rglob("B02_s1_w1.png"))[:8]:
        sites.append(np.asarray(Image.open(path))[None])
    padded = [s.copy() for s in sites]
    for s in padded:
        s[:, :64], s[:, -64:], s[:, :, :64], s[:, :, -64:] = 0, 0, 0, 0
    shape = sites[0].shape[1:]
    plain = illumination_function([block_means(s) for s in sites], shape)
    function = illumination_function([block_means(s) for s in padded], shape)
    inner = (slice(None), slice(80, -80), slice(80, -80))
    assert function.max() < 2 * plain.max()  # 1,228 before: the zeros of the padding set the minimum
    assert np.allclose(function[inner] / function[inner].min(), plain[inner] / plain[inner].min(), rtol=0.25)
    corrected = correct(padded[0], function)
    assert corrected[inner].mean() > 0.5 * padded[0][inner].mean()  # not dimmed 13-fold
