"""Per-site extraction cost on full-size 1024x1024x6 sites, side by side with comparisons.

Measured in one process, one core (BLAS/OpenMP threads pinned to 1), on the same sites, as
CPU time (``time.process_time``: robust to other load on a shared machine), after one
warm-up site (numba's compiled kernels are loaded from their on-disk cache, or compiled
once per installation, about 2 s, before the clock starts):

1. this package, by stage, with the full default set (run-fixed texture levels, per-object
   measurements and table, illumination correction learned by the run's first pass):
   decode (six PNGs), illumination, intensity, texture, morphology (segmentation, per-object
   measurements, aggregation), correlation, neighbors, thumbnail; and the worker's whole
   per-site call; then the same with ``--cells watershed`` (the secondary segmentation before
   Propagation became the default), side by side;
2. the original approach: per-file ``keras.utils.load_img(..., target_size=(100, 100))`` and
   ``np.append`` into a growing array (its quadratic part measured separately at larger N);
3. CellProfiler's measurements through ``cp-measure`` on the same images and masks, for the
   comparable per-object families (object intensity, texture, size/shape), each against ours;
4. the floor: decoding the six PNGs alone.

Then whole-process scaling of ``extract`` from 1 to 2 workers, and a projection for RxRx2.

    python benchmarks/bench_extract.py [--sites 8] [--repeats 3] [--treatment-step 1]
        [--skip original,cp_measure,scaling,watershed] [--out benchmarks/results_extract.json]
        [--features intensity,texture,...]   (default: the default set; stages are timed per family,
                                              segmentation on its own, so opt-in families are priced too)
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RXRX2_SITES = 131_953
ISSUE_21_FAMILIES = ("neighbors", "colocalisation", "zernike", "granularity", "radial")


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def full_size_sites(root: Path, n: int, treatment_step: int = 1):
    from moa_features.datasets import open_dataset
    from moa_features.synthetic import make_screen

    fewer = {"treatment_step": treatment_step} if treatment_step > 1 else {}  # fewer wells, the same sites
    meta = make_screen(root, preset="full", seed=0, n_jobs=2, n_experiments=1, n_plates=1, sites_per_well=1, **fewer)
    ds = open_dataset(meta.parent)
    # spread the sample over treatments rather than taking one well's neighbours
    step = max(1, len(ds.sites) // n)
    return ds.sites[::step][:n], meta.parent


def calibrated_params(sites, tmp: Path):
    """The run's first pass on the benchmark sites, as extract runs it (illumination + texture levels)."""
    from moa_features.calibration import calibrate
    from moa_features.features import FeatureParams

    return calibrate(sites, tmp / "bench.parquet", FeatureParams(objects=True))


def bench_stages(sites, repeats: int, params) -> dict[str, float]:
    """CPU seconds per stage of the full default set (per-object table and illumination included)."""
    from moa_features import calibration
    from moa_features.extract import thumbnail
    from moa_features.features import timed_measure
    from moa_features.illumination import correct

    cal = calibration.load_calibration(params.calibration)
    calibration.measure_site(sites[0].load(), sites[0], params)  # warm-up: numba kernels loaded or compiled
    per_stage: dict[str, list[float]] = {}
    hook: list[float] = []
    for _ in range(repeats):
        for site in sites:
            t0 = time.process_time()
            image = site.load()
            per_stage.setdefault("decode", []).append(time.process_time() - t0)
            t0 = time.process_time()
            function = cal.illumination(site.metadata)
            corrected = correct(image, function) if function is not None else image
            per_stage.setdefault("illumination", []).append(time.process_time() - t0)
            _, seconds = timed_measure(corrected, site.channels, params, texture_luts=cal.texture_luts)
            for k, v in seconds.items():
                per_stage.setdefault(k, []).append(v)
            t0 = time.process_time()
            thumbnail(image, 100)
            per_stage.setdefault("thumbnail", []).append(time.process_time() - t0)
            # the worker's real per-site call: correction, every family, the per-object rows
            t0 = time.process_time()
            calibration.measure_site(image, site, params)
            hook.append(time.process_time() - t0)
    out = {k: _median(v) for k, v in per_stage.items()}
    out["total"] = sum(out.values())
    out["worker_hook_measure_site"] = _median(hook)
    return out


def bench_original(sites, repeats: int) -> dict[str, float]:
    """The original notebook: Keras load_img per file to 100x100, then np.append per site."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from keras.utils import img_to_array, load_img

    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        X = np.empty((0, 100, 100, 6), dtype=np.float32)
        for site in sites:
            chans = [img_to_array(load_img(p, color_mode="grayscale", target_size=(100, 100))) for p in site.paths]
            X = np.append(X, [np.concatenate(chans, axis=-1)], axis=0)
        times.append((time.process_time() - t0) / len(sites))
    # np.append copies the whole array each time: cost per site grows linearly with N
    append_cost = {}
    for n in (500, 1000, 2000):
        x = np.empty((0, 100, 100, 6), dtype=np.float32)
        one = np.zeros((1, 100, 100, 6), dtype=np.float32)
        t0 = time.process_time()
        for _ in range(n):
            x = np.append(x, one, axis=0)
        append_cost[n] = (time.process_time() - t0) / n
    return {"per_site": _median(times), "append_per_site_at_n": append_cost}


def bench_cp_measure(sites, repeats: int) -> dict[str, float]:
    """cp-measure's per-object intensity, texture and size/shape against ours, same images and masks.

    Masks: our nuclei and cells (border objects kept, as cp-measure gets them). Ours: the same
    per-object families (:func:`object_intensity` per channel and mask, :func:`shape_measurements`
    per mask, :func:`object_texture` per channel and mask at 32 levels, distance 1;
    cp-measure's texture is at 256 levels, distance 3).
    """
    from cp_measure.bulk import get_core_measurements
    from skimage.segmentation import relabel_sequential

    from moa_features.features import segment, shape_measurements
    from moa_features.features.object_intensity import object_intensity
    from moa_features.features.site import measure_objects
    from moa_features.features.texture import object_texture, quantize

    core = get_core_measurements()
    fams = {"intensity": core["intensity"], "texture": core["texture"], "sizeshape": core["sizeshape"]}
    per: dict[str, list[float]] = {k: [] for k in fams}
    ours: dict[str, list[float]] = {k: [] for k in (*fams, "intensity_and_sizeshape_3_compartments")}
    ours_seg = []
    for _ in range(repeats):
        for site in sites:
            image = site.load()
            t0 = time.process_time()
            masks = segment(image, exclude_border=False)
            ours_seg.append(time.process_time() - t0)
            labels = [relabel_sequential(m)[0] for m in (masks.nuclei, masks.cells)]
            pixels = [plane.astype(np.float64) / 255.0 for plane in image]
            t0 = time.process_time()
            for m in labels:
                fams["sizeshape"](m, None)
            per["sizeshape"].append(time.process_time() - t0)
            for name in ("intensity", "texture"):
                t0 = time.process_time()
                for m in labels:
                    for px in pixels:
                        fams[name](m, px)
                per[name].append(time.process_time() - t0)
            t0 = time.process_time()
            for m in labels:
                shape_measurements(m)
            ours["sizeshape"].append(time.process_time() - t0)
            t0 = time.process_time()
            for m in labels:
                for plane in image:
                    object_intensity(plane, m)
            ours["intensity"].append(time.process_time() - t0)
            t0 = time.process_time()
            measure_objects(image, site.channels, masks)  # what extract runs: 3 compartments, shared work
            ours["intensity_and_sizeshape_3_compartments"].append(time.process_time() - t0)
            t0 = time.process_time()
            for m in labels:
                for plane in image:
                    object_texture(quantize(plane, 32), m, int(m.max()), 32, 1)
            ours["texture"].append(time.process_time() - t0)
    out = {k: _median(v) for k, v in per.items()}
    out["total"] = sum(out.values())
    out["segmentation_ours"] = _median(ours_seg)
    out["ours"] = {k: _median(v) for k, v in ours.items()}
    out["ratio_cp_measure_to_ours"] = {k: out[k] / out["ours"][k] for k in fams}
    out["ratio_cp_measure_intensity_sizeshape_2_masks_to_ours_3_compartments"] = (
        out["intensity"] + out["sizeshape"]
    ) / out["ours"]["intensity_and_sizeshape_3_compartments"]
    return out


def bench_scaling(root: Path, tmp: Path) -> dict[str, dict[str, float]]:
    from moa_features.extract import extract

    out = {}
    for n_jobs in (1, 2):
        t0 = time.perf_counter()
        r = extract(root, tmp / f"scale{n_jobs}.parquet", n_jobs=n_jobs, chunk_size=2, progress=False, thumbs=100)
        wall = time.perf_counter() - t0
        out[str(n_jobs)] = {
            "sites": r.n_ok,
            "wall_s": wall,
            "sites_per_s": r.n_ok / wall,
            "cpu_s_per_site": r.cpu_seconds_per_site,
        }
    out["speedup_2_vs_1"] = out["2"]["sites_per_s"] / out["1"]["sites_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default=".cache/bench-full")
    ap.add_argument("--out", default="benchmarks/results_extract.json")
    ap.add_argument(
        "--treatment-step",
        type=int,
        default=1,
        help="keep every k-th treatment of the screen (fewer wells to generate; the sites are alike)",
    )
    ap.add_argument("--skip", default="", help="comma-separated: original,cp_measure,scaling,watershed")
    ap.add_argument(
        "--features",
        default=None,
        help="comma-separated families to time (default: the default set; e.g. add granularity,radial to price them)",
    )
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    sites, root = full_size_sites(Path(args.cache), args.sites, args.treatment_step)
    print(f"{len(sites)} full-size sites of {root}, {args.repeats} repeats, one core")

    res: dict[str, object] = {"n_sites": len(sites), "repeats": args.repeats}
    from moa_features.datasets import open_dataset

    t0 = time.process_time()
    params = calibrated_params(open_dataset(root).sites, Path(args.cache))
    res["first_pass_cpu_s"] = time.process_time() - t0
    if args.features:
        from dataclasses import replace

        params = replace(params, families=tuple(f.strip() for f in args.features.split(",") if f.strip()))
    res["families"] = list(params.families)
    ours = bench_stages(sites, args.repeats, params)
    # the same run without issue 21's families: the set that measured 0.40 s before them
    res["total_without_issue_21_families"] = ours["total"] - sum(ours.get(f, 0.0) for f in ISSUE_21_FAMILIES)
    res["ours_per_site_s"] = ours
    decode = ours["decode"]
    features_only = ours["total"] - decode - ours["thumbnail"] - ours["illumination"]
    print("this package, median s/site:", {k: round(v, 4) for k, v in ours.items()})
    print(f"the same without issue 21's families: {res['total_without_issue_21_families']:.3f} s/site")
    if "watershed" not in skip:  # the previous default secondary segmentation, side by side
        from dataclasses import replace

        watershed = bench_stages(sites, args.repeats, replace(params, cells="watershed"))
        res["ours_per_site_s_watershed"] = watershed
        print("with --cells watershed, median s/site:", {k: round(v, 4) for k, v in watershed.items()})
    res["ratio_total_to_decode_floor"] = ours["total"] / decode
    if "original" not in skip:
        orig = bench_original(sites, args.repeats)
        res["original"] = orig
        print(
            f"original load_img+np.append: {orig['per_site']:.4f} s/site; np.append alone per site at N:",
            {n: f"{v * 1e3:.2f} ms" for n, v in orig["append_per_site_at_n"].items()},
        )
    if "cp_measure" not in skip:
        cp = bench_cp_measure(sites[: max(2, len(sites) // 2)], 1)
        res["cp_measure_per_site_s"] = cp
        print(
            "cp-measure vs ours, per-object families on the same masks (s/site):",
            {
                k: (round(cp[k], 3), round(cp["ours"][k], 3), f"{cp['ratio_cp_measure_to_ours'][k]:.1f}x")
                for k in ("intensity", "texture", "sizeshape")
            },
        )
    if "scaling" not in skip:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            res["scaling"] = bench_scaling(root, Path(tmp))
        print("scaling:", json.dumps(res["scaling"], indent=1))
    per_core = ours["total"]
    res["projection_rxrx2_core_hours"] = RXRX2_SITES * per_core / 3600
    res["projection_rxrx2_hours_on"] = {n: RXRX2_SITES * per_core / 3600 / n for n in (2, 16, 64, 256)}
    print(
        f"total {per_core:.3f} s/site/core = {1 / per_core:.2f} sites/s/core; "
        f"{ours['total'] / decode:.1f}x the decode floor; features alone {features_only:.3f} s"
    )
    print(
        f"RxRx2 ({RXRX2_SITES} sites): {res['projection_rxrx2_core_hours']:.0f} core-hours; "
        + ", ".join(f"{h:.1f} h on {n} cores" for n, h in res["projection_rxrx2_hours_on"].items())
    )
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
