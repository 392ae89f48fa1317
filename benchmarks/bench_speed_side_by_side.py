"""The full default feature set before and after a change, side by side in one process.

An older commit's ``moa_features`` is exported (``git archive``) into a temporary folder and
imported under another name (``moa_features_old``), so both run in the same process on the same
sites: per site, alternately (the order swapped every repeat), each package's ``timed_measure``
(segmentation and every default family, per-object table included) on the same decoded,
illumination-corrected 1024x1024x6 pixels, each with its own first pass (illumination, texture
levels) over the benchmark screen. The two outputs are checked equal site by site (every
feature, NaN where both are NaN). CPU seconds (``time.process_time``), one thread, medians.

    python benchmarks/bench_speed_side_by_side.py --old ba797b5 [--sites 4] [--repeats 3]
        [--treatment-step 16] [--out benchmarks/results_extract_speed_side_by_side.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OLD_NAME = "moa_features_old"


def export_old(commit: str, folder: Path) -> None:
    """``moa_features`` at ``commit`` as the package ``moa_features_old`` in ``folder``."""
    archive = subprocess.run(["git", "archive", commit, "moa_features"], cwd=REPO, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "moa_features").rename(folder / OLD_NAME)
    for path in (folder / OLD_NAME).rglob("*.py"):
        path.write_text(re.sub(r"\bmoa_features\b", OLD_NAME, path.read_text()))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the commit to compare with (e.g. ba797b5)")
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--treatment-step", type=int, default=16)
    ap.add_argument("--cache", default=".cache/bench-full")
    ap.add_argument("--out", default="benchmarks/results_extract_speed_side_by_side.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_extract import full_size_sites

    from moa_features import calibration
    from moa_features.illumination import correct

    sites, root = full_size_sites(Path(args.cache), args.sites, args.treatment_step)
    with tempfile.TemporaryDirectory() as tmp:
        export_old(args.old, Path(tmp))
        sys.path.insert(0, tmp)
        packages = {"old": OLD_NAME, "new": "moa_features"}
        runs = {}
        for which, name in packages.items():
            features = importlib.import_module(f"{name}.features")
            first_pass = importlib.import_module(f"{name}.calibration")
            datasets = importlib.import_module(f"{name}.datasets")
            params = first_pass.calibrate(
                datasets.open_dataset(root).sites,
                Path(tmp) / which / "bench.parquet",
                features.FeatureParams(objects=True),
            )
            luts = first_pass.load_calibration(params.calibration).texture_luts
            runs[which] = (features.timed_measure, params, luts)
        illumination = calibration.load_calibration(runs["new"][1].calibration)
        images = []
        for site in sites:
            image = site.load()
            function = illumination.illumination(site.metadata)
            images.append((correct(image, function) if function is not None else image, site.channels))
        for measure, params, luts in runs.values():  # warm-up: compiled kernels loaded or compiled
            measure(images[0][0], images[0][1], params, texture_luts=luts)
        seconds: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
        for repeat in range(args.repeats):
            for image, channels in images:
                outputs = {}
                for which in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
                    measure, params, luts = runs[which]
                    t0 = time.process_time()
                    outputs[which], stages = measure(image, channels, params, texture_luts=luts)
                    stages = {**stages, "all": time.process_time() - t0}
                    for stage, value in stages.items():
                        seconds[which].setdefault(stage, []).append(value)
                if not _same(outputs["old"], outputs["new"]):
                    raise SystemExit("the two versions' features differ")
    res = {which: {k: statistics.median(v) for k, v in d.items()} for which, d in seconds.items()}
    res["ratio_old_to_new"] = {k: res["old"][k] / res["new"][k] for k in res["old"]}
    res.update(n_sites=len(sites), repeats=args.repeats, old_commit=args.old)
    print(json.dumps(res, indent=1))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
