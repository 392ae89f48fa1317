"""Our per-object measurements against CellProfiler 4.0.6's own, on its ExampleHuman field.

``../shared/data/cellprofiler_examplehuman`` holds one real HT29 field (three 8-bit
channels: DNA, PH3, cellbody) and CellProfiler's tables for the pipeline ``ExampleHuman.cppipe``
(289 nuclei), ``Image.csv`` included. The comparison is the command a CellProfiler user runs on
CellProfiler's own ``Image.csv`` (as a LoadData CSV; its image folder pointed at the shared
copy, its ``FileName_OrigOverlay`` column left in: it is recognised as an overlay, not a channel)::

    moa-features extract examplehuman.csv --cellprofiler --objects --min-diameter 8 --max-diameter 80

``--cellprofiler`` segments as that pipeline's IdentifyPrimaryObjects (minimum cross-entropy
threshold; nuclei touching the border discarded, our default; its typical diameter 8-80 px)
and reports intensities on CellProfiler's 0..1 scale, so they are compared with CellProfiler's
values directly. Cells come from the default secondary segmentation, Propagation (the
pipeline's IdentifySecondaryObjects: minimum cross-entropy threshold x 0.8, lambda 0.05, holes
filled), and the cytoplasm is the cell minus its nucleus with the nuclear rim kept (its
IdentifyTertiaryObjects, "shrink smaller object" on). No masks are included, so objects are
matched by their centres (mutual nearest neighbours within 5 px).

Reported: match rate, and for matched objects the median relative difference
``|ours - theirs| / |theirs|`` of each measurement (Nuclei, Cells, Cytoplasm).

    python benchmarks/bench_examplehuman.py [--out benchmarks/results_examplehuman.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _helpers import match_by_centre  # the tests' object matching, shared

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cellprofiler_examplehuman"
CHANNELS = ("DNA", "PH3", "cellbody")
COMMAND = ["--cellprofiler", "--objects", "--min-diameter", "8", "--max-diameter", "80"]
COMMAND += ["--features", "intensity,morphology", "-q", "--no-report"]
MAX_DISTANCE = 5.0


def loaddata_csv(folder: Path, root: Path = DATA) -> Path:
    """CellProfiler's ``Image.csv`` of the field as a LoadData CSV whose ``PathName_`` columns point at ``root``."""
    image = pd.read_csv(root / "Image.csv")
    for channel in CHANNELS:
        image[f"PathName_{channel}"] = str(root)
    csv = folder / "examplehuman.csv"
    image.to_csv(csv, index=False)
    return csv


def extract_objects(folder: Path, root: Path = DATA) -> tuple[pd.DataFrame, dict]:
    """``moa-features extract examplehuman.csv --cellprofiler --objects``: the objects table and the run summary."""
    from moa_features import schema
    from moa_features.extract import EXIT_OK, main

    table = folder / "examplehuman.parquet"
    status = main([str(loaddata_csv(folder, root)), "-o", str(table), *COMMAND])
    if status != EXIT_OK:
        raise SystemExit(f"extract failed with exit status {status}")
    objects = pd.read_parquet(schema.sidecar_paths(table)["parts"].with_suffix(".objects.parquet"))
    return objects, json.loads(schema.sidecar_paths(table)["summary"].read_text())


def compare(root: Path = DATA) -> dict:
    """Match rate and median relative differences against CellProfiler's tables."""
    from moa_features.features.object_intensity import INTENSITY_MEASURES
    from moa_features.features.shape import SHAPE_MEASURES

    with tempfile.TemporaryDirectory() as tmp:
        objects, summary = extract_objects(Path(tmp), root)
    theirs = pd.read_csv(root / "Nuclei.csv")
    ours_xy = objects[["Location_Center_X", "Location_Center_Y"]].to_numpy()
    i, j = match_by_centre(ours_xy, theirs[["Location_Center_X", "Location_Center_Y"]].to_numpy(), MAX_DISTANCE)
    out: dict = {
        "command": "moa-features extract examplehuman.csv " + " ".join(COMMAND[:6]),
        "cellprofiler_nuclei": len(theirs),
        "our_nuclei": len(objects),
        "matched": len(i),
        "match_rate": len(i) / len(theirs),
        "settings": {
            k: summary["params"][k]
            for k in ("threshold", "min_diameter", "max_diameter", "cells", "regularization", "intensity_units")
        },
        "channels": summary["channels"],
        "median_relative_difference": {},
    }
    for compartment in ("Nuclei", "Cells", "Cytoplasm"):
        table = theirs if compartment == "Nuclei" else pd.read_csv(root / f"{compartment}.csv")
        table = table.set_index("ObjectNumber").loc[theirs["ObjectNumber"].to_numpy()[j]]
        for measure in SHAPE_MEASURES:
            column = f"AreaShape_{measure}"
            if column in table:
                ours = objects[f"{compartment}_AreaShape_{measure}"].to_numpy()[i]
                out["median_relative_difference"][f"{compartment}_{column}"] = _median_rel(ours, table[column])
        for measure in INTENSITY_MEASURES:
            for channel in ("DNA", "PH3"):
                column = f"Intensity_{measure}_{channel}"
                if column in table:
                    ours = objects[f"{compartment}_Intensity_{measure}_{channel}"].to_numpy()[i]
                    out["median_relative_difference"][f"{compartment}_{column}"] = _median_rel(ours, table[column])
    return out


def _median_rel(ours: np.ndarray, theirs) -> float:
    theirs = np.asarray(theirs, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(ours - theirs) / np.abs(theirs)
    return round(float(np.nanmedian(rel[np.isfinite(rel)])) if np.isfinite(rel).any() else float("nan"), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_examplehuman.json"))
    args = parser.parse_args()
    result = compare()
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
