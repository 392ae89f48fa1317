"""Seconds per full-size site for the intensity, texture and correlation families (one core).

A real 512x512 RxRx1 site, tiled 2x2 to the full RxRx 1024x1024x6 uint8 size, measured
``--repeats`` times per family; prints the median and minimum. BLAS is pinned to one
thread so the figures are per core (the extraction stage runs one site per worker).

    python benchmarks/bench_feature_families.py [--repeats 15] [--site DIR]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from moa_features.features.correlation import correlation_features  # noqa: E402
from moa_features.features.intensity import intensity_features  # noqa: E402
from moa_features.features.texture import texture_features  # noqa: E402

DEFAULT_SITE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rxrx1" / "images" / "HEPG2-01" / "Plate1"
BUDGET = {"intensity": 0.08, "texture": 0.25, "correlation": 0.06}


def full_size_site(folder: Path) -> np.ndarray:
    """``(6, 1024, 1024)`` uint8: the site ``B02_s1`` in ``folder`` tiled 2x2."""
    planes = [np.asarray(Image.open(folder / f"B02_s1_w{c}.png")) for c in range(1, 7)]
    return np.stack([np.tile(p, (2, 2)) for p in planes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE, help="folder with B02_s1_w1..w6.png")
    args = parser.parse_args()
    image = full_size_site(args.site)
    channels = [f"w{i}" for i in range(1, 7)]
    families = {"intensity": intensity_features, "texture": texture_features, "correlation": correlation_features}
    for fn in families.values():  # warm up (imports, allocator)
        fn(image, channels)
    times: dict[str, list[float]] = {name: [] for name in families}
    for _ in range(args.repeats):
        for name, fn in families.items():
            t0 = time.perf_counter()
            fn(image, channels)
            times[name].append(time.perf_counter() - t0)
    print(f"site {image.shape} {image.dtype}, {args.repeats} repeats, one BLAS thread")
    print(f"{'family':<12} {'median s':>9} {'min s':>8} {'budget s':>9}")
    total_median = 0.0
    for name, ts in times.items():
        med = statistics.median(ts)
        total_median += med
        print(f"{name:<12} {med:>9.4f} {min(ts):>8.4f} {BUDGET[name]:>9.2f}")
    print(f"{'total':<12} {total_median:>9.4f} {'':>8} {sum(BUDGET.values()):>9.2f}")


if __name__ == "__main__":
    main()
