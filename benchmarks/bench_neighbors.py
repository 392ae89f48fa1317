"""The neighbors family against cp-measure's ``measureobjectneighbors``: equality and speed, same masks.

Masks: our segmentation (defaults, Propagation cells) of real fields: CellProfiler's ExampleHuman
field (``../shared/data/cellprofiler_examplehuman``, with its pipeline's settings
``--threshold li --min-diameter 8 --max-diameter 80``) and the RxRx1 sites found under
``../shared/data/rxrx1`` (or the two vendored in ``tests/data``). For each site: nuclei within 1
pixel and cells adjacent, as the family measures them, through both implementations.

Reported: the largest relative difference per measure over every object (equality is to 1e-6
relative), and the CPU time per site on one core (``time.process_time``, medians over
``--repeats``, after one warm-up call of each), ours against cp-measure's, measured side by side.

    python benchmarks/bench_neighbors.py [--sites 6] [--repeats 3] [--out benchmarks/results_neighbors.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
EXAMPLEHUMAN = SHARED / "cellprofiler_examplehuman"
SETTINGS = {"Nuclei": ("Within a specified distance", 1, "1"), "Cells": ("Adjacent", 1, "Adjacent")}


def fields(n: int) -> list[tuple[str, np.ndarray, dict]]:
    """Up to ``n`` real fields as ``(name, (C, H, W) uint8 image, segmentation options)``."""
    from moa_features.datasets import read_image

    out = []
    if (EXAMPLEHUMAN / "Nuclei.csv").exists():
        image = np.stack([read_image(EXAMPLEHUMAN / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)])
        out.append(("ExampleHuman", image, {"threshold": "li", "min_diameter": 8, "max_diameter": 80}))
    for root in (SHARED / "rxrx1" / "images", REPO / "tests" / "data" / "rxrx1" / "images"):
        for first in sorted(root.glob("*/Plate*/*_w1.png")):
            if len(out) >= n:
                return out
            paths = [Path(str(first).replace("_w1.", f"_w{c}.")) for c in range(1, 7)]
            if not all(p.is_file() for p in paths):
                continue
            image = np.stack([np.asarray(Image.open(p)) for p in paths])
            out.append((f"{first.parts[-3]}/{first.parts[-2]}/{first.name[:-7]}", image, {}))
        if len(out) > 1:
            break
    return out


def compare(sites: int, repeats: int) -> dict:
    from cp_measure.multimask.measureobjectneighbors import measureobjectneighbors

    from moa_features.features import segment
    from moa_features.features.neighbors import NEIGHBOR_MEASURES, object_neighbors

    worst = dict.fromkeys(NEIGHBOR_MEASURES, 0.0)
    ours_s, theirs_s, rows = [], [], []
    for name, image, options in fields(sites):
        masks = segment(image, **options)
        labels = {"Nuclei": masks.nuclei, "Cells": masks.cells}
        for compartment, (method, distance, scale) in SETTINGS.items():  # warm-up, then equality
            ours = object_neighbors(labels[compartment], masks.n, distance)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = measureobjectneighbors(labels[compartment], labels[compartment], method, distance)
            for measure in NEIGHBOR_MEASURES:
                ref = np.asarray(theirs[f"Neighbors_{measure}_{scale}"], dtype=np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.abs(ours[measure] - ref) / np.maximum(np.abs(ref), 1e-12)
                worst[measure] = max(worst[measure], float(np.nanmax(rel, initial=0.0)))
        t_ours, t_theirs = [], []
        for _ in range(repeats):
            t0 = time.process_time()
            for compartment, (_, distance, _) in SETTINGS.items():
                object_neighbors(labels[compartment], masks.n, distance)
            t_ours.append(time.process_time() - t0)
            t0 = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for compartment, (method, distance, _) in SETTINGS.items():
                    measureobjectneighbors(labels[compartment], labels[compartment], method, distance)
            t_theirs.append(time.process_time() - t0)
        ours_s.append(statistics.median(t_ours))
        theirs_s.append(statistics.median(t_theirs))
        rows.append({"site": name, "shape": list(image.shape[1:]), "objects": masks.n})
        print(f"{name}: {masks.n} objects, ours {ours_s[-1] * 1e3:.1f} ms, cp-measure {theirs_s[-1] * 1e3:.1f} ms")
    ours_med, theirs_med = statistics.median(ours_s), statistics.median(theirs_s)
    return {
        "sites": rows,
        "repeats": repeats,
        "max_relative_difference": worst,
        "seconds_per_site_ours": ours_med,
        "seconds_per_site_cp_measure": theirs_med,
        "ratio_cp_measure_to_ours": theirs_med / ours_med,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results_neighbors.json"))
    args = ap.parse_args()
    result = compare(args.sites, args.repeats)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "sites"}, indent=1))


if __name__ == "__main__":
    main()
