"""Readers on the real RxRx1 layout, the real BBBC021 LoadData index, and manifests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moa_features import schema
from moa_features.datasets import (
    DatasetError,
    SiteReadError,
    detect_layout,
    open_dataset,
    read_image,
)


def test_rxrx_layout_reads_real_sites(rxrx1_root):
    ds = open_dataset(rxrx1_root)
    assert ds.layout == "rxrx"
    assert ds.channels == ("w1", "w2", "w3", "w4", "w5", "w6")
    assert len(ds.sites) == 36
    ids = [s.site_id for s in ds.sites]
    assert ids == sorted(ids)
    site = next(s for s in ds.sites if s.site_id == "HUVEC-01_1_B02_1")
    m = site.metadata
    assert m[schema.PLATE] == "HUVEC-01_1"  # unique across experiments
    assert m[schema.WELL] == "B02" and m[schema.SITE] == 1
    assert m[schema.EXPERIMENT] == "HUVEC-01"
    assert m[schema.TREATMENT] == "UNTREATED"  # RxRx1: sirna
    assert m["Metadata_cell_type"] == "HUVEC"
    assert list(m)[:4] == [schema.PLATE, schema.WELL, schema.SITE, schema.EXPERIMENT]
    image = site.load()
    assert image.shape == (6, 512, 512) and image.dtype == np.uint8
    # the loader returns exactly the PNG's pixels
    png = np.asarray(Image.open(rxrx1_root / "images/HUVEC-01/Plate1/B02_s1_w3.png"))
    np.testing.assert_array_equal(image[2], png)


def test_incomplete_real_site_names_the_missing_file(rxrx1_sample):
    ds = open_dataset(rxrx1_sample)
    site = next(s for s in ds.sites if s.site_id == "U2OS-01_1_B02_2")  # has only w1-w4
    with pytest.raises(SiteReadError) as err:
        site.load()
    assert "B02_s2_w5.png" in str(err.value) and "file not found" in str(err.value)
    assert "channel w5" in str(err.value) and err.value.site_id == "U2OS-01_1_B02_2"


def test_corrupt_and_truncated_png(tmp_path, rxrx1_sample):
    good = rxrx1_sample / "images/HUVEC-01/Plate1/B02_s1_w1.png"
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:2000])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    for path in (truncated, garbage):
        with pytest.raises(SiteReadError, match="cannot decode image"):
            read_image(path, "s1", "w1")


def test_colour_rgb_png_is_rejected_grey_rgb_is_read_as_grey(tmp_path, rxrx1_root):
    grey = np.asarray(Image.open(rxrx1_root / "images/HUVEC-01/Plate1/B02_s1_w1.png"))
    colour = np.stack([grey, grey // 2, grey], axis=-1)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    with pytest.raises(SiteReadError, match=r"rgb\.png: a colour \(RGB\) image; expected one grey channel"):
        read_image(tmp_path / "rgb.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey_rgb.png"), grey)


def test_16bit_png_and_tiff(tmp_path):
    import tifffile

    arr = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", arr)
    for name in ("a.png", "a.tif"):
        out = read_image(tmp_path / name)
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, arr)


def test_loaddata_index_of_bbbc021(bbbc021_dir, tmp_path):
    csv = bbbc021_dir / "BBBC021_v1_image.csv.gz"
    assert detect_layout(csv) == "loaddata"
    ds = open_dataset(csv, root=tmp_path)  # --root must exist; the TIFFs are not in it
    assert ds.channels == ("DAPI", "Tubulin", "Actin")
    assert len(ds.sites) == 13200
    site = ds.sites[0]
    m = site.metadata
    assert m[schema.PLATE].startswith("Week") and m[schema.TREATMENT]
    assert schema.CONCENTRATION in m and schema.SITE in m
    assert all(p.startswith(f"{tmp_path}/") and p.endswith(".tif") for p in site.paths)
    assert m["Metadata_Path_DAPI"] == site.paths[0]
    with pytest.raises(SiteReadError, match="file not found"):
        site.load()  # the TIFFs are not shipped: a clear per-site error, not a crash


def test_manifest_per_channel_and_stack(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(3, 32, 32), dtype=np.uint8)
    rows = []
    for i in range(2):
        for c in range(3):
            Image.fromarray(img[c]).save(tmp_path / f"s{i}_c{c}.png")
        rows.append(
            {"site_id": f"s{i}", "plate": "P1", "well": "A01", **{f"path_ch{c}": f"s{i}_c{c}.png" for c in range(3)}}
        )
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    ds = open_dataset(tmp_path / "manifest.csv")
    assert ds.layout == "manifest" and ds.channels == ("ch0", "ch1", "ch2")
    np.testing.assert_array_equal(ds.sites[0].load(), img)

    np.save(tmp_path / "stack.npy", np.moveaxis(img, 0, -1))  # (H, W, C) on disk
    pd.DataFrame([{"site_id": "x", "path": "stack.npy"}]).to_csv(tmp_path / "m2.csv", index=False)
    ds2 = open_dataset(tmp_path / "m2.csv")
    assert ds2.channels == ("w1", "w2", "w3")
    np.testing.assert_array_equal(ds2.sites[0].load(), img)


def test_wrong_image_size_names_file(rxrx1_sample_copy):
    p = rxrx1_sample_copy / "images/HUVEC-01/Plate1/B02_s1_w4.png"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(p)
    ds = open_dataset(rxrx1_sample_copy)
    site = next(s for s in ds.sites if s.site_id == "HUVEC-01_1_B02_1")
    with pytest.raises(SiteReadError, match=r"B02_s1_w4.png: channel w4 has size 256x256, expected 512x512"):
        site.load()


def test_bad_metadata_stops_with_column_named(rxrx1_copy):
    df = pd.read_csv(rxrx1_copy / "metadata.csv").drop(columns=["well"])
    df.to_csv(rxrx1_copy / "metadata.csv", index=False)
    with pytest.raises(DatasetError, match=r"missing required column\(s\) well"):
        open_dataset(rxrx1_copy)


def test_empty_and_unreadable_metadata(rxrx1_copy):
    (rxrx1_copy / "metadata.csv").write_text("")
    with pytest.raises(DatasetError, match="metadata.csv"):
        open_dataset(rxrx1_copy)
    (rxrx1_copy / "metadata.csv").write_text("site_id,experiment,plate,well,site\n")
    with pytest.raises(DatasetError, match="no rows"):
        open_dataset(rxrx1_copy)


def test_channel_selection(rxrx1_root):
    ds = open_dataset(rxrx1_root, channels=["w1", "w3"])
    assert ds.channels == ("w1", "w3")
    assert ds.sites[0].load().shape == (2, 512, 512)
    with pytest.raises(DatasetError, match="unknown channel"):
        open_dataset(rxrx1_root, channels=["w9"])
