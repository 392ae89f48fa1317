"""The command line of extraction: ``python -m moa_features.extract`` / ``moa-features extract``.

:func:`build_parser` and :func:`main` (the stage alone: no report; :mod:`moa_features.pipeline`
chains the report). Exit status: 0 when every site was measured, 3 when some sites failed (see
the errors table), 2 for unusable input (bad metadata, missing column, bad option, unwritable
output, an output that another run is writing), which stops the run before the first site is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from moa_features._optional import MissingDependencyError
from moa_features.datasets import DatasetError
from moa_features.extraction.core import EXIT_SITES_FAILED, EXIT_USAGE, ExtractResult, extract
from moa_features.features import FAMILIES, FeatureParams
from moa_features.io import OutputLockedError

DEFAULT_DEMO_ROOT = Path(".cache") / "demo-screen"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features extract",
        description="Extract a per-site feature table from a multi-channel image dataset.",
    )
    p.add_argument("input", nargs="?", help="dataset: RxRx folder, LoadData CSV or manifest CSV (omit with --demo)")
    p.add_argument("-o", "--output", help="feature table (.parquet, .csv, .csv.gz); default features/<name>.parquet")
    p.add_argument("--layout", default="auto", choices=["auto", "rxrx", "loaddata", "manifest"])
    p.add_argument("--root", help="folder that relative LoadData PathName_ columns start from")
    p.add_argument("--channels", help="comma-separated channel names to use (default: all)")
    p.add_argument(
        "--features",
        default=",".join(FAMILIES),
        help=f"comma-separated feature families (default: {','.join(FAMILIES)})",
    )
    p.add_argument("--format", choices=["parquet", "csv"], help="table format (default: from -o, else parquet)")
    p.add_argument(
        "--thumbs",
        type=int,
        default=100,
        metavar="S",
        help="thumbnail size for the CNN, S x S per channel (0 disables; default 100)",
    )
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes (-1: all cores; default 1)")
    p.add_argument("--chunk-size", type=int, default=16, help="sites per resumable chunk (default 16)")
    p.add_argument("--scheduler", help="run on Dask: 'local' (a LocalCluster of --n-jobs workers) or tcp://HOST:PORT")
    p.add_argument("--annotation", help="treatment -> MoA table (CSV from `moa-features annotate`) or 'auto'")
    p.add_argument("--texture-levels", type=int, default=32, help="GLCM grey levels (fixed quantisation; default 32)")
    p.add_argument(
        "--texture-scheme",
        default="run",
        choices=["run", "full"],
        help="texture quantisation: 'run' = per-channel percentile levels learned from control sites in a "
        "first pass (default); 'full' = the dtype's full range (CellProfiler-compatible; with "
        "--texture-levels 256 --texture-distances 3 it is CellProfiler's MeasureTexture)",
    )
    p.add_argument(
        "--illum",
        default="auto",
        choices=["auto", "none"],
        help="per-plate illumination correction learned in a first pass (auto: plates with >= 8 sites)",
    )
    p.add_argument(
        "--objects",
        action="store_true",
        help="also write NAME.objects.parquet: one row per object (Nuclei_/Cells_/Cytoplasm_ measurements)",
    )
    p.add_argument("--object-texture", action="store_true", help="per-object Haralick texture (slow)")
    p.add_argument("--object-correlation", action="store_true", help="per-object colocalisation of channel pairs")
    p.add_argument("--keep-border-objects", action="store_true", help="keep nuclei touching the image border")
    p.add_argument("--min-diameter", type=float, help="smallest nucleus equivalent diameter kept, pixels")
    p.add_argument("--max-diameter", type=float, help="largest nucleus equivalent diameter kept, pixels")
    p.add_argument("--threshold", default="otsu", choices=["otsu", "li"], help="nuclear threshold (default otsu)")
    p.add_argument("--texture-distances", default="1", help="comma-separated GLCM distances in pixels (default 1)")
    p.add_argument("--nuclear-channel", help="channel to segment nuclei on (default: the first)")
    p.add_argument("--cell-channel", help="channel to segment cells on (default: the third)")
    p.add_argument("--image-size", help="expected image size HxW (default: the first site's)")
    p.add_argument("--demo", action="store_true", help="generate the built-in demo screen and extract it")
    p.add_argument("--demo-preset", default="demo", choices=["tiny", "demo", "full"])
    p.add_argument("--demo-root", default=str(DEFAULT_DEMO_ROOT), help="where the demo screen is written")
    p.add_argument("--seed", type=int, default=0, help="demo screen seed")
    p.add_argument(
        "--report",
        dest="report",
        action="store_true",
        default=True,
        help="write reports/<name>.html at the end (default)",
    )
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the HTML report")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m moa_features.extract " + " ".join(sys.argv[1:] if argv is None else argv)
    annotation = args.annotation
    if args.demo or args.input is None:
        from moa_features.synthetic import make_screen

        print(f"demo screen ({args.demo_preset}, seed {args.seed}) in {args.demo_root}", file=sys.stderr)
        args.input = make_screen(args.demo_root, preset=args.demo_preset, seed=args.seed, n_jobs=args.n_jobs)
        annotation = annotation or "auto"
        default_name = "demo"
    else:
        default_name = Path(args.input).stem.replace(".csv", "")
    output = Path(args.output or f"features/{default_name}.parquet")
    if args.format == "csv" and output.suffix == ".parquet":
        output = output.with_suffix(".csv")
    try:
        params = FeatureParams(
            texture_levels=args.texture_levels,
            texture_distances=_int_list(args.texture_distances, "--texture-distances", "1,2"),
            nuclear_channel=args.nuclear_channel,
            cell_channel=args.cell_channel,
            families=tuple(f.strip() for f in args.features.split(",") if f.strip()),
            texture_scheme=args.texture_scheme,
            illum=args.illum,
            objects=args.objects,
            object_texture=args.object_texture,
            object_correlation=args.object_correlation,
            exclude_border=not args.keep_border_objects,
            min_diameter=args.min_diameter,
            max_diameter=args.max_diameter,
            threshold=args.threshold,
        )
        image_size = _int_list(args.image_size.lower(), "--image-size", "512x512", "x") if args.image_size else None
        if image_size is not None and len(image_size) != 2:
            raise DatasetError(f"--image-size {args.image_size}: expected HxW in pixels, e.g. 512x512")
        result = extract(
            args.input,
            output,
            layout=args.layout,
            root=args.root,
            channels=args.channels.split(",") if args.channels else None,
            params=params,
            thumbs=None if args.thumbs == 0 else args.thumbs,
            n_jobs=args.n_jobs,
            chunk_size=args.chunk_size,
            scheduler=args.scheduler,
            annotation=annotation,
            image_size=image_size,
            progress=not args.quiet,
            command=command,
        )
    except (DatasetError, FileNotFoundError, OutputLockedError, MissingDependencyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # disk full, permissions: the previous table is untouched (atomic writes)
        if not _is_write_failure(exc):
            raise
        print(
            f"error: cannot write {exc.filename or output}: {exc.strerror or exc}; "
            f"any previous {output} is kept as it was",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _print_summary(result)
    return result.exit_status


def _is_write_failure(exc: OSError) -> bool:
    """Disk full, quota, read-only or permission errors (pyarrow reports them without an errno)."""
    import errno

    codes = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
    return exc.errno in codes or any(os.strerror(c) in str(exc) for c in codes)


def _int_list(text: str, option: str, example: str, sep: str = ",") -> tuple[int, ...]:
    """``"1,2"`` -> ``(1, 2)``; DatasetError naming ``option`` for anything else."""
    try:
        return tuple(int(v) for v in text.split(sep))
    except ValueError:
        raise DatasetError(f"{option} {text}: expected whole numbers separated by {sep!r}, e.g. {example}") from None


def _print_summary(r: ExtractResult) -> None:
    lines = [
        f"{r.n_ok} of {r.n_sites} sites measured -> {r.table}",
        f"{r.cpu_seconds_per_site:.3f} s per site on one core ({r.sites_per_second_per_core:.1f} sites/s per core); "
        f"wall {r.wall_seconds:.1f} s with {r.n_workers} worker(s) ({r.backend})",
    ]
    if r.chunks_resumed:
        lines.append(f"resumed: {r.chunks_resumed} of {r.n_chunks} chunks were already done")
    if r.thumbs:
        lines.append(f"thumbnails -> {r.thumbs}")
    if r.n_failed:
        lines.append(f"{r.n_failed} site(s) FAILED -> {r.errors} (exit status {EXIT_SITES_FAILED})")
    if r.n_ok == 0 and r.n_failed:
        first = pd.read_parquet(r.errors)["error"].iloc[0]
        lines.append(f"every site failed, e.g. {first}")
    if r.kept_previous:
        lines.append(f"the previous table {r.table} and its side files were KEPT, not replaced by an empty one")
    print("\n".join(lines))
