"""Issue 21's CellProfiler families against cp-measure: parity and speed on the same images and masks.

For each family (Zernike, Granularity, RadialDistribution, Costes/RWC/K) ours and cp-measure's
(CellProfiler's algorithms as a library) run on the same image and the same label images
(Costes/RWC/K for the whole image and per object):

- **ExampleHuman** (CellProfiler's own 512x512 HT29 field, 3 channels): our segmentation with
  that pipeline's IdentifyPrimaryObjects settings gives nuclei, cells and cytoplasm; both sides
  measure every compartment and channel (Costes/RWC/K: every channel pair, whole image);
- optionally ``--full-size N`` demo sites (1024x1024, the first ``--channels`` channels).

Parity: per feature value, ``|ours - theirs| <= 1e-6 |theirs| + atol`` (atol 1e-12, or 1e-9
for granularity's percentages, whose spectrum tail is round-off around 0); NaN must meet NaN.
Speed: CPU seconds (``time.process_time``, one thread) of each side for the same work, after
a warm-up call; cp-measure's functions take contiguous labels, so compartments with missing
objects (an empty cytoplasm) are renumbered for it and compared on the objects present.
Zernike also against CellProfiler 4.0.6's own ``Nuclei.csv`` (objects matched by centre).

    python benchmarks/bench_cp_parity.py [--full-size 1] [--channels 3] [--out benchmarks/results_cp_parity.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _parity import EXAMPLEHUMAN, contiguous, examplehuman  # noqa: E402

from moa_features.features.colocalisation import colocalisation_features  # noqa: E402
from moa_features.features.granularity import granularity, granularity_objects  # noqa: E402
from moa_features.features.radial import radial_distribution, radial_geometry  # noqa: E402
from moa_features.features.zernike import zernike_shape  # noqa: E402

from _helpers import match_by_centre  # noqa: E402  (the tests' object matching, shared)


def _clock(function, *args, **kwargs):
    t0 = time.process_time()
    out = function(*args, **kwargs)
    return out, time.process_time() - t0


class Parity:
    """Accumulates value-by-value agreement of one family."""

    def __init__(self, atol: float):
        self.atol, self.values, self.off, self.worst = atol, 0, 0, 0.0

    def add(self, ours, theirs) -> None:
        ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
        both_nan = np.isnan(ours) & np.isnan(theirs)
        diff = np.abs(ours - theirs)
        ok = both_nan | (diff <= 1e-6 * np.abs(theirs) + self.atol)
        self.values += ours.size
        self.off += int((~ok).sum())
        scale = np.maximum(np.abs(theirs), self.atol / 1e-6)
        rel = np.where(both_nan, 0.0, diff / scale)
        self.worst = max(self.worst, float(np.nanmax(rel, initial=0.0)))

    def summary(self) -> dict:
        return {"values": self.values, "off_by_more_than_1e-6": self.off, "max_relative_difference": self.worst}


def _compartments(masks) -> dict[str, np.ndarray]:
    return {"Nuclei": masks.nuclei, "Cells": masks.cells, "Cytoplasm": masks.cytoplasm}


def bench_zernike(masks) -> dict:
    """Zernike; objects that differ are measured again by cp-measure on their own (see the tests:
    centrosome's circles of all objects at once can break a tie by another object's angles)."""
    from cp_measure.core.measureobjectsizeshape import get_zernike

    parity, ours_s, cp_s = Parity(1e-12), 0.0, 0.0
    differing, equal_alone = 0, 0
    zernike_shape(masks.nuclei[:64, :64])  # warm-up (compiled kernels loaded)
    for labels in _compartments(masks).values():
        present = np.unique(labels[labels > 0]) - 1
        ours, t = _clock(zernike_shape, labels, masks.n)
        ours_s += t
        dense = contiguous(labels)
        theirs, t = _clock(get_zernike, dense, None)
        cp_s += t
        off = np.zeros(len(present), bool)
        for name, values in theirs.items():
            parity.add(ours[name][present], values)
            off |= ~np.isclose(ours[name][present], values, rtol=1e-6, atol=1e-12)
        for k in np.flatnonzero(off):
            alone = get_zernike((dense == k + 1).astype(np.int32), None)
            differing += 1
            equal_alone += all(
                np.isclose(ours[name][present[k]], v[0], rtol=1e-6, atol=1e-12) for name, v in alone.items()
            )
    out = {"parity": parity.summary(), "ours_s": ours_s, "cp_measure_s": cp_s}
    out["objects_differing"], out["of_which_equal_to_cp_measure_on_the_object_alone"] = differing, equal_alone
    return out


def bench_radial(image, masks) -> dict:
    from cp_measure.core.measureobjectintensitydistribution import get_radial_distribution

    parity, ours_s, cp_s = Parity(1e-12), 0.0, 0.0
    radial_distribution(image[0, :64, :64], radial_geometry(masks.nuclei[:64, :64]))  # warm-up
    for labels in _compartments(masks).values():
        present = np.unique(labels[labels > 0]) - 1
        geometry, t = _clock(radial_geometry, labels, masks.n)
        ours_s += t
        for plane in image:
            values = plane.astype(np.float64)
            ours, t = _clock(radial_distribution, values, geometry)
            ours_s += t
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                theirs, t = _clock(get_radial_distribution, contiguous(labels), values)
            cp_s += t
            for name, values in theirs.items():
                parity.add(ours[name.removeprefix("RadialDistribution_")][present], values)
    return {"parity": parity.summary(), "ours_s": ours_s, "cp_measure_s": cp_s}


def bench_granularity(image, masks) -> dict:
    from cp_measure.core.measuregranularity import get_granularity

    parity, ours_s, cp_s = Parity(1e-9), 0.0, 0.0
    granularity(np.zeros((64, 64)), granularity_objects({"Nuclei": masks.nuclei[:64, :64]}, masks.n))  # warm-up
    tables, ours_s = _clock(granularity_objects, _compartments(masks), masks.n)
    for plane in image:
        values = plane.astype(np.float64)
        (_, ours), t = _clock(granularity, values, tables)
        ours_s += t
        for name, labels in _compartments(masks).items():
            present = np.unique(labels[labels > 0]) - 1
            theirs, t = _clock(get_granularity, contiguous(labels), values)
            cp_s += t
            for k in range(16):
                parity.add(ours[name][present, k], theirs[f"Granularity_{k + 1}"])
    return {"parity": parity.summary(), "ours_s": ours_s, "cp_measure_s": cp_s}


def bench_colocalisation(image, channels) -> dict:
    from cp_measure.core.measurecolocalization import (
        get_correlation_costes,
        get_correlation_overlap,
        get_correlation_rwc,
    )

    parity = Parity(1e-12)
    colocalisation_features(image[:2, :32, :32], channels[:2])  # warm-up
    ours, ours_s = _clock(colocalisation_features, image, channels)
    whole = np.ones(image.shape[1:], np.int32)
    scale = float(np.iinfo(image.dtype).max)
    cp_s = 0.0
    for i in range(len(channels)):
        for j in range(i + 1, len(channels)):
            a, b = channels[i], channels[j]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                costes, t1 = _clock(get_correlation_costes, image[i], image[j], whole)
            f, s = image[i] / scale, image[j] / scale
            rwc, t2 = _clock(get_correlation_rwc, f, s, whole)
            k, t3 = _clock(get_correlation_overlap, f, s, whole)
            cp_s += t1 + t2 + t3
            for measure, table in (("Costes", costes), ("RWC", rwc), ("K", k)):
                parity.add(ours[f"Image_Correlation_{measure}_{a}_{b}"], table[f"Correlation_{measure}_1"][0])
                parity.add(ours[f"Image_Correlation_{measure}_{b}_{a}"], table[f"Correlation_{measure}_2"][0])
    return {"parity": parity.summary(), "ours_s": ours_s, "cp_measure_s": cp_s}


def bench_object_colocalisation(image, masks, channels) -> dict:
    from cp_measure.core.measurecolocalization import (
        get_correlation_costes,
        get_correlation_overlap,
        get_correlation_rwc,
    )

    from moa_features.features.colocalisation import object_colocalisation

    parity, ours_s, cp_s = Parity(1e-12), 0.0, 0.0
    object_colocalisation(image[:2, :32, :32], channels[:2], masks.nuclei[:32, :32], masks.n)  # warm-up
    scale = float(np.iinfo(image.dtype).max)
    for labels in _compartments(masks).values():
        present = np.unique(labels[labels > 0]) - 1
        ours, t = _clock(object_colocalisation, image, channels, labels, masks.n)
        ours_s += t
        dense = contiguous(labels)
        for i in range(len(channels)):
            for j in range(i + 1, len(channels)):
                a, b = channels[i], channels[j]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    costes, t1 = _clock(get_correlation_costes, image[i], image[j], dense)
                f, s = image[i] / scale, image[j] / scale
                rwc, t2 = _clock(get_correlation_rwc, f, s, dense)
                k, t3 = _clock(get_correlation_overlap, f, s, dense)
                cp_s += t1 + t2 + t3
                for measure, table in (("Costes", costes), ("RWC", rwc), ("K", k)):
                    parity.add(ours[f"Correlation_{measure}_{a}_{b}"][present], table[f"Correlation_{measure}_1"])
                    parity.add(ours[f"Correlation_{measure}_{b}_{a}"][present], table[f"Correlation_{measure}_2"])
    return {"parity": parity.summary(), "ours_s": ours_s, "cp_measure_s": cp_s}


def zernike_vs_cellprofiler(masks, objects) -> dict:
    """Our nuclear Zernike features against CellProfiler 4.0.6's Nuclei.csv, objects matched by centre."""
    theirs = pd.read_csv(EXAMPLEHUMAN / "Nuclei.csv")
    xy = np.column_stack([objects["Location_Center_X"], objects["Location_Center_Y"]])
    i, j = match_by_centre(xy, theirs[["Location_Center_X", "Location_Center_Y"]].to_numpy(), 5.0)
    same = objects["Nuclei_AreaShape_Area"][i] == theirs["AreaShape_Area"].to_numpy()[j]
    z = zernike_shape(masks.nuclei, masks.n)
    medians, rel_medians, equal = {}, {}, []
    for name, values in z.items():
        cp = theirs[f"AreaShape_{name}"].to_numpy()[j]
        medians[name] = float(np.median(np.abs(values[i] - cp)))
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_medians[name] = float(np.nanmedian(np.abs(values[i] - cp) / np.abs(cp)))
        equal.append(np.isclose(values[i][same], cp[same], rtol=1e-6, atol=1e-12))
    equal = np.array(equal).all(axis=0)
    return {
        "cellprofiler_nuclei": len(theirs),
        "matched": len(i),
        "matched_same_area": int(same.sum()),
        "same_area_all_30_equal_1e-6": int(equal.sum()),
        "max_median_abs_difference": max(medians.values()),
        "max_median_relative_difference": max(rel_medians.values()),
    }


def run(image, masks, channels) -> dict:
    return {
        "zernike": bench_zernike(masks),
        "granularity": bench_granularity(image, masks),
        "radial": bench_radial(image, masks),
        "colocalisation": bench_colocalisation(image, list(channels)),
        "colocalisation per object": bench_object_colocalisation(image, masks, list(channels)),
    }


def _table(title: str, results: dict) -> str:
    lines = [f"{title}", "", "| family | values | off by > 1e-6 | max rel. diff | ours s | cp-measure s | speed-up |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for family, r in results.items():
        p = r["parity"]
        lines.append(
            f"| {family} | {p['values']} | {p['off_by_more_than_1e-6']} | {p['max_relative_difference']:.1e} | "
            f"{r['ours_s']:.3f} | {r['cp_measure_s']:.3f} | {r['cp_measure_s'] / max(r['ours_s'], 1e-9):.0f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full-size", type=int, default=0, help="also N full-size demo sites (slow on cp-measure's side)")
    ap.add_argument("--channels", type=int, default=3, help="channels of the full-size sites to measure")
    ap.add_argument("--cache", default=".cache/bench-full")
    ap.add_argument("--out", default="benchmarks/results_cp_parity.json")
    args = ap.parse_args()
    res: dict[str, object] = {}
    if (EXAMPLEHUMAN / "Nuclei.csv").exists():
        image, masks, objects = examplehuman()
        res["examplehuman"] = run(image, masks, ("DNA", "PH3", "cellbody"))
        res["zernike_vs_cellprofiler"] = zernike_vs_cellprofiler(masks, objects)
        print(_table(f"ExampleHuman, {masks.n} objects x 3 compartments x 3 channels", res["examplehuman"]))
        z = res["examplehuman"]["zernike"]
        print(
            f"Zernike objects differing: {z['objects_differing']}, equal to cp-measure on the object alone: "
            f"{z['of_which_equal_to_cp_measure_on_the_object_alone']}"
        )
        print("Zernike vs CellProfiler 4.0.6 (nuclei):", json.dumps(res["zernike_vs_cellprofiler"]))
    else:
        print(f"ExampleHuman not found at {EXAMPLEHUMAN}: skipped")
    if args.full_size:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_extract import full_size_sites

        from moa_features.features import FeatureParams, SiteImage

        sites, _ = full_size_sites(Path(args.cache), args.full_size)
        for k, site in enumerate(sites):
            image = site.load()[: args.channels]
            channels = site.channels[: args.channels]
            masks = SiteImage(site.load(), site.channels, FeatureParams()).masks
            res[f"full_size_{k}"] = run(image, masks, channels)
            print(_table(f"full-size site {k}: {masks.n} objects, {len(channels)} channels", res[f"full_size_{k}"]))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
