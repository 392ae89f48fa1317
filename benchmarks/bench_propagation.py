"""Cost of the Propagation kernel on a real 1024x1024 site, side by side with its comparisons.

The site: four real RxRx1 sites (512x512, well B02 site 1 of one experiment's plates 1-4)
tiled 2x2 into one 1024x1024x6 image. Timed, medians of ``--repeats`` runs in one process, CPU
seconds (``time.process_time``, one core):

- ``segment(..., cells="propagation")`` (the default) against ``cells="watershed"``;
- ``propagate`` alone on the seeds and foreground that ``segment`` gives it, against CellProfiler's
  own ``centrosome.propagate`` (when installed) on the same inputs, whose labels and distances
  must be equal to ours bit for bit.

Usage::

    PYTHONPATH=$PWD python benchmarks/bench_propagation.py [--repeats 5] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from moa_features.datasets import read_image
from moa_features.features import segmentation
from moa_features.features.propagation import propagate

RXRX1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rxrx1" / "images"


def tiled_site(experiment: str = "RPE-01") -> np.ndarray:
    """Four real 512x512 RxRx1 sites (plates 1-4, B02 site 1) as one (6, 1024, 1024) uint8 site."""
    planes = [
        np.stack([read_image(RXRX1 / experiment / f"Plate{p}" / f"B02_s1_w{c}.png") for c in range(1, 7)])
        for p in range(1, 5)
    ]
    return np.concatenate([np.concatenate(planes[:2], axis=2), np.concatenate(planes[2:], axis=2)], axis=1)


def propagation_inputs(site: np.ndarray, regularization: float = 0.05):
    """The (image, seeds, mask) that ``segment`` hands to ``propagate`` for this site."""
    captured = {}

    def spy(image, seeds, mask, lam):
        captured.update(image=image.copy(), seeds=seeds.copy(), mask=mask.copy(), lam=lam)
        return propagate(image, seeds, mask, lam)

    original, segmentation.propagate = segmentation.propagate, spy
    try:
        segmentation.segment(site, regularization=regularization)
    finally:
        segmentation.propagate = original
    return captured["image"], captured["seeds"], captured["mask"], captured["lam"]


def median_seconds(function, repeats: int) -> float:
    """Median CPU time (``time.process_time``) of ``repeats`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--experiment", default="RPE-01")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    site = tiled_site(args.experiment)
    image, seeds, mask, lam = propagation_inputs(site)
    result = {
        "site": f"RxRx1 {args.experiment} plates 1-4 B02 s1 tiled 2x2",
        "shape": list(site.shape),
        "seeds": int(np.unique(seeds[seeds > 0]).size),
        "foreground_fraction": float(mask.mean()),
        "repeats": args.repeats,
        "segment_propagation_s": median_seconds(lambda: segmentation.segment(site), args.repeats),
        "segment_watershed_s": median_seconds(lambda: segmentation.segment(site, cells="watershed"), args.repeats),
        "propagate_s": median_seconds(lambda: propagate(image, seeds, mask, lam), args.repeats),
    }
    try:
        from centrosome.propagate import propagate as centrosome_propagate
    except ImportError:
        centrosome_propagate = None
    if centrosome_propagate is not None:
        ours, our_distances = propagate(image, seeds, mask, lam)
        theirs, their_distances = centrosome_propagate(image, seeds, mask, lam)
        result["bit_identical_to_centrosome"] = bool(
            np.array_equal(ours, theirs) and np.array_equal(our_distances, their_distances)
        )
        result["centrosome_propagate_s"] = median_seconds(
            lambda: centrosome_propagate(image, seeds, mask, lam), args.repeats
        )
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
