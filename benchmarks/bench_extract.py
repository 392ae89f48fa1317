"""Per-site extraction cost on full-size 1024x1024x6 sites, side by side with comparisons.

Measured in one process, one core (BLAS/OpenMP threads pinned to 1), on the same sites, as
CPU time (``time.process_time``: robust to other load on a shared machine):

1. this package, by stage: decode (six PNGs), intensity, texture, morphology, correlation,
   thumbnail;
2. the original approach: per-file ``keras.utils.load_img(..., target_size=(100, 100))`` and
   ``np.append`` into a growing array (its quadratic part measured separately at larger N);
3. CellProfiler's measurements through ``cp-measure`` on the same images and masks, for the
   comparable families (object intensity, texture, size/shape);
4. the floor: decoding the six PNGs alone.

Then whole-process scaling of ``extract`` from 1 to 2 workers, and a projection for RxRx2.

    python benchmarks/bench_extract.py [--sites 8] [--repeats 3] [--out benchmarks/results_extract.json]
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


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def full_size_sites(root: Path, n: int):
    from moa_features.datasets import open_dataset
    from moa_features.synthetic import make_screen

    meta = make_screen(root, preset="full", seed=0, n_jobs=2, n_experiments=1, n_plates=1, sites_per_well=1)
    ds = open_dataset(meta.parent)
    # spread the sample over treatments rather than taking one well's neighbours
    step = max(1, len(ds.sites) // n)
    return ds.sites[::step][:n], meta.parent


def bench_stages(sites, repeats: int) -> dict[str, float]:
    from moa_features.extract import thumbnail
    from moa_features.features import FeatureParams, timed_measure

    per_stage: dict[str, list[float]] = {}
    for _ in range(repeats):
        for site in sites:
            t0 = time.process_time()
            image = site.load()
            per_stage.setdefault("decode", []).append(time.process_time() - t0)
            _, seconds = timed_measure(image, site.channels, FeatureParams())
            for k, v in seconds.items():
                per_stage.setdefault(k, []).append(v)
            t0 = time.process_time()
            thumbnail(image, 100)
            per_stage.setdefault("thumbnail", []).append(time.process_time() - t0)
    out = {k: _median(v) for k, v in per_stage.items()}
    out["total"] = sum(out.values())
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
    """cp-measure's intensity, texture and size/shape on our nuclei and cell masks."""
    from cp_measure.bulk import get_core_measurements

    from moa_features.features.morphology import segment_cells, segment_nuclei

    core = get_core_measurements()
    fams = {"intensity": core["intensity"], "texture": core["texture"], "sizeshape": core["sizeshape"]}
    per: dict[str, list[float]] = {k: [] for k in fams}
    ours_seg = []
    for _ in range(repeats):
        for site in sites:
            image = site.load()
            t0 = time.process_time()
            nuclei = segment_nuclei(image[0])
            cells = segment_cells(image[2], nuclei)
            ours_seg.append(time.process_time() - t0)
            from skimage.segmentation import relabel_sequential

            masks = [relabel_sequential(m)[0] for m in (nuclei, cells)]
            pixels = [plane.astype(np.float64) / 255.0 for plane in image]
            t0 = time.process_time()
            for m in masks:
                fams["sizeshape"](m, None)
            per["sizeshape"].append(time.process_time() - t0)
            for name in ("intensity", "texture"):
                t0 = time.process_time()
                for m in masks:
                    for px in pixels:
                        fams[name](m, px)
                per[name].append(time.process_time() - t0)
    out = {k: _median(v) for k, v in per.items()}
    out["total"] = sum(out.values())
    out["segmentation_ours"] = _median(ours_seg)
    return out


def bench_scaling(root: Path, tmp: Path) -> dict[str, dict[str, float]]:
    from moa_features.extract import extract

    out = {}
    for n_jobs in (1, 2):
        t0 = time.perf_counter()
        r = extract(root, tmp / f"scale{n_jobs}.parquet", n_jobs=n_jobs, chunk_size=2, progress=False, thumbs=100)
        wall = time.perf_counter() - t0
        out[str(n_jobs)] = {"sites": r.n_ok, "wall_s": wall, "sites_per_s": r.n_ok / wall,
                            "cpu_s_per_site": r.cpu_seconds_per_site}
    out["speedup_2_vs_1"] = out["2"]["sites_per_s"] / out["1"]["sites_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default=".cache/bench-full")
    ap.add_argument("--out", default="benchmarks/results_extract.json")
    ap.add_argument("--skip", default="", help="comma-separated: original,cp_measure,scaling")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    sites, root = full_size_sites(Path(args.cache), args.sites)
    print(f"{len(sites)} full-size sites of {root}, {args.repeats} repeats, one core")

    res: dict[str, object] = {"n_sites": len(sites), "repeats": args.repeats}
    ours = bench_stages(sites, args.repeats)
    res["ours_per_site_s"] = ours
    decode = ours["decode"]
    features_only = ours["total"] - decode - ours["thumbnail"]
    print("this package, median s/site:", {k: round(v, 4) for k, v in ours.items()})
    res["ratio_total_to_decode_floor"] = ours["total"] / decode
    if "original" not in skip:
        orig = bench_original(sites, args.repeats)
        res["original"] = orig
        print(f"original load_img+np.append: {orig['per_site']:.4f} s/site; np.append alone per site at N:",
              {n: f"{v * 1e3:.2f} ms" for n, v in orig["append_per_site_at_n"].items()})
    if "cp_measure" not in skip:
        cp = bench_cp_measure(sites[: max(2, len(sites) // 2)], 1)
        res["cp_measure_per_site_s"] = cp
        comparable = ours["intensity"] + ours["texture"] + ours["morphology"]
        res["ratio_cp_measure_to_ours_comparable"] = cp["total"] / comparable
        print(f"cp-measure (intensity+texture+sizeshape): {cp['total']:.3f} s/site vs ours "
              f"(intensity+texture+morphology incl. segmentation) {comparable:.3f} s/site "
              f"-> {cp['total'] / comparable:.1f}x")
    if "scaling" not in skip:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            res["scaling"] = bench_scaling(root, Path(tmp))
        print("scaling:", json.dumps(res["scaling"], indent=1))
    per_core = ours["total"]
    res["projection_rxrx2_core_hours"] = RXRX2_SITES * per_core / 3600
    res["projection_rxrx2_hours_on"] = {n: RXRX2_SITES * per_core / 3600 / n for n in (2, 16, 64, 256)}
    print(f"total {per_core:.3f} s/site/core = {1 / per_core:.2f} sites/s/core; "
          f"{ours['total'] / decode:.1f}x the decode floor; features alone {features_only:.3f} s")
    print(f"RxRx2 ({RXRX2_SITES} sites): {res['projection_rxrx2_core_hours']:.0f} core-hours; "
          + ", ".join(f"{h:.1f} h on {n} cores" for n, h in res["projection_rxrx2_hours_on"].items()))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
