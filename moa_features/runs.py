"""Run folders written whole: one writer, a fresh folder swapped in, a manifest of its files.

``moa-features train`` writes ``models/RUN/`` through :func:`open_run`::

    check_run_folder(output, overwrite)          # before any work: refuses a non-empty folder
    with open_run(output, overwrite) as run:     # locks RUN.lock, makes a fresh temporary folder
        ... write every file into run.path ...
    # on success: manifest.json is written and the folder replaces RUN atomically

so a retrained run never keeps a stale model of an earlier one, two trainings into the same
folder never mix, and a failed training leaves the previous run untouched.

``RUN/manifest.json``: ``{"run_id": ..., "created": ISO time, "files": {NAME: {"size": bytes,
"sha256": hex}}}`` lists every file of the run; :func:`verify_run_files` checks that the files a
reader loads are the ones the manifest names (same run id, same content).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa_features.io import current_umask, output_lock, write_json

MANIFEST = "manifest.json"


class RunFolderError(ValueError):
    """A run folder cannot be written, or its files do not form one run (the message names them)."""


@dataclass(frozen=True)
class RunWriter:
    """Where a run is being written: ``path`` (a temporary folder), ``final`` (``models/RUN``), ``run_id``."""

    path: Path
    final: Path
    run_id: str


def new_run_id() -> str:
    """A unique run id: UTC time plus 8 random hex digits (``20260101T120000Z-1a2b3c4d``)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def check_run_folder(output: str | Path, overwrite: bool = False) -> None:
    """Check before any work that ``output`` can become a run folder.

    Raises :class:`RunFolderError` when ``output`` is a file, already holds files and
    ``overwrite`` is false, or its parent folder is not writable.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise RunFolderError(f"{output}: exists and is not a folder; expected a run folder (models/RUN)")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        names = sorted(p.name for p in output.iterdir())
        raise RunFolderError(
            f"{output}: already holds a run ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}); "
            "pass --overwrite to replace it as a whole, or choose another -o"
        )
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".probe", dir=parent))
    except OSError as exc:
        raise RunFolderError(f"{output}: cannot write a run folder into {parent}: {exc.strerror or exc}") from None
    probe.rmdir()


@contextmanager
def open_run(output: str | Path, overwrite: bool = False) -> Iterator[RunWriter]:
    """Write a run into a fresh temporary folder; on success, swap it in as ``output``.

    Holds ``output``'s lock (``RUN.lock`` beside it; :class:`moa_features.io.OutputLockedError`
    names the holder) from the check to the swap. On an exception the temporary folder is
    removed and ``output`` is left as it was. The swap exchanges the two folders atomically
    (Linux ``renameat2(RENAME_EXCHANGE)``), elsewhere by two renames.
    """
    output = Path(output)
    with output_lock(output.parent / f"{output.name}.lock", f"run folder {output}"):
        check_run_folder(output, overwrite)
        run_id = new_run_id()
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".writing", dir=output.parent))
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; a run folder gets a new folder's usual mode
        try:
            yield RunWriter(tmp, output, run_id)
            write_manifest(tmp, run_id)
            _swap_in(tmp, output)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, output: Path) -> None:
    """Make ``new`` be ``output``; the old ``output`` ends up at ``new`` (and is removed by the caller)."""
    if not output.exists():
        os.rename(new, output)
        return
    if _exchange(new, output):
        return
    old = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.old"
    os.rename(output, old)
    os.rename(new, output)
    os.rename(old, new)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with Linux ``renameat2``; False where unsupported."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | Path, run_id: str) -> dict[str, Any]:
    """Write ``folder/manifest.json`` listing every file of the run (size, SHA-256) under ``run_id``."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {
            p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        },
    }
    write_json(manifest, folder / MANIFEST)
    return manifest


def read_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's manifest, or None for a run written before manifests existed.

    Raises :class:`RunFolderError` naming the file when it is not valid JSON.
    """
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["run_id"], manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise RunFolderError(f"{path}: truncated or not a run manifest (expected JSON with run_id and files)") from None
    return manifest


def verify_run_files(run_dir: str | Path, names: Sequence[str]) -> str | None:
    """Check that the files ``names`` of ``run_dir`` belong to its run; return the run id.

    Returns None (nothing to check) for a run without a manifest. Raises
    :class:`RunFolderError` naming every file that is missing, not listed in the manifest
    (left over from another run), or changed since the run wrote it.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is None:
        return None
    problems = []
    for name in names:
        path, entry = run_dir / name, manifest["files"].get(name)
        if entry is None:
            problems.append(f"{name} is not part of run {manifest['run_id']} (a file of another run?)")
        elif not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != entry["size"] or file_sha256(path) != entry["sha256"]:
            problems.append(f"{name} was changed or truncated after run {manifest['run_id']} wrote it")
    if problems:
        raise RunFolderError(f"{run_dir}: the run's files do not match its manifest: {'; '.join(problems)}")
    return str(manifest["run_id"])
