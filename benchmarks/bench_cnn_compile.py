"""CPU seconds of ``CNNClassifier.fit`` for successive models of one architecture, with and without
JAX's persistent compilation cache: how much of a small CNN's cost is compiling its XLA steps.

Fits three models per architecture on thumbnails of a feature run (``NAME.thumbs.npy``; random
labels: only the cost matters) with 190, 185 and 201 training rows and a quarter as many
validation rows, 3 epochs each, in one process, and prints the CPU seconds of each fit and
prediction. Run it twice: with a fresh cache folder (``--cache DIR``) and with ``--cache off``.

Usage::

    PYTHONPATH=. python benchmarks/bench_cnn_compile.py features/demo.thumbs.npy --cache /tmp/jax-cache
    PYTHONPATH=. python benchmarks/bench_cnn_compile.py features/demo.thumbs.npy --cache off
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("thumbs", help="NAME.thumbs.npy of a feature run")
    p.add_argument("--cache", default="off", help="JAX compilation cache folder, or off (default)")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    os.environ["MOA_FEATURES_JAX_CACHE"] = args.cache
    import numpy as np

    from moa_features.models.cnn import CNNClassifier

    thumbs = np.load(args.thumbs, mmap_mode="r")
    rng = np.random.default_rng(0)
    for arch in ("embedding", "baseline"):
        for n in (190, 185, 201):
            rows = np.sort(rng.choice(len(thumbs), n, replace=False))
            X, y = np.asarray(thumbs[rows]), rng.integers(0, 8, n)
            Xv, yv = np.asarray(thumbs[: n // 4]), rng.integers(0, 8, n // 4)
            t, c = time.perf_counter(), cpu_seconds()
            model = CNNClassifier(architecture=arch, epochs=args.epochs, patience=10)
            model.fit(X, y, validation_data=(Xv, yv))
            t1, c1 = time.perf_counter(), cpu_seconds()
            model.predict_proba(X[:37])
            print(f"{arch:9} {n} rows: fit {c1 - c:5.1f} CPU s ({t1 - t:5.1f} s wall), "
                  f"predict {cpu_seconds() - c1:4.1f} CPU s; cache {args.cache}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
