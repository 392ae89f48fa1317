"""CPU seconds per full-size site, per feature family and in all (one core).

Measures what extraction spends on one full-size RxRx site (six 1024x1024 uint8 channels):
PNG decode, illumination correction, the intensity, texture (run scheme), correlation and
morphology (segmentation, per-object measurements of nuclei/cells/cytoplasm, aggregation)
families and the 100x100 thumbnail. Two full-size inputs are built from each real 512x512 RxRx1 site: the site tiled
2x2 (real pixel statistics, 4x the cells) and the site upsampled 2x (real magnification of a
full-size site: nuclei ~4x the area). Times are CPU time (``time.process_time``) with BLAS/OpenMP
pinned to one thread, so they stay meaningful on a shared, loaded machine; the median and
minimum of ``--repeats`` runs are printed with the load average.

    python benchmarks/bench_feature_families.py [--repeats 7] [--sites HEPG2-01/Plate1 HUVEC-01/Plate1]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from moa_features.extract import thumbnail  # noqa: E402
from moa_features.features.correlation import correlation_features  # noqa: E402
from moa_features.features.intensity import intensity_features  # noqa: E402
from moa_features.features.morphology import morphology_features  # noqa: E402
from moa_features.features.texture import run_lut, texture_features  # noqa: E402
from moa_features.illumination import correct  # noqa: E402

RXRX1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rxrx1" / "images"
CHANNELS = [f"w{i}" for i in range(1, 7)]
# Per-site budget (seconds of one core): the whole must stay well under one second.
BUDGET = {
    "decode": 0.05,
    "illumination": 0.01,
    "intensity": 0.03,
    "texture": 0.15,
    "correlation": 0.04,
    "morphology": 0.30,
    "thumbnail": 0.02,
}


def load_site(folder: Path) -> np.ndarray:
    """``(6, 512, 512)`` uint8: the real site ``B02_s1`` in ``folder``."""
    return np.stack([np.asarray(Image.open(folder / f"B02_s1_w{c}.png")) for c in range(1, 7)])


def full_size(site: np.ndarray, how: str) -> np.ndarray:
    """A ``(6, 1024, 1024)`` site from a 512x512 one: ``tile`` 2x2 or ``upsample`` 2x."""
    if how == "tile":
        return np.tile(site, (1, 2, 2))
    return np.repeat(np.repeat(site, 2, axis=1), 2, axis=2)


def png_bytes(image: np.ndarray) -> list[bytes]:
    """Each channel as PNG bytes (what extraction decodes)."""
    out = []
    for plane in image:
        buffer = io.BytesIO()
        Image.fromarray(plane).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def stages(image: np.ndarray) -> dict[str, Callable[[], object]]:
    pngs = png_bytes(image)
    # the run texture scheme (the default), its levels learned from this site as a stand-in for the run's sample
    luts = [run_lut(np.bincount(plane.ravel(), minlength=256), 32) for plane in image]
    function = np.ones(image.shape, np.float32) * np.linspace(1, 2, image.shape[-1], dtype=np.float32)
    return {
        "decode": lambda: np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in pngs]),
        "illumination": lambda: correct(image, function),
        "intensity": lambda: intensity_features(image, CHANNELS),
        "texture": lambda: texture_features(image, CHANNELS, luts=luts),
        "correlation": lambda: correlation_features(image, CHANNELS),
        "morphology": lambda: morphology_features(image, CHANNELS),
        "thumbnail": lambda: thumbnail(image, 100),
    }


def cpu_seconds(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm up (imports, caches, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--sites",
        nargs="+",
        default=["HEPG2-01/Plate1", "HUVEC-01/Plate1"],
        help="RxRx1 folders (experiment/plate) holding B02_s1_w1..w6.png",
    )
    args = parser.parse_args()
    print(
        f"CPU seconds per 1024x1024x6 uint8 site, median (min) of {args.repeats} runs, one thread; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    header = f"{'site':<24}" + "".join(f"{name:>17}" for name in BUDGET) + f"{'total':>17}"
    print(header)
    for folder in args.sites:
        site = load_site(RXRX1 / folder)
        for how in ("tile", "upsample"):
            row, total = f"{folder + ' ' + how:<24}", 0.0
            for fn in stages(full_size(site, how)).values():
                times = cpu_seconds(fn, args.repeats)
                total += statistics.median(times)
                row += f"{statistics.median(times):>10.3f} ({min(times):.3f})"
            print(row + f"{total:>17.3f}", flush=True)
    print(f"{'budget':<24}" + "".join(f"{b:>17.2f}" for b in BUDGET.values()) + f"{sum(BUDGET.values()):>17.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
