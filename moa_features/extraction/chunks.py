"""The store of finished chunks (``NAME.parts/``) and the fingerprint of a run's settings.

A killed run resumes where it stopped: every finished chunk is on disk, written atomically,
and a chunk is kept only when it was made with the same settings and inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from moa_features import __version__, schema
from moa_features.datasets import Site
from moa_features.extraction.worker import ERROR_COLUMNS, ChunkResult
from moa_features.features import FeatureParams
from moa_features.io import atomic_path, write_table


def fingerprint(sites: Sequence[Site], params: FeatureParams, thumb_size: int | None, chunk_size: int) -> str:
    """SHA-256 of what makes the run's chunks: package version, settings and the sites."""
    h = hashlib.sha256()
    h.update(json.dumps([__version__, asdict(params), thumb_size, chunk_size], default=str).encode())
    for s in sites:
        h.update(json.dumps([s.site_id, s.paths, s.channels]).encode())
    return h.hexdigest()


def inputs_digest(sites: Sequence[Site]) -> str:
    """SHA-256 of what makes a chunk's rows: each site's metadata values, and the size and
    modification time of its image files and of its own masks (``Metadata_ObjectsPath_*``)."""
    h = hashlib.sha256()
    masks = f"{schema.METADATA_PREFIX}ObjectsPath_"
    for s in sites:
        files = [*s.paths, *(str(v) for k, v in s.keys.items() if k.startswith(masks) and v)]
        h.update(json.dumps([s.site_id, s.keys, s.channels, [(p, file_stamp(p)) for p in files]], default=str).encode())
    return h.hexdigest()


class ChunkStore:
    """Finished chunks on disk (``NAME.parts/``), each written atomically.

    ``chunk-NNNNN.parquet`` is written last and marks the chunk complete; a ``config.json``
    fingerprint of the inputs makes a changed run start afresh instead of mixing results, and
    every chunk's ``meta.json`` carries the fingerprint too, so a chunk of other settings is
    never counted as done nor assembled. ``meta.json`` also records the digest of the chunk's
    inputs (:func:`inputs_digest`: metadata values, image and mask files with their size and
    modification time): a chunk whose inputs changed since (an edited metadata value, masks
    pointed elsewhere, a fixed PNG) is measured again on resume.
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
        """Whether chunk ``index`` is finished, made with these settings and from these inputs (``sites``)."""
        if not self._path(index, "parquet").exists():
            return False
        try:
            meta = json.loads(self._path(index, "meta.json").read_text())
        except (OSError, ValueError):
            return False
        if meta.get("fingerprint") != self.fingerprint:
            return False
        return meta.get("inputs") == inputs_digest(sites)

    def check(self, index: int) -> None:
        """Raise RuntimeError unless chunk ``index`` was made with this store's settings."""
        meta = json.loads(self._path(index, "meta.json").read_text())
        if meta.get("fingerprint") != self.fingerprint:
            raise RuntimeError(f"{self._path(index, 'parquet')}: made with other settings; not assembling it")

    def write(self, result: ChunkResult, sites: Sequence[Site] = ()) -> None:
        """Store ``result``; ``sites`` (the chunk's sites) give the digest of its inputs."""
        i = result.index
        if result.thumbs is not None:
            with atomic_path(self._path(i, "thumbs.npy")) as tmp:
                with open(tmp, "wb") as fh:  # plain writes: a full disk or file-size limit raises with its errno
                    thumbs = np.ascontiguousarray(result.thumbs)
                    np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(thumbs))
                    fh.write(thumbs.data)
        errors = pd.DataFrame(result.errors, columns=ERROR_COLUMNS)
        write_table(errors, self._path(i, "errors.parquet"))
        if result.objects is not None:
            write_table(result.objects, self._path(i, "objects.parquet"))
        with atomic_path(self._path(i, "meta.json")) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "cpu_seconds": result.cpu_seconds,
                        "fingerprint": self.fingerprint,
                        "n_sites": len(result.rows) + len(result.errors),
                        "inputs": inputs_digest(sites),
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


def file_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
