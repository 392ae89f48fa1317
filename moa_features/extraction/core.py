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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.calibration import calibrate, calibration_summary
from moa_features.columns import Columns, ControlQueryError
from moa_features.datasets import DatasetError, Site, open_dataset
from moa_features.extraction.annotation import resolve_annotation
from moa_features.extraction.checks import check_channels, probe_images, validate_options
from moa_features.extraction.chunks import ChunkStore, fingerprint
from moa_features.extraction.diagnosis import channel_suggestion, failure_reasons, illumination_note
from moa_features.extraction.overlays import PER_PLATE, write_overlays
from moa_features.extraction.runners import run_dask, run_joblib
from moa_features.extraction.writer import assemble, objects_path, write_objects_table
from moa_features.features import FeatureParams
from moa_features.illumination import MIN_SITES
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
    notes: list[str] = field(default_factory=list)  # inputs recognised and left out (e.g. an overlay column)
    failure_reasons: list[dict[str, Any]] = field(default_factory=list)  # most common first
    suggestion: str | None = None  # the option that would measure the failed sites, when it is obvious
    illumination_note: str | None = None  # plates left uncorrected, said once
    overlays: str | None = None  # NAME.overlays/ when written

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
    channel_names: str | dict[str, str] | None = None,
    params: FeatureParams = FeatureParams(),
    thumbs: int | None = None,
    n_jobs: int = 1,
    chunk_size: int = 16,
    scheduler: str | None = None,
    annotation: str | Path | pd.DataFrame | None = None,
    image_size: tuple[int, int] | None = None,
    columns: Columns | None = None,
    overlays: int = PER_PLATE,
    progress: bool = True,
    command: str | None = None,
    say: Callable[[str], None] | None = None,
) -> ExtractResult:
    """Extract features of every site of ``input`` into the table ``output``.

    ``channels`` / ``channel_names``: the channels kept and their names in feature names
    (:func:`~moa_features.datasets.open_dataset`). ``thumbs``: thumbnail size for the CNNs
    (``None``: no ``NAME.thumbs.npy``). ``annotation``: a treatment -> MoA table (path or
    DataFrame) or ``"auto"`` (the curated table) used to fill ``Metadata_moa``. ``scheduler``:
    ``None`` (joblib), ``"local"`` (a Dask LocalCluster of ``n_jobs`` workers) or a Dask
    scheduler address ``tcp://HOST:PORT``. ``columns``: the plate column and the control query
    (``--plate``, ``--control``) of the first pass. ``overlays``: sites per plate drawn into
    ``NAME.overlays/`` (0: none). ``say``: called with what the reader recognised and left out,
    as soon as it is known. Raises :class:`DatasetError` for unusable input before any work.
    """
    t_start = time.perf_counter()
    output = Path(output)
    columns = columns or Columns()
    if not output.name.endswith((".parquet", ".csv", ".csv.gz")):
        raise DatasetError(f"{output}: output must end in .parquet, .csv or .csv.gz")
    validate_options(params, thumbs, chunk_size, image_size)
    try:
        check_writable_file(output, "output table")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    ds = open_dataset(input, layout=layout, root=root, channels=channels, channel_names=channel_names)
    for note in ds.notes:
        (say or (lambda _: None))(note)
    check_channels(params, ds.channels, ds.source)
    params = segmentation_channels(params, ds.channels)
    sites = ds.sites
    controls = control_sites(sites, columns)
    side = schema.sidecar_paths(output)
    with output_lock(side["lock"], f"{output} (and {side['parts'].name}/)"):
        annotation_df = resolve_annotation(annotation, ds.metadata, side["annotation"])
        expected_shape, expected_dtype = probe_images(sites, image_size)
        # first pass: illumination, texture levels
        params = calibrate(sites, output, params, expected_shape, controls=controls, plate=columns.plate)
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
        errors_path = side["failed_errors"] if kept else side["errors"]
        errors = pd.read_parquet(errors_path)
        diagnosis = diagnose(errors, sites, ds.channels, params)
        result = ExtractResult(
            table=str(output),
            errors=str(errors_path),
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
            notes=list(ds.notes),
            **diagnosis,
        )
        if not kept:
            if params.objects:
                write_objects_table(side["parts"], len(chunks), objects_path(output))
            per_plate = overlays if params.segments else 0  # 0: a stale folder is removed
            failed = set(errors[schema.SITE_ID].astype(str))
            where = {"per_plate": per_plate, "plate": columns.plate, "shape": expected_shape}
            drawn = write_overlays(sites, failed, params, side["overlays"], dtype=expected_dtype, **where)
            result.overlays = str(side["overlays"]) if drawn else None
            write_json(
                {
                    **asdict(result),
                    "channels": list(ds.channels),
                    "layout": ds.layout,
                    "source": str(ds.source),
                    "params": asdict(params),
                    "segmentation": segmentation_record(params, sites),
                    "controls": {"rule": columns.describe_control(), "sites": int(controls.sum())},
                    "calibration": calibration_summary(params),
                    "objects": str(objects_path(output)) if params.objects else None,
                    "versions": package_versions(),
                },
                side["summary"],
            )
        shutil.rmtree(side["parts"], ignore_errors=True)
    return result


def segmentation_channels(params: FeatureParams, channels: Sequence[str]) -> FeatureParams:
    """``params`` with the nuclear and cell channels named (``None`` resolved to the channel used).

    Examples
    --------
    >>> p = segmentation_channels(FeatureParams(), ["DNA", "PH3", "cellbody"])
    >>> p.nuclear_channel, p.cell_channel
    ('DNA', 'cellbody')
    """
    if not params.segments:
        return params
    nuclear, cell = params.channel_index(channels, "nuclear"), params.channel_index(channels, "cell")
    return replace(params, nuclear_channel=channels[nuclear], cell_channel=channels[cell])


def segmentation_record(params: FeatureParams, sites: Sequence[Site]) -> dict[str, Any] | None:
    """What ``summary.json`` says about segmentation: the channels used, the threshold, whose masks."""
    if not params.segments:
        return None
    given = sum(1 for s in sites if s.metadata.get(f"{schema.METADATA_PREFIX}ObjectsPath_Nuclei"))
    return {
        "nuclear_channel": params.nuclear_channel,
        "cell_channel": params.cell_channel,
        "threshold": params.threshold,
        "cells": params.cells,
        "regularization": params.regularization,
        "masks": "segmented" if not given else ("given" if given == len(sites) else f"given for {given} sites"),
    }


def control_sites(sites: Sequence[Site], columns: Columns) -> np.ndarray:
    """(n,) bool: the negative-control sites (``--control``); DatasetError for a query that cannot be used."""
    frame = pd.DataFrame.from_records([s.metadata for s in sites])
    try:
        controls = columns.controls(frame)
    except ControlQueryError as exc:
        raise DatasetError(str(exc)) from None
    if columns.control is not None and not controls.any():
        raise DatasetError(
            f"--control {columns.control!r} selects none of the {len(sites)} sites; the first pass learns the texture "
            f"levels from the control sites (the metadata columns are {', '.join(map(str, frame.columns[:12]))})"
        )
    return controls


def diagnose(errors: pd.DataFrame, sites: Sequence[Site], channels: Sequence[str], params: FeatureParams) -> dict:
    """The run summary's ``failure_reasons``, ``suggestion`` and ``illumination_note`` (:mod:`.diagnosis`)."""
    return {
        "failure_reasons": failure_reasons(errors),
        "suggestion": channel_suggestion(errors, sites, channels),
        "illumination_note": illumination_note(calibration_summary(params), MIN_SITES),
    }
