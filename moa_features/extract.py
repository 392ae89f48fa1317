"""The main job: a dataset on disk -> a per-site feature table.

``python -m moa_features.extract INPUT -o features/NAME.parquet [--n-jobs N] [--thumbs 100] ...``

Sites are processed in chunks (joblib processes locally, or a Dask cluster with
``--scheduler``). Workers read their own images (paths travel, not pixels) and return
features, thumbnails and error records; this process writes each finished chunk atomically to
``NAME.parts/``, so a killed run resumes where it stopped, then streams the chunks into the
final table (Parquet row groups), the errors table and a memory-mapped thumbnail array.
Memory stays flat in the number of sites: only one chunk is held at a time.

Exit status: 0 when every site was measured, 3 when some sites failed (see the errors table),
2 for unusable input (bad metadata, missing column, bad option, unwritable output, an output
that another run is writing), which stops the run before the first site is read.

One writer per output: a run holds ``NAME.lock`` (naming its pid, host and start time) for as
long as it writes ``NAME.parts/`` and the table; every chunk records the fingerprint of the
settings that made it, so a chunk of other settings is never assembled. A run whose every site
failed keeps an existing table (its errors go to ``NAME.failed-run.errors.parquet``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features import __version__, schema
from moa_features._optional import MissingDependencyError, require
from moa_features.calibration import calibrate, calibration_summary, measure_site, objects_path, write_objects_table
from moa_features.datasets import (
    DatasetError,
    Site,
    SiteReadError,
    image_header,
    open_dataset,
)
from moa_features.features import FAMILIES, FeatureParams
from moa_features.io import (
    OutputLockedError,
    atomic_path,
    check_writable_file,
    output_lock,
    package_versions,
    read_table,
    write_json,
    write_table,
)

EXIT_OK, EXIT_USAGE, EXIT_SITES_FAILED = 0, 2, 3
ROW_GROUP_ROWS = 1024  # rows per Parquet row group of the final table (bounded memory, small footer)
DEFAULT_DEMO_ROOT = Path(".cache") / "demo-screen"


@dataclass
class ChunkResult:
    """What a worker returns for one chunk of sites."""

    index: int
    rows: list[dict[str, Any]]
    thumbs: np.ndarray | None  # (n_ok, S, S, C) uint8
    errors: list[dict[str, Any]]
    cpu_seconds: float  # process CPU time spent on the chunk (one core)
    objects: pd.DataFrame | None = None  # one row per object (extract --objects)


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
        return EXIT_SITES_FAILED if self.n_failed else EXIT_OK


# ----------------------------------------------------------------------------- per site


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """Area-averaged ``(size, size, C)`` uint8 thumbnail of a ``(C, H, W)`` image.

    8-bit images keep their values; 16-bit images are mapped by ``v / 257`` (full range).
    """
    from PIL import Image

    planes = []
    for plane in image:
        if plane.dtype == np.uint8:
            small = Image.fromarray(plane).resize((size, size), Image.Resampling.BOX)
            planes.append(np.asarray(small))
        else:
            small = Image.fromarray(plane.astype(np.float32)).resize((size, size), Image.Resampling.BOX)
            planes.append(np.clip(np.rint(np.asarray(small) / 257.0), 0, 255).astype(np.uint8))
    return np.stack(planes, axis=-1)


def process_chunk(
    index: int,
    sites: Sequence[Site],
    params: FeatureParams,
    thumb_size: int | None,
    expected_shape: tuple[int, int] | None,
    expected_dtype: str | None = None,
) -> ChunkResult:
    """Read and measure ``sites``; failures become error records, never exceptions."""
    t0 = time.process_time()
    rows, thumbs, errors, objects = [], [], [], []
    for site in sites:
        try:
            image = site.load(expected_shape, expected_dtype)
        except SiteReadError as exc:
            errors.append(_error_record(site, "read", str(exc), exc.path))
            continue
        try:
            features, site_objects = measure_site(image, site, params)
        except Exception as exc:  # a measurement bug must not lose the rest of the run
            errors.append(_error_record(site, "measure", f"{type(exc).__name__}: {exc}", None))
            continue
        rows.append({**site.metadata, **features})
        if site_objects is not None:
            objects.append(site_objects)
        if thumb_size:
            thumbs.append(thumbnail(image, thumb_size))
    arr = np.stack(thumbs) if thumbs else None
    table = pd.concat(objects, ignore_index=True) if objects else (pd.DataFrame() if params.objects else None)
    return ChunkResult(index, rows, arr, errors, time.process_time() - t0, table)


def _error_record(site: Site, stage: str, message: str, path: str | None) -> dict[str, Any]:
    return {
        schema.SITE_ID: site.site_id,
        schema.PLATE: site.metadata.get(schema.PLATE),
        schema.WELL: site.metadata.get(schema.WELL),
        "stage": stage,
        "path": path,
        "error": message,
    }


# ----------------------------------------------------------------------------- chunk store


class ChunkStore:
    """Finished chunks on disk (``NAME.parts/``), each written atomically.

    ``chunk-NNNNN.parquet`` is written last and marks the chunk complete; a ``config.json``
    fingerprint of the inputs makes a changed run start afresh instead of mixing results, and
    every chunk's ``meta.json`` carries the fingerprint too, so a chunk of other settings is
    never counted as done nor assembled. ``meta.json`` also records the size and modification
    time of the files of sites that failed to read: a chunk whose failed files changed since
    (a fixed PNG) is measured again on resume.
    """

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = folder
        self.fingerprint = fingerprint
        config = folder / "config.json"
        if folder.exists():
            old = json.loads(config.read_text()).get("fingerprint") if config.exists() else None
            if old != fingerprint:
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not config.exists():
            with atomic_path(config) as tmp:
                tmp.write_text(json.dumps({"fingerprint": fingerprint}))

    def _path(self, index: int, kind: str) -> Path:
        return self.folder / f"chunk-{index:05d}.{kind}"

    def done(self, index: int, sites: Sequence[Site] = ()) -> bool:
        """Whether chunk ``index`` is finished, made with these settings, and its failed files unchanged."""
        if not self._path(index, "parquet").exists():
            return False
        try:
            meta = json.loads(self._path(index, "meta.json").read_text())
        except (OSError, ValueError):
            return False
        if meta.get("fingerprint") != self.fingerprint:
            return False
        recorded = meta.get("failed_files", {})
        return all(_file_stamp(p) == stamp for p, stamp in recorded.items())

    def check(self, index: int) -> None:
        """Raise RuntimeError unless chunk ``index`` was made with this store's settings."""
        meta = json.loads(self._path(index, "meta.json").read_text())
        if meta.get("fingerprint") != self.fingerprint:
            raise RuntimeError(f"{self._path(index, 'parquet')}: made with other settings; not assembling it")

    def write(self, result: ChunkResult, sites: Sequence[Site] = ()) -> None:
        """Store ``result``; ``sites`` (the chunk's sites) give the files of failed reads to stamp."""
        i = result.index
        if result.thumbs is not None:
            with atomic_path(self._path(i, "thumbs.npy")) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, result.thumbs)
        errors = pd.DataFrame(result.errors, columns=_ERROR_COLUMNS)
        write_table(errors, self._path(i, "errors.parquet"))
        if result.objects is not None:
            write_table(result.objects, self._path(i, "objects.parquet"))
        failed = {e[schema.SITE_ID] for e in result.errors if e["stage"] == "read"}
        stamps = {p: _file_stamp(p) for s in sites if s.site_id in failed for p in s.paths}
        with atomic_path(self._path(i, "meta.json")) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "cpu_seconds": result.cpu_seconds,
                        "fingerprint": self.fingerprint,
                        "n_sites": len(result.rows) + len(result.errors),
                        "failed_files": stamps,
                    }
                )
            )
        write_table(pd.DataFrame(result.rows), self._path(i, "parquet"))

    def table(self, index: int) -> pd.DataFrame:
        return pd.read_parquet(self._path(index, "parquet"))

    def n_rows(self, index: int) -> int:
        import pyarrow.parquet as pq

        return pq.read_metadata(self._path(index, "parquet")).num_rows

    def schema(self, index: int):
        import pyarrow.parquet as pq

        return pq.read_schema(self._path(index, "parquet"))

    def errors(self, index: int) -> pd.DataFrame:
        return pd.read_parquet(self._path(index, "errors.parquet"))

    def thumbs(self, index: int) -> np.ndarray | None:
        p = self._path(index, "thumbs.npy")
        return np.load(p) if p.exists() else None

    def cpu_seconds(self, index: int) -> float:
        return json.loads(self._path(index, "meta.json").read_text())["cpu_seconds"]


_ERROR_COLUMNS = [schema.SITE_ID, schema.PLATE, schema.WELL, "stage", "path", "error"]


def _file_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


# ----------------------------------------------------------------------------- backends


def _run_joblib(tasks: list[tuple], n_jobs: int) -> Iterator[ChunkResult]:
    if n_jobs == 1:
        for task in tasks:
            yield process_chunk(*task)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    yield from parallel(delayed(process_chunk)(*task) for task in tasks)


def _run_dask(tasks: list[tuple], scheduler: str, n_jobs: int) -> Iterator[ChunkResult]:
    """Submit one future per chunk; results arrive as they complete.

    dask.distributed reschedules the task of a lost worker, and chunks are written by index,
    so a worker lost mid-run neither loses nor duplicates rows.
    """
    distributed = require("dask.distributed", extra="dask", purpose="extract --scheduler")
    Client, LocalCluster, as_completed = distributed.Client, distributed.LocalCluster, distributed.as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [
            client.submit(process_chunk, *task, key=f"moa-chunk-{task[0]}-{_task_token(task)}", pure=False)
            for task in tasks
        ]
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _task_token(task: tuple) -> str:
    return hashlib.sha1(repr((task[0], [s.site_id for s in task[1]])).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- the job


def _fingerprint(sites: Sequence[Site], params: FeatureParams, thumb_size: int | None, chunk_size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([__version__, asdict(params), thumb_size, chunk_size], default=str).encode())
    for s in sites:
        h.update(json.dumps([s.site_id, s.paths, s.channels]).encode())
    return h.hexdigest()


PROBE_SITES = 24  # sites whose image headers are read before any work (spread over the dataset)


def _probe_images(
    sites: Sequence[Site], image_size: tuple[int, int] | None
) -> tuple[tuple[int, int] | None, str | None]:
    """Image size and bit depth every site must have, from the headers of a spread of sites.

    Without ``image_size`` the size is the most common among the probed sites (so one odd first
    site cannot fail all the others). With it, DatasetError when no probed site has that size (a
    typo would otherwise fail every site). The bit depth is likewise the most common (for
    one-file-per-site stacks: not probed).
    """
    step = max(1, len(sites) // PROBE_SITES)
    headers: list[tuple[tuple[int, int], str, str]] = []
    for site in sites[::step][:PROBE_SITES]:
        if len(site.paths) == 1 and len(site.channels) > 1:
            try:
                shape = site.load().shape[1:]
            except SiteReadError:
                continue
            headers.append((tuple(shape), None, site.paths[0]))
            continue
        try:
            shape, dtype = image_header(site.paths[0])
        except Exception:  # unreadable here: the site's own read records it
            continue
        headers.append((tuple(shape), dtype, site.paths[0]))
    if not headers:
        return image_size, None
    dtype = _most_common([h[1] for h in headers])
    if image_size is None:
        return _most_common([h[0] for h in headers]), dtype
    if not any(h[0] == tuple(image_size) for h in headers):
        seen = sorted({f"{h[0][0]}x{h[0][1]}" for h in headers})
        raise DatasetError(
            f"--image-size {image_size[0]}x{image_size[1]}: none of {len(headers)} sites probed has that size "
            f"(found {', '.join(seen)}, e.g. {headers[0][2]}); every site would fail"
        )
    return tuple(image_size), dtype


def _most_common(values: list) -> Any:
    """The most frequent value; ties go to the one seen first."""
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=counts.__getitem__)


def validate_options(
    params: FeatureParams, thumbs: int | None, chunk_size: int, image_size: tuple[int, int] | None
) -> None:
    """Check the run's options before anything is read; DatasetError naming the option otherwise."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise DatasetError(f"--chunk-size {chunk_size}: expected a whole number of sites >= 1")
    if thumbs is not None and (not isinstance(thumbs, int) or thumbs < 1):
        raise DatasetError(f"--thumbs {thumbs}: expected a thumbnail size in pixels >= 1 (0 disables thumbnails)")
    if not isinstance(params.texture_levels, int) or not 2 <= params.texture_levels <= 65536:
        raise DatasetError(f"--texture-levels {params.texture_levels}: expected a number of grey levels, 2 to 65536")
    if not params.texture_distances or any(not isinstance(d, int) or d < 1 for d in params.texture_distances):
        raise DatasetError(f"--texture-distances {params.texture_distances}: expected whole pixel distances >= 1")
    unknown = [f for f in params.families if f not in FAMILIES]
    if unknown or not params.families:
        raise DatasetError(f"--features: unknown feature family {unknown}; expected some of {', '.join(FAMILIES)}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise DatasetError(f"--image-size {image_size}: expected HxW in pixels, e.g. 512x512")


def check_channels(params: FeatureParams, channels: Sequence[str], source: str | Path) -> None:
    """The segmentation channels must be channels of the dataset, exactly (case included)."""
    for option, name in (("--nuclear-channel", params.nuclear_channel), ("--cell-channel", params.cell_channel)):
        if name is not None and name not in channels:
            hint = [c for c in channels if c.lower() == str(name).lower()]
            raise DatasetError(
                f"{option} {name}: not a channel of {source}; the channels are {', '.join(channels)}"
                + (f" (names are case-sensitive: did you mean {hint[0]}?)" if hint else "")
            )


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
        annotation_df = _resolve_annotation(annotation, ds.metadata, side["annotation"])
        expected_shape, expected_dtype = _probe_images(sites, image_size)
        params = calibrate(sites, output, params, expected_shape)  # first pass: illumination, texture levels
        store = ChunkStore(side["parts"], _fingerprint(sites, params, thumbs, chunk_size))
        chunks = [sites[i : i + chunk_size] for i in range(0, len(sites), chunk_size)]
        pending = [i for i in range(len(chunks)) if not store.done(i, chunks[i])]
        tasks = [(i, chunks[i], params, thumbs, expected_shape, expected_dtype) for i in pending]
        n_workers = max(1, n_jobs if n_jobs > 0 else os.cpu_count() or 1)
        if scheduler:
            results = _run_dask(tasks, scheduler, n_workers)
            backend = "dask"
        else:
            results = _run_joblib(tasks, n_workers)
            backend = "joblib" if n_workers > 1 else "serial"

        from tqdm.auto import tqdm

        done_sites = len(sites) - sum(len(chunks[i]) for i in pending)
        with tqdm(total=len(sites), initial=done_sites, unit="site", desc="extract", disable=not progress) as bar:
            for result in results:
                store.write(result, chunks[result.index])
                bar.update(len(chunks[result.index]))

        n_ok, n_failed, kept = _assemble(store, len(chunks), output, side, thumbs, annotation_df, len(ds.channels))
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


def _resolve_annotation(annotation, metadata: pd.DataFrame, sidecar: Path) -> pd.DataFrame | None:
    """The annotation table to apply, read and checked before any site is measured."""
    if annotation is None:
        return None
    if isinstance(annotation, pd.DataFrame):
        table, source = annotation, "annotation table"
    elif str(annotation) == "auto":
        from moa_features.annotate import annotate_treatments

        col = next((c for c in ("treatment", "sirna", "Metadata_Treatment") if c in metadata.columns), None)
        if col is None:
            raise DatasetError("--annotation auto needs a treatment column (treatment, sirna or Metadata_Treatment)")
        table = annotate_treatments(sorted(metadata[col].dropna().astype(str).unique()))
        write_table(table, sidecar)
        return table
    else:
        source = str(annotation)
        try:
            table = read_table(annotation)
        except FileNotFoundError:
            raise DatasetError(f"{annotation}: annotation table not found") from None
        except Exception as exc:
            raise DatasetError(f"{annotation}: cannot read the annotation table: {exc}") from None
    missing = [c for c in ("treatment", "moa") if c not in table.columns]
    if missing:
        raise DatasetError(
            f"{source}: annotation table lacks column(s) {', '.join(missing)} "
            f"(found: {', '.join(map(str, table.columns))}); expected the CSV of moa-features annotate"
        )
    return table


def _assemble(
    store: ChunkStore,
    n_chunks: int,
    output: Path,
    side: dict[str, Path],
    thumb_size: int | None,
    annotation: pd.DataFrame | None,
    n_channels: int,
) -> tuple[int, int, bool]:
    """Stream the finished chunks into the final table, errors table and thumbnail array.

    Returns ``(n_ok, n_failed, kept_previous)``: when no site was measured and ``output``
    exists, the existing table and its side files are kept, and the errors go to
    ``NAME.failed-run.errors.parquet`` instead.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for i in range(n_chunks):
        store.check(i)

    def chunk_table(i: int) -> pd.DataFrame:
        df = store.table(i)
        if annotation is not None and len(df):
            from moa_features.annotate import apply_annotation

            df = apply_annotation(df, annotation)
        return df

    # Pass 1, from the chunk files' footers only: the union schema and the row count.
    schemas, n_ok = [], 0
    for i in range(n_chunks):
        rows = store.n_rows(i)
        n_ok += rows
        if rows:
            schemas.append(store.schema(i).remove_metadata())
    if annotation is not None and schemas:
        from moa_features.annotate import METADATA_COLUMNS

        levels = [schema.MOA] + [c for lvl, c in METADATA_COLUMNS.items() if lvl != "moa" and lvl in annotation]
        if new := [c for c in levels if c not in schemas[0].names]:
            schemas.append(pa.schema([pa.field(c, pa.string()) for c in new]))
    errors = pd.concat([store.errors(i) for i in range(n_chunks)], ignore_index=True)
    errors = errors.astype({"path": "string", "error": "string"})
    if n_ok == 0 and output.exists():
        write_table(errors, side["failed_errors"])
        return 0, len(errors), True
    write_table(errors, side["errors"])
    side["failed_errors"].unlink(missing_ok=True)

    unified = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    # metadata columns first, then features, each in first-seen order
    unified = pa.schema(sorted(unified, key=lambda f: not f.name.startswith(schema.METADATA_PREFIX)))
    columns = unified.names
    with ExitStack() as stack:
        tmp_table = stack.enter_context(atomic_path(output))
        thumbs_fh = None
        if thumb_size:
            # Plain sequential writes after an .npy header: unlike a memory map, written pages
            # do not stay in this process's resident memory.
            thumbs_fh = stack.enter_context(open(stack.enter_context(atomic_path(side["thumbs"])), "wb"))
            np.lib.format.write_array_header_1_0(
                thumbs_fh, {"descr": "|u1", "fortran_order": False, "shape": (n_ok, thumb_size, thumb_size, n_channels)}
            )
        writer = pq.ParquetWriter(tmp_table, unified) if output.name.endswith(".parquet") else None
        first_csv = True
        pending: list[pd.DataFrame] = []

        def flush() -> None:
            nonlocal first_csv
            if not pending:
                return
            df = pd.concat(pending, ignore_index=True).reindex(columns=columns)
            pending.clear()
            if writer is not None:
                writer.write_table(pa.Table.from_pandas(df, schema=unified, preserve_index=False))
            else:
                df.to_csv(
                    tmp_table,
                    mode="w" if first_csv else "a",
                    header=first_csv,
                    index=False,
                    compression="gzip" if output.name.endswith(".gz") else None,
                )
                first_csv = False

        for i in range(n_chunks):
            df = chunk_table(i)
            if not len(df):
                continue
            pending.append(df)
            if sum(map(len, pending)) >= ROW_GROUP_ROWS:
                flush()
            if thumbs_fh is not None:
                thumbs_fh.write(np.ascontiguousarray(store.thumbs(i), dtype=np.uint8).tobytes())
        flush()
        if writer is not None:
            writer.close()
        elif first_csv:
            pd.DataFrame(columns=columns).to_csv(tmp_table, index=False)
    if not thumb_size:
        side["thumbs"].unlink(missing_ok=True)
    return n_ok, len(errors), False


# ----------------------------------------------------------------------------- CLI


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


if __name__ == "__main__":  # the same program as `moa-features extract`: extract, then the report
    from moa_features.pipeline import extract_command

    raise SystemExit(extract_command())
