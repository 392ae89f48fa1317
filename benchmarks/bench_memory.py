"""Peak memory of ``extract`` as the number of sites grows (100, 500, 2,000 demo sites).

Each run is a fresh ``python -m moa_features.extract`` process (serial, so its own peak RSS
is the whole job's); the peak comes from ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a
one-shot wrapper process, so runs do not see each other's peaks.

    python benchmarks/bench_memory.py [--sizes 100,500,2000] [--out benchmarks/results_memory.json]
    python benchmarks/bench_memory.py --tiny --sizes 2000,20000 --out benchmarks/results_memory_tiny.json

``--tiny``: RxRx2-scale site counts at little cost. The sites are a manifest CSV (six
``path_w<k>`` columns) whose rows cycle through the images of the tiny demo screen (64x64 px),
each row its own site (its own plate of 384 sites, well, site number and site id), so
everything the run keeps per site (site index, chunks, error rows, thumbnails) grows as in a
real screen while the pixels cost little.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

_WRAPPER = (
    "import resource, subprocess, sys; "
    "rc = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


def screens(sizes: list[int], cache: Path) -> dict[int, Path]:
    """One demo-preset screen (256x256 sites) big enough for the largest size; the first n
    sites (by site id) of it for each size, as metadata CSVs beside its images."""
    from moa_features.synthetic import make_screen

    per_plate = 16  # demo preset (mini RxRx2): 19-22 sites per plate; 16 leaves a margin
    n_plates = max(1, -(-max(sizes) // (per_plate * 2)))  # 2 experiments
    root = cache / f"mem-{n_plates}"
    df = pd.read_csv(make_screen(root, preset="demo", seed=0, n_jobs=2, n_plates=n_plates)).sort_values("site_id")
    if len(df) < max(sizes):
        raise SystemExit(f"screen has only {len(df)} sites, wanted {max(sizes)}")
    out = {}
    for n in sizes:
        out[n] = root / f"metadata_{n}.csv"
        df.head(n).to_csv(out[n], index=False)
    return out


def tiny_screens(sizes: list[int], cache: Path) -> dict[int, Path]:
    """Manifest CSVs of n sites each over the images of the tiny demo screen (64x64 px)."""
    from moa_features.synthetic import make_screen

    root = (cache / "tiny-64").resolve()
    source = pd.read_csv(make_screen(root, preset="tiny", seed=0, n_jobs=2, image_size=64)).sort_values("site_id")
    files = [
        {f"path_w{c}": str(root / "images" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}_w{c}.png")
         for c in range(1, 7)}
        for r in source.itertuples()
    ]  # fmt: skip
    treatments = source["sirna"].astype(str).tolist() if "sirna" in source else source["treatment"].astype(str).tolist()
    out = {}
    for n in sizes:
        rows = []
        for i in range(n):
            j = i % len(files)
            plate, well = f"T{i // 384:04d}", f"{chr(65 + (i % 384) // 24)}{(i % 24) + 1:02d}"
            rows.append(
                {**files[j], "Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": 1,
                 "Metadata_Treatment": treatments[j], "Metadata_site_id": f"{plate}_{well}_1"}
            )  # fmt: skip
        out[n] = root / f"manifest_{n}.csv"
        pd.DataFrame(rows).to_csv(out[n], index=False)
    return out


def peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    if out.returncode not in (0, 3):
        raise SystemExit(out.stderr)
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,500,2000")
    ap.add_argument("--cache", default=".cache/bench-memory")
    ap.add_argument("--out", default="benchmarks/results_memory.json")
    ap.add_argument("--tiny", action="store_true", help="manifest sites over the tiny demo's 64x64 images")
    args = ap.parse_args()
    results = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    made = tiny_screens(sizes, Path(args.cache)) if args.tiny else screens(sizes, Path(args.cache))
    for n, meta in made.items():
        out = Path(args.cache) / f"features_{'tiny_' if args.tiny else ''}{n}.parquet"
        cmd = [
            sys.executable,
            "-m",
            "moa_features.extract",
            str(meta),
            "--layout",
            "manifest" if args.tiny else "rxrx",
            "-o",
            str(out),
            "--thumbs",
            "100",
            "-q",
            "--no-report",
        ]
        rss, wall = peak_rss_mib(cmd)
        results[n] = {"peak_rss_mib": round(rss, 1), "wall_s": round(wall, 1)}
        print(f"{n:>6} sites: peak RSS {rss:.0f} MiB, {wall:.0f} s")
    sizes = sorted(results)
    ratio = results[sizes[-1]]["peak_rss_mib"] / results[sizes[0]]["peak_rss_mib"]
    print(f"peak RSS ratio {sizes[-1]} / {sizes[0]} sites: {ratio:.2f}")
    Path(args.out).write_text(json.dumps({"results": results, "ratio": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
