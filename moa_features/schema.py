"""Names shared by every stage: metadata columns, channels, stains, file names.

Feature tables follow the CellProfiler/pycytominer convention: metadata columns start
with ``Metadata_``; every other column is a float feature named
``<Compartment>_<Family>_<Measure>_<Channel>[_<params>]``.
"""

from __future__ import annotations

from pathlib import Path

METADATA_PREFIX = "Metadata_"

PLATE = "Metadata_Plate"  # unique across experiments, e.g. "HUVEC-01_1"
WELL = "Metadata_Well"  # e.g. "B02"
SITE = "Metadata_Site"  # int, 1-based
EXPERIMENT = "Metadata_Experiment"
TREATMENT = "Metadata_Treatment"
CONCENTRATION = "Metadata_Concentration"
MOA = "Metadata_moa"
SITE_ID = "Metadata_site_id"  # unique per site, e.g. "HUVEC-01_1_B02_1"
WELL_ID = "Metadata_well_id"  # unique per well, e.g. "HUVEC-01_1_B02"
# Absolute path of each channel's image: f"{PATH_PREFIX}{channel}" (e.g. Metadata_Path_w1).
# For one-file-per-site inputs (multi-page TIFF, .npy) every channel names the same file.
PATH_PREFIX = "Metadata_Path_"

NEGATIVE_CONTROL_MOA = "Negative control"
# Treatment names that mean "no treatment" (RxRx: EMPTY; RxRx1 siRNA screens: UNTREATED).
NEGATIVE_CONTROL_TREATMENTS = ("EMPTY", "UNTREATED", "DMSO", "NEGATIVE_CONTROL")

# Default RxRx stain map (Recursion's six-channel Cell Painting variant).
RXRX_STAINS = {
    "w1": "Hoechst (nuclei)",
    "w2": "Concanavalin A (ER)",
    "w3": "Phalloidin (actin)",
    "w4": "SYTO14 (nucleoli/RNA)",
    "w5": "MitoTracker (mitochondria)",
    "w6": "WGA (Golgi/plasma membrane)",
}


def channel_names(n: int) -> list[str]:
    """Default channel names ``w1..wN``."""
    return [f"w{i}" for i in range(1, n + 1)]


def metadata_columns(columns) -> list[str]:
    """The ``Metadata_`` columns of a table, in table order."""
    return [c for c in columns if str(c).startswith(METADATA_PREFIX)]


def feature_columns(columns) -> list[str]:
    """The feature (non-``Metadata_``) columns of a table, in table order."""
    return [c for c in columns if not str(c).startswith(METADATA_PREFIX)]


def sidecar_paths(table: str | Path) -> dict[str, Path]:
    """Files written next to a feature table ``features/NAME.parquet``.

    ``errors``: sites that failed (``NAME.errors.parquet``); ``thumbs``: the
    ``(N, S, S, C)`` uint8 thumbnail array row-aligned with the table
    (``NAME.thumbs.npy``); ``parts``: the folder of finished chunks used to resume
    (``NAME.parts/``); ``summary``: the run summary (``NAME.summary.json``); ``votes``: the
    app's default vote store (``NAME.votes.sqlite``); ``annotation``: the treatment -> MoA
    table used (``NAME.treatment_moa.csv``); ``lock``: held while a run writes the table and
    its side files (``NAME.lock``); ``failed_errors``: the errors of a run whose every site
    failed, which therefore kept the previous table (``NAME.failed-run.errors.parquet``);
    ``overlays``: segmentation overlays of a few sites per plate (``NAME.overlays/``, PNGs and
    ``index.json``); ``journal``: the list of a finished run's outputs being swapped in together
    (``NAME.commit.json``, present only while they are renamed, or after a crash between, when
    the next run completes the swap).
    """
    table = Path(table)
    stem = table.name
    for suffix in (".parquet", ".csv.gz", ".csv"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    d = table.parent
    return {
        "errors": d / f"{stem}.errors.parquet",
        "thumbs": d / f"{stem}.thumbs.npy",
        "parts": d / f"{stem}.parts",
        "summary": d / f"{stem}.summary.json",
        "votes": d / f"{stem}.votes.sqlite",
        "annotation": d / f"{stem}.treatment_moa.csv",
        "lock": d / f"{stem}.lock",
        "failed_errors": d / f"{stem}.failed-run.errors.parquet",
        "overlays": d / f"{stem}.overlays",
        "journal": d / f"{stem}.commit.json",
    }
