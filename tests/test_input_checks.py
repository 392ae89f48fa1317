"""Issue 22 (input side) and 24 (extract's inputs): what the readers refuse, select, rename and skip.

Every case reads the real RxRx1 sites (the vendored three, or ../shared/data/rxrx1) or the real
ExampleHuman field through ``moa-features extract`` as a user runs it (``main``), and checks the
exit status, the message and the table written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from moa_features import schema
from moa_features.datasets import DatasetError, open_dataset
from moa_features.extract import EXIT_OK, EXIT_USAGE, main

QUIET = ["-q", "--no-report", "--thumbs", "0", "--features", "intensity", "--illum", "none"]
SITE = "images/HUVEC-01/Plate1/B02_s1_w{}.png"


def _loaddata(rxrx1_sample: Path, tmp_path: Path, rows: list[dict], relative: bool = False) -> Path:
    """A LoadData CSV over the real HUVEC-01 site, one row per dict of metadata (paths absolute or relative)."""
    folder = rxrx1_sample / "images" / "HUVEC-01" / "Plate1"
    table = []
    for meta in rows:
        files = {f"FileName_w{c}": f"B02_s1_w{c}.png" for c in (1, 2, 3)}
        paths = {f"PathName_w{c}": "Plate1" if relative else str(folder) for c in (1, 2, 3)}
        table.append({**meta, **files, **paths})
    csv = tmp_path / "load_data.csv"
    pd.DataFrame(table).to_csv(csv, index=False)
    return csv


# ----------------------------------------------------------------------------- issue 22.16, 22.28


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [{"Metadata_Plate": "P1", "Metadata_Well": "B02", "Metadata_Site": 1},
             {"Metadata_Plate": None, "Metadata_Well": "B03", "Metadata_Site": 1}],
            "column 'Metadata_Plate' row 2 (line 3) is empty; every row needs its plate",
        ),
        (
            [{"Metadata_Plate": "P1", "Metadata_Well": "B02", "Metadata_Site": "x"}],
            "column 'Metadata_Site' row 1 (line 2) is 'x'; expected a whole number",
        ),
    ],
)  # fmt: skip
def test_loaddata_with_an_empty_plate_or_site_x_is_exit_2_naming_column_and_row(
    rxrx1_sample, tmp_path, capsys, rows, message
):
    csv = _loaddata(rxrx1_sample, tmp_path, rows)
    out = tmp_path / "t.parquet"
    assert main([str(csv), "-o", str(out), *QUIET]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{csv}: {message}" in err and "Traceback" not in err
    assert not out.exists()


def test_root_that_does_not_exist_is_exit_2_before_any_work(rxrx1_sample, tmp_path, capsys):
    csv = _loaddata(rxrx1_sample, tmp_path, [{"Metadata_Plate": "P1", "Metadata_Well": "B02"}], relative=True)
    out = tmp_path / "t.parquet"
    assert main([str(csv), "-o", str(out), "--root", str(tmp_path / "nowhere"), *QUIET]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--root {tmp_path / 'nowhere'}: folder not found" in err
    assert not out.exists() and not schema.sidecar_paths(out)["errors"].exists()
    # the right root measures the site
    root = rxrx1_sample / "images" / "HUVEC-01"
    assert main([str(csv), "-o", str(out), "--root", str(root), *QUIET]) == EXIT_OK
    assert len(pd.read_parquet(out)) == 1


# ----------------------------------------------------------------------------- issue 22.9


def test_channels_select_from_a_per_channel_manifest(rxrx1_sample, tmp_path):
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        [{"site_id": "HUVEC-01_1_B02_1", "plate": "P1", "well": "B02",
          **{f"path_w{c}": str(rxrx1_sample / SITE.format(c)) for c in range(1, 7)}}]
    ).to_csv(manifest, index=False)  # fmt: skip
    out = tmp_path / "t.parquet"
    assert main([str(manifest), "-o", str(out), "--channels", "w3,w1", *QUIET]) == EXIT_OK
    table = pd.read_parquet(out)
    intensity = sorted(c for c in table.columns if c.startswith("Image_Intensity_Mean_"))
    assert intensity == ["Image_Intensity_Mean_w1", "Image_Intensity_Mean_w3"]
    assert "Metadata_Path_w5" not in table.columns and table["Metadata_Path_w3"].iloc[0].endswith("_w3.png")


def test_channels_select_planes_of_a_stack_manifest(rxrx1_sample, tmp_path):
    import numpy as np
    from PIL import Image

    planes = np.stack([np.asarray(Image.open(rxrx1_sample / SITE.format(c))) for c in range(1, 7)])
    np.save(tmp_path / "site.npy", planes)
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame([{"site_id": "s1", "plate": "P1", "well": "B02", "path": "site.npy"}]).to_csv(manifest, index=False)
    ds = open_dataset(manifest, channels=["w5", "w2"])
    np.testing.assert_array_equal(ds.sites[0].load(), planes[[4, 1]])
    with pytest.raises(DatasetError, match=r"--channels w7: unknown channel\(s\) \['w7'\]"):
        open_dataset(manifest, channels=["w7"])


# ----------------------------------------------------------------------------- issue 24.6 (inputs)


def test_channel_names_name_the_features(rxrx1_sample, tmp_path):
    out = tmp_path / "t.parquet"
    names = "DNA,ER,Actin,RNA,Mito,Golgi"
    assert main([str(rxrx1_sample), "-o", str(out), "--channel-names", names, *QUIET]) != EXIT_USAGE
    table = pd.read_parquet(out)
    assert {"Image_Intensity_Mean_DNA", "Image_Intensity_Mean_Golgi"} <= set(table.columns)
    assert not [c for c in table.columns if c.endswith("_w1")]
    plain = tmp_path / "plain.parquet"
    assert main([str(rxrx1_sample), "-o", str(plain), *QUIET]) != EXIT_USAGE
    same = pd.read_parquet(plain).set_index(schema.SITE_ID)
    renamed = table.set_index(schema.SITE_ID)
    assert renamed["Image_Intensity_Mean_Golgi"].equals(same.loc[renamed.index, "Image_Intensity_Mean_w6"])
    # a stain map renames some channels only
    ds = open_dataset(rxrx1_sample, channel_names="w1=DNA,w3=Actin")
    assert ds.channels == ("DNA", "w2", "Actin", "w4", "w5", "w6")
    assert ds.sites[0].metadata["Metadata_Path_DNA"].endswith("_w1.png")


@pytest.mark.parametrize(
    "names, message",
    [
        ("DNA,ER", "--channel-names DNA,ER: 2 name(s) for 6 channel(s) (w1, w2, w3, w4, w5, w6)"),
        ("w9=DNA", "--channel-names w9=DNA: w9 not among the channels"),
        ("DNA,DNA,a,b,c,d", "names repeat"),
        ("DNA,E R,a,b,c,d", "names must be letters and digits"),
    ],
)
def test_bad_channel_names_are_exit_2_naming_the_option(rxrx1_sample, tmp_path, capsys, names, message):
    assert main([str(rxrx1_sample), "-o", str(tmp_path / "t.parquet"), "--channel-names", names, *QUIET]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_cellprofiler_image_csv_overlay_and_illumination_columns_are_not_channels(rxrx1_sample, tmp_path):
    csv = _loaddata(rxrx1_sample, tmp_path, [{"Metadata_Plate": "P1", "Metadata_Well": "B02"}])
    table = pd.read_csv(csv)
    table["FileName_OrigOverlay"], table["PathName_OrigOverlay"] = "B02_s1_w1_Overlay.png", "output"
    table["FileName_IllumDNA"], table["PathName_IllumDNA"] = "Illum_DNA.npy", str(tmp_path)
    table["FileName_Background"], table["PathName_Background"] = "bg.mat", str(tmp_path)
    table.to_csv(csv, index=False)
    ds = open_dataset(csv)
    assert ds.channels == ("w1", "w2", "w3")
    assert not [k for k in ds.sites[0].metadata if "Overlay" in k or "Illum" in k or "Background" in k]
    notes = "\n".join(ds.notes)
    assert "FileName_OrigOverlay is a segmentation overlay, not an image channel" in notes
    assert "FileName_IllumDNA is an illumination function" in notes
    assert "FileName_Background is an illumination function (.npy / .mat files)" in notes


# ----------------------------------------------------------------------------- issue 22.3, 22.4, 22.10: user masks


@pytest.fixture
def mask_variants(rxrx1_sample, tmp_path) -> tuple[Path, int]:
    """A LoadData CSV: the real HUVEC-01 site five times, each with other masks (wells A01-A05).

    The masks are our own segmentation of the site, saved as 16-bit label PNGs: A01 as they are,
    A02 with the cell numbers permuted, A03 with the cell mask shifted 40 px, A04 with a binary
    0/255 nuclei mask, A05 with every number tripled (gaps: 3, 6, 9, ...). Returns the CSV and
    the number of nuclei.
    """
    import numpy as np
    from PIL import Image

    from moa_features.datasets import read_image
    from moa_features.features import segment

    folder = rxrx1_sample / "images" / "HUVEC-01" / "Plate1"
    image = np.stack([read_image(folder / f"B02_s1_w{c}.png") for c in (1, 2, 3)])
    masks = segment(image, 0, 2)
    n = masks.n
    rng = np.random.default_rng(0)
    permuted = np.concatenate([[0], rng.permutation(n) + 1])[masks.cells]
    shifted = np.zeros_like(masks.cells)
    shifted[:, 40:] = masks.cells[:, :-40]
    variants = {
        "A01": (masks.nuclei, masks.cells),
        "A02": (masks.nuclei, permuted),
        "A03": (masks.nuclei, shifted),
        "A04": ((masks.nuclei > 0) * 255, masks.cells),
        "A05": (masks.nuclei * 3, masks.cells * 3),
    }
    rows = []
    for well, (nuclei, cells) in variants.items():
        for name, labels in (("n", nuclei), ("c", cells)):
            Image.fromarray(labels.astype(np.uint16)).save(tmp_path / f"{name}_{well}.png")
        rows.append({"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": 1,
                     **{f"FileName_w{c}": f"B02_s1_w{c}.png" for c in (1, 2, 3)},
                     **{f"PathName_w{c}": str(folder) for c in (1, 2, 3)},
                     "ObjectsFileName_Nuclei": f"n_{well}.png", "ObjectsPathName_Nuclei": str(tmp_path),
                     "ObjectsFileName_Cells": f"c_{well}.png", "ObjectsPathName_Cells": str(tmp_path)})  # fmt: skip
    csv = tmp_path / "load_data.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, n


def test_user_masks_that_are_not_this_sites_labels_become_error_rows_naming_the_file(mask_variants, tmp_path, capsys):
    csv, n = mask_variants
    out = tmp_path / "t.parquet"
    args = [str(csv), "-o", str(out), "-q", "--no-report", "--illum", "none", "--objects"]
    assert main([*args, "--features", "intensity,morphology"]) == 3
    errors = pd.read_parquet(schema.sidecar_paths(out)["errors"]).set_index(schema.WELL)
    assert sorted(errors.index) == ["A02", "A03", "A04"]
    assert (errors["stage"] == "mask").all()
    assert errors.loc["A02", "path"].endswith("c_A02.png") and errors.loc["A03", "path"].endswith("c_A03.png")
    for well in ("A02", "A03"):
        assert "nuclei of site P1_A0" in errors.loc[well, "error"]
        assert "do not lie in the cell of their number" in errors.loc[well, "error"]
    assert f"of {n} nuclei" in errors.loc["A02", "error"]
    assert errors.loc["A04", "path"].endswith("n_A04.png")
    assert "the Nuclei mask of site P1_A04_1 is not a label image" in errors.loc["A04", "error"]
    assert "(value 255: " in errors.loc["A04", "error"]
    # numbers with gaps are objects numbered 1..n: the same measurements as consecutive numbers
    table = pd.read_parquet(out).set_index(schema.WELL)
    assert table.loc["A01", "Nuclei_Count"] == n == table.loc["A05", "Nuclei_Count"]
    features = [c for c in table.columns if not c.startswith("Metadata_")]
    pd.testing.assert_series_equal(table.loc["A05", features], table.loc["A01", features], check_names=False)
    objects = pd.read_parquet(schema.sidecar_paths(out)["parts"].with_suffix(".objects.parquet"))
    assert sorted(objects.groupby(schema.WELL)["ObjectNumber"].max().items()) == [("A01", n), ("A05", n)]


def test_a_cells_mask_without_a_nuclei_mask_is_refused_before_work(rxrx1_sample, tmp_path, capsys):
    csv = _loaddata(rxrx1_sample, tmp_path, [{"Metadata_Plate": "P1", "Metadata_Well": "B02"}])
    table = pd.read_csv(csv)
    table["ObjectsFileName_Cells"], table["ObjectsPathName_Cells"] = "c.png", str(tmp_path)
    table.to_csv(csv, index=False)
    out = tmp_path / "t.parquet"
    assert main([str(csv), "-o", str(out), *QUIET]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{csv}: row 1 (line 2) names a Cells mask (ObjectsFileName_Cells) but no Nuclei mask" in err
    assert not out.exists()
    table["ObjectsFileName_Nucleus"], table["ObjectsPathName_Nucleus"] = "n.png", str(tmp_path)
    table.to_csv(csv, index=False)
    assert main([str(csv), "-o", str(out), *QUIET]) == EXIT_USAGE
    assert "mask column(s) ObjectsFileName_Nucleus not understood" in capsys.readouterr().err
