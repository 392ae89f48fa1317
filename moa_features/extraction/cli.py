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

from moa_features._optional import MissingDependencyError
from moa_features.columns import Columns, add_n_jobs_option, metadata_parent
from moa_features.datasets import DatasetError
from moa_features.extraction.core import EXIT_SITES_FAILED, EXIT_USAGE, ExtractResult, extract
from moa_features.extraction.overlays import MAX_OVERLAYS, PER_PLATE
from moa_features.features import DEFAULT_FAMILIES, FAMILIES, FeatureParams
from moa_features.io import OutputLockedError

DEFAULT_DEMO_ROOT = Path(".cache") / "demo-screen"
DEMO_THUMBS = 100  # thumbnail size with --demo (the demo trains the CNNs)

# --cellprofiler: measurements as CellProfiler reports them (ExampleHuman.cppipe's settings). Texture is
# left alone: CellProfiler's MeasureTexture (--texture-scheme full --texture-levels 256 --texture-distances 3)
# costs seconds per site.
CELLPROFILER_PRESET = {
    "intensity_units": "unit",  # intensities / 255 (8-bit) or / 65535 (16-bit): CellProfiler's 0..1
    "threshold": "li",  # minimum cross-entropy (IdentifyPrimaryObjects)
}
DEFAULTS = {"intensity_units": "raw", "threshold": "otsu"}
NO_INPUT = (
    "no input: give a dataset (an RxRx folder, a CellProfiler LoadData CSV or a manifest CSV), e.g. "
    "`moa-features extract my_screen/ -o features/my_screen.parquet`; for the built-in demo screen run "
    "`moa-features demo` (the whole pipeline) or `moa-features extract --demo`"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features extract",
        description="Extract a per-site feature table from a multi-channel image dataset.",
        epilog="Exit status: 0 every site measured, 3 some sites failed (NAME.errors.parquet), 2 unusable input.",
        parents=[metadata_parent(("control", "treatment", "plate"))],
    )
    p.add_argument("input", nargs="?", help="an RxRx folder (metadata.csv + images/), a LoadData CSV or a manifest CSV")
    _input_options(p.add_argument_group("input"))
    _output_options(p.add_argument_group("output"))
    _segmentation_options(p.add_argument_group("features and segmentation"))
    _run_options(p.add_argument_group("first pass, parallel and resumable runs"))
    demo = p.add_argument_group("demo (moa-features demo runs the whole pipeline on it)")
    demo.add_argument("--demo", action="store_true", help="generate the built-in demo screen and extract it")
    demo.add_argument(
        "--demo-preset",
        default="demo",
        choices=["tiny", "demo", "full"],
        help="demo screen size: tiny (128x128 images, 2 plates per experiment: seconds), demo (256x256, 4 plates: "
        "the README's figures), full (1024x1024 like RxRx2); default demo",
    )
    demo.add_argument(
        "--demo-root", default=str(DEFAULT_DEMO_ROOT), metavar="FOLDER", help="where the demo screen is written"
    )
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="demo screen seed (default 0)")
    return p


def _input_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "rxrx", "loaddata", "manifest"],
        help="how INPUT is organised (default auto: a folder with metadata.csv and images/ is rxrx, a CSV with "
        "FileName_<channel> columns loaddata, one with path or path_<channel> columns manifest)",
    )
    g.add_argument(
        "--root",
        metavar="FOLDER",
        help="folder that relative LoadData PathName_ columns start from (default: the CSV's)",
    )
    g.add_argument(
        "--channels", metavar="CH[,CH...]", help="comma-separated channels to measure, in this order (default: all)"
    )
    g.add_argument(
        "--channel-names",
        metavar="NAMES",
        help="names for the channels in feature names: one per channel in order (DNA,ER,RNA,AGP,Mito) or "
        "OLD=NEW pairs (w1=DNA,w3=Actin); applied after --channels",
    )
    g.add_argument(
        "--image-size", metavar="HxW", help="expected image size HxW (default: the most common among the sites)"
    )


def _output_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "-o",
        "--output",
        metavar="TABLE",
        help="feature table (.parquet, .csv, .csv.gz); default features/<name>.parquet",
    )
    g.add_argument("--format", choices=["parquet", "csv"], help="table format (default: from -o, else parquet)")
    g.add_argument(
        "--thumbs",
        type=int,
        metavar="S",
        help=f"also write NAME.thumbs.npy, S x S pixels per channel per site, for train's CNNs (default: none; "
        f"--demo: {DEMO_THUMBS}); S*S*channels bytes per site",
    )
    g.add_argument(
        "--objects",
        action="store_true",
        help="also write NAME.objects.parquet: one row per object (Nuclei_/Cells_/Cytoplasm_ measurements)",
    )
    g.add_argument(
        "--overlays",
        type=int,
        default=PER_PLATE,
        metavar="N",
        help=f"segmentation overlays of N measured sites per plate in NAME.overlays/ (at most {MAX_OVERLAYS}; "
        f"default {PER_PLATE}; 0: none)",
    )
    g.add_argument(
        "--annotation", metavar="CSV", help="treatment -> MoA table (CSV from `moa-features annotate`) or 'auto'"
    )
    report = "write reports/<name>.html at the end (default)"
    g.add_argument("--report", dest="report", action="store_true", default=True, help=report)
    g.add_argument("--no-report", dest="report", action="store_false", help="skip the HTML report")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _segmentation_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--features",
        default=",".join(DEFAULT_FAMILIES),
        metavar="F[,F...]",
        help=f"comma-separated feature families among {','.join(FAMILIES)} (default: {','.join(DEFAULT_FAMILIES)}; "
        f"{','.join(f for f in FAMILIES if f not in DEFAULT_FAMILIES)} are opt-in: ~0.2-0.5 s per full-size site)",
    )
    g.add_argument(
        "--cellprofiler",
        action="store_true",
        help="measure as CellProfiler reports: intensities scaled to 0..1 (/255 or /65535) and the minimum "
        "cross-entropy nuclear threshold (explicit options still win); CellProfiler's MeasureTexture is "
        "--texture-scheme full --texture-levels 256 --texture-distances 3 (slow: seconds per site)",
    )
    g.add_argument("--nuclear-channel", metavar="CH", help="channel to segment nuclei on (default: the first)")
    g.add_argument(
        "--cell-channel", metavar="CH", help="channel to segment cells on (default: the third, or the last of fewer)"
    )
    g.add_argument(
        "--threshold",
        choices=["otsu", "li"],
        help="nuclear threshold: otsu, or li = minimum cross-entropy (default otsu; li with --cellprofiler)",
    )
    g.add_argument(
        "--cells",
        choices=["propagation", "watershed"],
        default="propagation",
        help="secondary segmentation: propagation = CellProfiler's IdentifySecondaryObjects Propagation (default), "
        "or watershed = seeded watershed of the cell channel's gradient",
    )
    g.add_argument(
        "--regularization",
        type=float,
        default=0.05,
        metavar="LAMBDA",
        help="Propagation's regularization factor: weight of distance against intensity change (default 0.05)",
    )
    g.add_argument(
        "--min-diameter",
        type=float,
        metavar="PX",
        help="smallest nucleus equivalent diameter kept, pixels (default: no limit)",
    )
    g.add_argument(
        "--max-diameter",
        type=float,
        metavar="PX",
        help="largest nucleus equivalent diameter kept, pixels (default: no limit)",
    )
    g.add_argument("--keep-border-objects", action="store_true", help="keep nuclei touching the image border")
    g.add_argument("--object-texture", action="store_true", help="per-object Haralick texture (slow)")
    g.add_argument(
        "--object-correlation",
        action="store_true",
        help="per-object colocalisation of channel pairs (Pearson; Costes, RWC, K with the colocalisation family)",
    )
    g.add_argument(
        "--texture-scheme",
        default="run",
        choices=["run", "full"],
        help="texture quantisation: 'run' = per-channel percentile levels learned from control sites in a "
        "first pass (default); 'full' = the dtype's full range (CellProfiler-compatible; with "
        "--texture-levels 256 --texture-distances 3 it is CellProfiler's MeasureTexture)",
    )
    g.add_argument("--texture-levels", type=int, default=32, metavar="N", help="GLCM grey levels (default 32)")
    g.add_argument(
        "--texture-distances",
        default="1",
        metavar="D[,D...]",
        help="GLCM distances in pixels (default 1)",
    )


def _run_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--illum",
        default="auto",
        choices=["auto", "none"],
        help="per-plate illumination correction learned in a first pass (auto: plates with >= 8 sites)",
    )
    add_n_jobs_option(g)
    g.add_argument("--chunk-size", type=int, default=16, metavar="N", help="sites per resumable chunk (default 16)")
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on Dask: 'local' (a LocalCluster of --n-jobs workers) or tcp://HOST:PORT",
    )


def feature_params(args: argparse.Namespace) -> FeatureParams:
    """The run's :class:`FeatureParams` from the command line: explicit options, else the preset's or default values."""
    preset = CELLPROFILER_PRESET if args.cellprofiler else DEFAULTS
    value = {k: getattr(args, k, None) if getattr(args, k, None) is not None else v for k, v in preset.items()}
    return FeatureParams(
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
        threshold=value["threshold"],
        cells=args.cells,
        regularization=args.regularization,
        intensity_units=value["intensity_units"],
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m moa_features.extract``: extract the feature table (no report).

    Parameters
    ----------
    argv : list of str, optional
        ``INPUT [-o TABLE] [options]`` or ``--demo`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        :data:`EXIT_OK` (0) when every site was measured, :data:`EXIT_SITES_FAILED` (3) when
        some failed (their reasons in ``NAME.errors``), :data:`EXIT_USAGE` (2) for unusable
        input or an unwritable output.
    """
    args = build_parser().parse_args(argv)
    command = "python -m moa_features.extract " + " ".join(sys.argv[1:] if argv is None else argv)
    annotation = args.annotation
    if args.input is None and not args.demo:
        print(f"error: {NO_INPUT}", file=sys.stderr)
        return EXIT_USAGE
    thumbs = args.thumbs
    if args.demo:
        from moa_features.synthetic import make_screen

        print(f"demo screen ({args.demo_preset}, seed {args.seed}) in {args.demo_root}", file=sys.stderr)
        args.input = make_screen(args.demo_root, preset=args.demo_preset, seed=args.seed, n_jobs=args.n_jobs)
        annotation = annotation or "auto"
        default_name = "demo"
        thumbs = DEMO_THUMBS if thumbs is None else thumbs
    else:
        default_name = Path(args.input).stem.replace(".csv", "")
    output = Path(args.output or f"features/{default_name}.parquet")
    if args.format == "csv" and output.suffix == ".parquet":
        output = output.with_suffix(".csv")
    try:
        params = feature_params(args)
        image_size = _int_list(args.image_size.lower(), "--image-size", "512x512", "x") if args.image_size else None
        if image_size is not None and len(image_size) != 2:
            raise DatasetError(f"--image-size {args.image_size}: expected HxW in pixels, e.g. 512x512")
        if args.overlays < 0:
            raise DatasetError(f"--overlays {args.overlays}: expected a number of sites per plate >= 0")
        result = extract(
            args.input,
            output,
            layout=args.layout,
            root=args.root,
            channels=args.channels.split(",") if args.channels else None,
            channel_names=args.channel_names,
            params=params,
            thumbs=None if thumbs == 0 else thumbs,
            n_jobs=args.n_jobs,
            chunk_size=args.chunk_size,
            scheduler=args.scheduler,
            annotation=annotation,
            image_size=image_size,
            columns=Columns.from_args(args),
            overlays=args.overlays,
            progress=not args.quiet,
            command=command,
            say=lambda message: print(message, file=sys.stderr, flush=True),
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
    """Disk full, quota, file too large (``ulimit -f``), read-only or permission errors.

    pyarrow reports them without an errno: its message is searched for the errno's text.
    """
    import errno

    codes = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
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
    if r.n_without_objects:
        lines.append(
            f"{r.n_without_objects} of {r.n_ok} measured site(s) had no objects (Nuclei_Count 0): their per-object "
            "features are NaN and they have no rows in the objects table"
        )
    if r.thumbs:
        lines.append(f"thumbnails -> {r.thumbs}")
    if r.overlays:
        lines.append(f"segmentation overlays -> {r.overlays}/")
    if r.illumination_note:
        lines.append(r.illumination_note)
    if r.texture_note:
        lines.append(r.texture_note)
    if r.n_failed:
        lines.append(f"{r.n_failed} site(s) FAILED -> {r.errors} (exit status {EXIT_SITES_FAILED})")
        example = r.failure_reasons[0]["example"] if r.failure_reasons else ""
        if r.n_ok == 0:
            lines.append(f"every site failed, e.g. {example}")
        lines.append("most common reasons (stage: reason; <file> and <site> stand for each site's own):")
        lines += [f"  {f['count']:>6} x {f['stage']}: {f['reason']}" for f in r.failure_reasons]
        lines.append(f"  e.g. {example}" if r.n_ok else "")
    if r.suggestion:
        lines.append(f"suggestion: {r.suggestion}")
    if r.kept_previous:
        lines.append(f"the previous table {r.table} and its side files were KEPT, not replaced by an empty one")
    print("\n".join(line for line in lines if line))
