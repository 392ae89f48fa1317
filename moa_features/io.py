"""Small I/O helpers used at the edges: tables in Parquet/CSV, atomic writes, output locks."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` on success.

    A reader never sees a half-written file, and a crash leaves the old file intact. The file
    gets the permissions a plain ``open(path, "w")`` would give it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions of a new file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a feature/metadata table: Parquet, or CSV (``.csv``, ``.csv.gz``, ``.tsv``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table not found: {path}")
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zip")):
        return pd.read_csv(path)
    if name.endswith((".tsv", ".tsv.gz", ".txt")):
        return pd.read_csv(path, sep="\t")
    raise ValueError(f"{path}: unknown table format (expected .parquet, .csv, .csv.gz or .tsv)")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` atomically as Parquet or CSV, chosen by the file extension."""
    path = Path(path)
    name = path.name.lower()
    with atomic_path(path) as tmp:
        if name.endswith(".parquet"):
            df.to_parquet(tmp, index=False)
        elif name.endswith((".csv", ".csv.gz")):
            df.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz") else None)
        else:
            raise ValueError(f"{path}: unknown table format (expected .parquet, .csv or .csv.gz)")
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# Packages whose versions shape the results; recorded in every run's provenance.
PROVENANCE_PACKAGES = (
    "moa-features", "numpy", "pandas", "pyarrow", "scipy", "scikit-image", "scikit-learn", "pillow",
    "xgboost-cpu", "xgboost", "keras", "jax", "dask", "matplotlib", "seaborn", "jinja2",
)  # fmt: skip


def package_versions() -> dict[str, str]:
    """Python's and the installed :data:`PROVENANCE_PACKAGES`' versions (absent ones skipped)."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in PROVENANCE_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


# ----------------------------------------------------------------------------- one writer per output


class OutputLockedError(RuntimeError):
    """Another process holds the lock of an output (its message names the holder)."""


def lock_holder(lock: str | Path) -> dict[str, Any]:
    """The holder recorded in a lock file: ``pid``, ``host``, ``started`` (ISO time), ``command``."""
    try:
        return json.loads(Path(lock).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 123 on HOST, started 2026-01-01T10:00:00, running 'python -m ...'`` (or "an unknown process")."""
    if not holder:
        return "an unknown process"
    text = f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
    return text + (f", running {holder['command']!r}" if holder.get("command") else "")


@contextmanager
def output_lock(lock: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``lock`` while writing the output ``what``.

    The lock is an OS advisory lock (``flock``), released by the kernel when the holder dies,
    so a killed run never leaves a stale lock. The file records the holder (pid, host, start
    time, command) for the message of :class:`OutputLockedError`, raised at once (no waiting)
    when another process holds it. The lock file is removed on release.
    """
    import fcntl

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"{what} is being written by another run ({describe_holder(lock_holder(lock))}); "
                f"wait for it to finish or write to another output (lock file {lock})"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: retry
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def check_writable_file(path: str | Path, what: str = "output") -> None:
    """Check that ``path`` can be written (atomically) before any work starts.

    Raises ValueError naming the path when it is a folder, its folder cannot be created, or
    the folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: {what} is a folder; expected a file name")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise ValueError(f"{path}: cannot write the {what} into {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
