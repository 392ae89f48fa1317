"""The job: every site of a dataset measured, chunk by chunk, into one feature table.

Sites are processed in chunks (joblib processes locally, or a Dask cluster with
``scheduler``). Each finished chunk is written atomically to ``NAME.parts/``, so a killed run
resumes where it stopped; the chunks are then streamed into the final table (Parquet row
groups), the errors table and a thumbnail array. Memory stays flat in the number of sites:
only one chunk is held at a time.

One writer per output: a run holds ``NAME.lock`` (naming its pid, host and start time) for as
long as it writes ``NAME.parts/`` and the table; every chunk records the fingerprint of the
settings that made it, so a chunk of other settings is never assembled. A run whose every site
failed keeps an existing table (its errors go to ``NAME.failed-run.errors.parquet``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from moa_features import schema
from moa_features.calibration import calibrate, calibration_summary
from moa_features.datasets import DatasetError, open_dataset
from moa_features.extraction.annotation import resolve_annotation
from moa_features.extraction.checks import check_channels, probe_images, validate_options
from moa_features.extraction.chunks import ChunkStore, fingerprint
from moa_features.extraction.runners import run_dask, run_joblib
from moa_features.extraction.writer import assemble, objects_path, write_objects_table
from moa_features.features import FeatureParams
from moa_features.io import check_writable_file, output_lock, package_versions, write_json

EXIT_OK, EXIT_USAGE, EXIT_SITES_FAILED = 0, 2, 3


@dataclass
class ExtractResult:
    """Summary of an extraction run (also written as ``NAME.summary.json``)."""

    table: str
    errors: str
    thumbs: str | None
    n_sites: int
    n_ok: int
    n_failed: int
    n_chunks: int
    chunks_computed: int
    chunks_resumed: int
    wall_seconds: float
    cpu_seconds_per_site: float
    sites_per_second_per_core: float
    backend: str
    n_workers: int
    command: str
    kept_previous: bool = False  # every site failed and the existing table was kept

    @property
    def exit_status(self) -> int:
        """0 when every site was measured, 3 when some failed (:data:`EXIT_SITES_FAILED`)."""
        return EXIT_SITES_FAILED if self.n_failed else EXIT_OK


def extract(
    input: str | Path | None,
    output: str | Path,
    *,
    layout: str = "auto",
    root: str | Path | None = None,
    channels: Sequence[str] | None = None,
    params: FeatureParams = FeatureParams(),
    thumbs: int | None = 100,
    n_jobs: int = 1,
    chunk_size: int = 16,
    scheduler: str | None = None,
    annotation: str | Path | pd.DataFrame | None = None,
    image_size: tuple[int, int] | None = None,
    progress: bool = True,
    command: str | None = None,
) -> ExtractResult:
    """Extract features of every site of ``input`` into the table ``output``.

    ``annotation``: a treatment -> MoA table (path or DataFrame) or ``"auto"`` (the curated
    table) used to fill ``Metadata_moa``. ``scheduler``: ``None`` (joblib), ``"local"`` (a Dask
    LocalCluster of ``n_jobs`` workers) or a Dask scheduler address ``tcp://HOST:PORT``.
    Raises :class:`DatasetError` for unusable input before any work is done.
    """
    t_start = time.perf_counter()
    output = Path(output)
    if not output.name.endswith((".parquet", ".csv", ".csv.gz")):
        raise DatasetError(f"{output}: output must end in .parquet, .csv or .csv.gz")
    validate_options(params, thumbs, chunk_size, image_size)
    try:
        check_writable_file(output, "output table")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    ds = open_dataset(input, layout=layout, root=root, channels=channels)
    check_channels(params, ds.channels, ds.source)
    sites = ds.sites
    side = schema.sidecar_paths(output)
    with output_lock(side["lock"], f"{output} (and {side['parts'].name}/)"):
        annotation_df = resolve_annotation(annotation, ds.metadata, side["annotation"])
        expected_shape, expected_dtype = probe_images(sites, image_size)
        params = calibrate(sites, output, params, expected_shape)  # first pass: illumination, texture levels
        store = ChunkStore(side["parts"], fingerprint(sites, params, thumbs, chunk_size))
        chunks = [sites[i : i + chunk_size] for i in range(0, len(sites), chunk_size)]
        pending = [i for i in range(len(chunks)) if not store.done(i, chunks[i])]
        tasks = [(i, chunks[i], params, thumbs, expected_shape, expected_dtype) for i in pending]
        n_workers = max(1, n_jobs if n_jobs > 0 else os.cpu_count() or 1)
        if scheduler:
            results = run_dask(tasks, scheduler, n_workers)
            backend = "dask"
        else:
            results = run_joblib(tasks, n_workers)
            backend = "joblib" if n_workers > 1 else "serial"

        from tqdm.auto import tqdm

        done_sites = len(sites) - sum(len(chunks[i]) for i in pending)
        with tqdm(total=len(sites), initial=done_sites, unit="site", desc="extract", disable=not progress) as bar:
            for result in results:
                store.write(result, chunks[result.index])
                bar.update(len(chunks[result.index]))

        n_ok, n_failed, kept = assemble(store, len(chunks), output, side, thumbs, annotation_df, len(ds.channels))
        cpu = sum(store.cpu_seconds(i) for i in range(len(chunks)))
        per_site = cpu / max(1, len(sites))
        result = ExtractResult(
            table=str(output),
            errors=str(side["failed_errors"] if kept else side["errors"]),
            thumbs=str(side["thumbs"]) if thumbs else None,
            n_sites=len(sites),
            n_ok=n_ok,
            n_failed=n_failed,
            n_chunks=len(chunks),
            chunks_computed=len(pending),
            chunks_resumed=len(chunks) - len(pending),
            wall_seconds=time.perf_counter() - t_start,
            cpu_seconds_per_site=per_site,
            sites_per_second_per_core=1.0 / per_site if per_site > 0 else float("inf"),
            backend=backend,
            n_workers=n_workers,
            command=command or "",
            kept_previous=kept,
        )
        if not kept:
            if params.objects:
                write_objects_table(side["parts"], len(chunks), objects_path(output))
            write_json(
                {
                    **asdict(result),
                    "channels": list(ds.channels),
                    "layout": ds.layout,
                    "source": str(ds.source),
                    "params": asdict(params),
                    "calibration": calibration_summary(params),
                    "objects": str(objects_path(output)) if params.objects else None,
                    "versions": package_versions(),
                },
                side["summary"],
            )
        shutil.rmtree(side["parts"], ignore_errors=True)
    return result
