"""Our per-object measurements against CellProfiler 4.0.6's own, on its ExampleHuman field.

``../shared/data/cellprofiler_examplehuman`` holds one real HT29 field (three 8-bit
channels: DNA, PH3, cellbody) and CellProfiler's per-object tables for the pipeline
``ExampleHuman.cppipe`` (289 nuclei). No masks are included, so objects are matched by
their centres (mutual nearest neighbours within 5 px). Our segmentation is configured as that
pipeline's IdentifyPrimaryObjects: minimum cross-entropy threshold (``threshold="li"``),
typical diameter 8-80 px, nuclei touching the border discarded. CellProfiler scales 8-bit
intensities to 0..1, so ours are divided by 255.

Reported: match rate, and for matched objects the median relative difference
``|ours - theirs| / |theirs|`` of each measurement (Nuclei, Cells, Cytoplasm).

    python benchmarks/bench_examplehuman.py [--out benchmarks/results_examplehuman.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cellprofiler_examplehuman"
CHANNELS = ("DNA", "PH3", "cellbody")
SETTINGS = {"threshold": "li", "min_diameter": 8.0, "max_diameter": 80.0, "exclude_border": True}
MAX_DISTANCE = 5.0


def load_field(root: Path = DATA) -> np.ndarray:
    """The field as a ``(3, 512, 512)`` uint8 array (DNA, PH3, cellbody)."""
    from moa_features.datasets import read_image

    return np.stack([read_image(root / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)])


def compare(root: Path = DATA) -> dict:
    """Match rate and median relative differences against CellProfiler's tables."""
    from moa_features.features.objects import INTENSITY_MEASURES, SHAPE_MEASURES, match_by_centre, site_objects

    image = load_field(root)
    objects, masks = site_objects(image, CHANNELS, 0, 2, **SETTINGS)
    theirs = pd.read_csv(root / "Nuclei.csv")
    ours_xy = np.column_stack([objects["Location_Center_X"], objects["Location_Center_Y"]])
    i, j = match_by_centre(ours_xy, theirs[["Location_Center_X", "Location_Center_Y"]].to_numpy(), MAX_DISTANCE)
    out: dict = {
        "cellprofiler_nuclei": len(theirs),
        "our_nuclei": masks.n,
        "matched": len(i),
        "match_rate": len(i) / len(theirs),
        "settings": SETTINGS,
        "median_relative_difference": {},
    }
    for compartment in ("Nuclei", "Cells", "Cytoplasm"):
        table = theirs if compartment == "Nuclei" else pd.read_csv(root / f"{compartment}.csv")
        table = table.set_index("ObjectNumber").loc[theirs["ObjectNumber"].to_numpy()[j]]
        for measure in SHAPE_MEASURES:
            column = f"AreaShape_{measure}"
            if column in table:
                ours = objects[f"{compartment}_AreaShape_{measure}"][i]
                out["median_relative_difference"][f"{compartment}_{column}"] = _median_rel(ours, table[column])
        for measure in INTENSITY_MEASURES:
            for channel in ("DNA", "PH3"):
                column = f"Intensity_{measure}_{channel}"
                if column in table:
                    scale = 1.0 if measure == "MassDisplacement" else 255.0
                    ours = objects[f"{compartment}_Intensity_{measure}_{channel}"][i] / scale
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
