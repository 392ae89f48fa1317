"""Rebuild the vendored test fixtures in ``tests/data/`` from ``../shared/data``.

Run from the repository root: ``python tests/data/make_fixtures.py``. Files are copied
byte for byte (PNGs, IBSI arrays); the BBBC021 slice keeps whole rows of the real profile
table. Origins and licences: ``tests/data/LICENSES.md``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"

# Two cell types with all six channels, plus one real incomplete site (w1-w4 only on disk).
RXRX1_SITES = ["HUVEC-01_1_B02_1", "U2OS-01_1_B02_1", "U2OS-01_1_B02_2"]
# Every well of three MoAs (2-4 compounds each, so NSC has >= 2 treatments per class: 9 folds),
# plus the first DMSO well of every plate as a negative control.
BBBC021_MOAS = ["Actin disruptors", "Eg5 inhibitors", "Microtubule destabilizers"]
DMSO_PER_PLATE = 1


def copy_rxrx1(dst: Path) -> None:
    meta = pd.read_csv(SHARED / "rxrx1" / "metadata.csv")
    meta = meta[meta["site_id"].isin(RXRX1_SITES)]
    dst.mkdir(parents=True, exist_ok=True)
    meta.to_csv(dst / "metadata.csv", index=False)
    for row in meta.itertuples():
        folder = Path("images") / row.experiment / f"Plate{row.plate}"
        (dst / folder).mkdir(parents=True, exist_ok=True)
        for c in str(row.channels_present):
            name = f"{row.well}_s{row.site}_w{c}.png"
            shutil.copyfile(SHARED / "rxrx1" / folder / name, dst / folder / name)
    shutil.copyfile(SHARED / "rxrx1" / "SOURCE.txt", dst / "SOURCE.txt")


def copy_bbbc021(dst: Path) -> None:
    src = SHARED / "bbbc021"
    df = pd.read_csv(src / "BBBC021_feature_selected_mad_robustize.csv")
    dmso = df[df["Metadata_moa"] == "DMSO"].groupby("Metadata_Plate", sort=False).head(DMSO_PER_PLATE)
    keep = df[df["Metadata_moa"].isin(BBBC021_MOAS)].index.union(dmso.index)
    dst.mkdir(parents=True, exist_ok=True)
    df.loc[keep].to_csv(dst / "BBBC021_profiles_slice.csv.gz", index=False)
    for name in ("BBBC021_v1_moa.csv", "LICENSE_BBBC021_Morpheus_Exercise.txt", "SOURCE.txt"):
        shutil.copyfile(src / name, dst / name)


def copy_ibsi(dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("phantom.npy", "mask.npy", "reference_values.csv", "SOURCE.txt"):
        shutil.copyfile(SHARED / "ibsi" / name, dst / name)


if __name__ == "__main__":
    copy_rxrx1(HERE / "rxrx1")
    copy_bbbc021(HERE / "bbbc021")
    copy_ibsi(HERE / "ibsi")
