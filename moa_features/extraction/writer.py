"""The finished chunks streamed into the outputs: the table, errors, thumbnails and objects.

Memory stays flat in the number of sites: the table goes out in Parquet row groups (or CSV
appends) of :data:`ROW_GROUP_ROWS` rows, thumbnails are appended to the ``.npy`` one chunk at
a time, and the schema comes from the chunk files' footers, not their rows.

The outputs of one run are swapped in together (:func:`commit`): each is written to a hidden
temporary beside it, and only when all are complete does a journal (``NAME.commit.json``) list
the renames, which are then made; a run killed among them leaves the journal, and the next run
completes the swap (:func:`roll_forward`) before anything else. Temporaries of a killed run
are removed by the next run (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.extraction.annotation import annotate_rows, label_columns
from moa_features.extraction.chunks import ChunkStore
from moa_features.extraction.worker import ERROR_COLUMNS
from moa_features.io import atomic_path, write_json, write_table

ROW_GROUP_ROWS = 1024  # rows per Parquet row group of the final table (bounded memory, small footer)


def assemble(
    store: ChunkStore,
    n_chunks: int,
    output: Path,
    side: dict[str, Path],
    thumb_size: int | None,
    annotation: pd.DataFrame | None,
    n_channels: int,
    staged: list[tuple[Path, Path]],
) -> tuple[int, int, bool, int | None]:
    """Stream the finished chunks into the final table, errors table and thumbnail array.

    The three are written to temporaries, appended to ``staged`` for :func:`commit`. Returns
    ``(n_ok, n_failed, kept_previous, n_without_objects)``: when no site was measured and
    ``output`` exists, the existing table and its side files are kept (nothing staged), and the
    errors go to ``NAME.failed-run.errors.parquet`` instead; ``n_without_objects`` counts the
    measured sites with ``Nuclei_Count`` 0 (None without the morphology family).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for i in range(n_chunks):
        store.check(i)

    # Pass 1, from the chunk files' footers only: the union schema and the row count. Only the
    # distinct schemas are kept (chunks nearly always share one): memory flat in the chunks.
    schemas, n_ok = [], 0
    for i in range(n_chunks):
        rows = store.n_rows(i)
        n_ok += rows
        if rows:
            chunk_schema = store.schema(i).remove_metadata()
            if not any(chunk_schema.equals(s) for s in schemas):
                schemas.append(chunk_schema)
    if schemas and (new := [c for c in label_columns(annotation) if c not in schemas[0].names]):
        schemas.append(pa.schema([pa.field(c, pa.string()) for c in new]))
    failed = [e for e in map(store.errors, range(n_chunks)) if len(e)]  # only chunks with error rows are held
    errors = pd.concat(failed, ignore_index=True) if failed else pd.DataFrame(columns=ERROR_COLUMNS)
    errors = errors.astype({"path": "string", "error": "string"})
    if n_ok == 0 and output.exists():
        write_table(errors, side["failed_errors"])
        return 0, len(errors), True, None
    write_table(errors, side["errors"], staged)

    unified = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    # metadata columns first, then features, each in first-seen order
    unified = pa.schema(sorted(unified, key=lambda f: not f.name.startswith(schema.METADATA_PREFIX)))
    columns = unified.names
    with ExitStack() as stack:
        tmp_table = stack.enter_context(atomic_path(output, staged))
        thumbs_fh = None
        if thumb_size:
            # Plain sequential writes after an .npy header: unlike a memory map, written pages
            # do not stay in this process's resident memory.
            thumbs_fh = stack.enter_context(open(stack.enter_context(atomic_path(side["thumbs"], staged)), "wb"))
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

        n_empty = 0 if "Nuclei_Count" in columns else None
        for i in range(n_chunks):
            df = annotate_rows(store.table(i), annotation)
            if not len(df):
                continue
            if n_empty is not None:
                n_empty += int((df["Nuclei_Count"] == 0).sum())
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
    return n_ok, len(errors), False, n_empty


def objects_path(table: str | Path) -> Path:
    """``NAME.objects.parquet`` beside the feature table."""
    return schema.sidecar_paths(table)["parts"].with_suffix(".objects.parquet")


def write_objects_table(parts: Path, n_chunks: int, out: Path, staged: list[tuple[Path, Path]] | None = None) -> int:
    """Stream the chunks' ``chunk-NNNNN.objects.parquet`` into one table; returns its row count.

    staged: as for :func:`~moa_features.io.atomic_path` (the table is swapped in by :func:`commit`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [parts / f"chunk-{i:05d}.objects.parquet" for i in range(n_chunks)]
    files = [f for f in files if f.exists()]
    schemas = [pq.read_schema(f).remove_metadata() for f in files]
    schemas = [s for s, f in zip(schemas, files) if pq.read_metadata(f).num_rows]
    unified = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    rows = 0
    with atomic_path(out, staged) as tmp:
        with pq.ParquetWriter(tmp, unified) as writer:
            for f in files:
                df = pd.read_parquet(f)
                if len(df):
                    writer.write_table(
                        pa.Table.from_pandas(df.reindex(columns=unified.names), schema=unified, preserve_index=False)
                    )
                    rows += len(df)
    return rows


def commit(staged: list[tuple[Path, Path]], journal: Path, removed: list[Path] = ()) -> None:
    """Swap a run's finished outputs in together, then remove the outputs it no longer has.

    staged: ``(temporary, final)`` pairs (files, or a folder replacing a folder); journal: where
    the list is written before the first rename (``NAME.commit.json``); removed: stale outputs
    of an earlier run (e.g. thumbnails a run without ``--thumbs`` does not write).
    """
    record = {"replace": [[str(t), str(f)] for t, f in staged], "remove": [str(p) for p in removed]}
    write_json(record, journal)
    roll_forward(journal)


def roll_forward(journal: Path) -> None:
    """Complete the swap a journal lists (a run killed among its renames), then remove the journal."""
    if not journal.exists():
        return
    record = json.loads(journal.read_text())
    for tmp, final in record["replace"]:
        tmp, final = Path(tmp), Path(final)
        if tmp.is_dir():
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        elif tmp.exists():
            os.replace(tmp, final)
    for path in map(Path, record["remove"]):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    journal.unlink()


def remove_stale_temporaries(outputs: list[Path]) -> list[Path]:
    """Remove the hidden temporaries (``.NAME.*.tmp``) a killed run left beside ``outputs``; returns them.

    Call only while holding the outputs' lock: no other run is writing them.
    """
    stale = [t for out in outputs for t in out.parent.glob(f".{out.name}.*.tmp")]
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove the temporaries of outputs that will not be swapped in (the run stopped before)."""
    for tmp, _ in staged:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
