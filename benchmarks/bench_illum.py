"""Illumination correction on the demo's vignetted screen: does it remove position dependence?

The demo screen (``moa_features.synthetic.make_screen``) vignettes every plate with its own
centre and per-channel fall-off. For each plate, the run's first pass
(``moa_features.calibration.calibrate``, as ``extract`` runs it) learns the illumination
functions; then, over the plate's negative-control sites, the mean intensity of every
32x32 grid block (per channel) is correlated with the true vignetting factor at the block's
centre (known from the generator), before and after correction. Reported: the median over
plates and channels of Pearson's r, and its relative drop (target >= 80 %).

    python benchmarks/bench_illum.py [--preset demo] [--root .cache/bench-illum] [--out benchmarks/results_illum.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd


def true_illumination(spec, seed: int, experiment: str, plate_number: int, shape: tuple[int, int]) -> np.ndarray:
    """The generator's ``(C, H, W)`` vignetting factor of a plate (1 at its centre)."""
    from moa_features.synthetic import batch_params, experiment_name

    index = next(i for i in range(spec.n_experiments) if experiment_name(i) == experiment)
    batch = batch_params(spec, seed, index, plate_number)
    h, w = shape
    y = (np.arange(h) / h - batch.centre[0])[:, None]
    x = (np.arange(w) / w - batch.centre[1])[None, :]
    r2 = (y**2 + x**2) / 0.5
    return 1 - batch.vignette[:, None, None] * r2[None]


def block_grid(image: np.ndarray, n: int = 32) -> np.ndarray:
    """``(C, n*n)`` block means of a ``(C, H, W)`` array on an n x n grid."""
    c, h, w = image.shape
    return image[:, : h // n * n, : w // n * n].reshape(c, n, h // n, n, w // n).mean(axis=(2, 4)).reshape(c, -1)


def run(preset: str, root: Path, seed: int) -> dict:
    from moa_features import schema
    from moa_features.calibration import calibrate, load_calibration
    from moa_features.columns import control_mask
    from moa_features.datasets import open_dataset
    from moa_features.features import FeatureParams
    from moa_features.illumination import correct
    from moa_features.synthetic import make_screen, resolve_spec

    meta = make_screen(root / "screen", preset=preset, seed=seed, n_jobs=1)
    ds = open_dataset(meta.parent)
    spec = resolve_spec(preset)
    t0 = time.process_time()
    params = calibrate(ds.sites, root / "bench.parquet", FeatureParams(), None, seed=seed)
    first_pass = time.process_time() - t0
    cal = load_calibration(params.calibration)
    before, after = [], []
    is_control = control_mask(pd.DataFrame.from_records([s.metadata for s in ds.sites]))
    for plate in sorted({s.metadata[schema.PLATE] for s in ds.sites}):
        controls = [s for s, c in zip(ds.sites, is_control) if s.metadata[schema.PLATE] == plate and c]
        if not controls or (function := cal.illumination(controls[0].metadata)) is None:
            continue
        first = controls[0].metadata
        truth = block_grid(true_illumination(spec, seed, first[schema.EXPERIMENT], int(str(plate).split("_")[-1]),
                                             function.shape[1:]))  # fmt: skip
        raw, cor, pos = [], [], []
        for site in controls:
            image = site.load()
            raw.append(block_grid(image.astype(np.float64)))
            cor.append(block_grid(correct(image, function).astype(np.float64)))
            pos.append(truth)
        raw, cor, pos = (np.concatenate(a, axis=1) for a in (raw, cor, pos))
        for c in range(raw.shape[0]):
            before.append(float(np.corrcoef(raw[c], pos[c])[0, 1]))
            after.append(float(np.corrcoef(cor[c], pos[c])[0, 1]))
    r_before = statistics.median(np.abs(before))
    r_after = statistics.median(np.abs(after))
    return {
        "preset": preset,
        "seed": seed,
        "sites": len(ds.sites),
        "plates_corrected": sum(r["corrected"] for r in cal.info["illumination"].values()),
        "first_pass_cpu_seconds": round(first_pass, 2),
        "median_abs_r_before": round(r_before, 3),
        "median_abs_r_after": round(r_after, 3),
        "drop": round(1 - r_after / r_before, 3),
        "r_before": [round(v, 3) for v in before],
        "r_after": [round(v, 3) for v in after],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path(".cache/bench-illum"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_illum.json"))
    args = parser.parse_args()
    result = run(args.preset, args.root, args.seed)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("r_")}, indent=1))


if __name__ == "__main__":
    main()
