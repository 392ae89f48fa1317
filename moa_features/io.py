"""Small I/O helpers used at the edges: tables in Parquet/CSV, atomic writes, output locks."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import numpy as np


def format_warnings(command: str) -> None:
    """Show Python warnings on the console as one line, ``moa-features COMMAND: warning: MESSAGE``.

    For command-line entry points only (it replaces :func:`warnings.showwarning`): no source
    file, line number or code line reaches the user, and pandas' ``PerformanceWarning`` (about
    this package's internals, not the user's data) is not shown.
    """
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"moa-features {command}: warning: {text}", file=file or sys.stderr, flush=True)

    warnings.showwarning = show
    warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning)


def current_umask() -> int:
    """The process's umask (``os.umask`` can only be read by setting it; it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, staged: list[tuple[Path, Path]] | None = None) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` on success.

    A reader never sees a half-written file, and a crash leaves the old file intact. The file
    gets the permissions a plain ``open(path, "w")`` would give it. An OSError that names no
    file (a full disk, a file too large) is raised again naming ``path``. With ``staged``, the
    finished temporary is not renamed but ``(temporary, path)`` appended to it, for the caller
    to swap several files in together.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions of a new file
    kept = False
    try:
        yield tmp_path
        if staged is None:
            os.replace(tmp_path, path)
        else:
            staged.append((tmp_path, path))
            kept = True
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc  # name the file (disk full, ...)
    finally:
        if not kept and tmp_path.exists():
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


def write_table(df: pd.DataFrame, path: str | Path, staged: list[tuple[Path, Path]] | None = None) -> Path:
    """Write ``df`` atomically as Parquet or CSV, chosen by the file extension (``staged``: :func:`atomic_path`)."""
    path = Path(path)
    name = path.name.lower()
    with atomic_path(path, staged) as tmp:
        if name.endswith(".parquet"):
            df.to_parquet(tmp, index=False)
        elif name.endswith((".csv", ".csv.gz")):
            df.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz") else None)
        else:
            raise ValueError(f"{path}: unknown table format (expected .parquet, .csv or .csv.gz)")
    return path


def write_json(obj: Any, path: str | Path, staged: list[tuple[Path, Path]] | None = None) -> Path:
    """Write ``obj`` as indented JSON, atomically (``staged``: :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path, staged) as tmp:
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
    "moa-features",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-image",
    "scikit-learn",
    "pillow",
    "xgboost-cpu",
    "xgboost",
    "keras",
    "jax",
    "dask",
    "matplotlib",
    "seaborn",
    "jinja2",
)


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
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
    }
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


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard or symbolic links included); False when ``a`` does not exist."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(
    outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None], option: str = "-o"
) -> None:
    """Refuse, before any work, outputs that would overwrite one of the command's inputs.

    Parameters
    ----------
    outputs, inputs : iterables of paths (``None`` entries are skipped)
        What the command will write, and what it reads.
    option : str
        The option that names the outputs, for the message.

    Raises
    ------
    ValueError
        Naming the output, the input it would destroy and the option to change.

    Examples
    --------
    >>> refuse_overwriting_inputs(["out.csv"], ["table.csv"])
    >>> refuse_overwriting_inputs(["table.csv"], ["./table.csv"])
    Traceback (most recent call last):
    ...
    ValueError: -o table.csv would overwrite the input table.csv; choose another output
    """
    ins = [Path(p) for p in inputs if p is not None]
    for out in (Path(p) for p in outputs if p is not None):
        for src in ins:
            if out.resolve() == src.resolve() or _same_file(out, src):
                raise ValueError(f"{option} {out} would overwrite the input {src}; choose another output")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Read a JSON file; ValueError naming it when it is truncated or not JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: {what} is not text (expected JSON)") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {what} is truncated or not valid JSON ({exc})") from None


THUMB_CHECK_MIN_ROWS = 10  # fewer rows: the row-alignment check has too little to go on
THUMB_CHECK_MAX_ROWS = 2000  # rows (evenly spaced) the alignment check reads
THUMB_CHECK_MIN_R = 0.5  # median correlation (over channels) below which rows are taken as misaligned


def read_thumbs(path: str | Path, table: pd.DataFrame | None = None) -> np.ndarray:
    """Memory-map a thumbnail array ``NAME.thumbs.npy`` and check it fits ``table``.

    Expects an ``.npy`` file holding ``(N, S, S, C)`` uint8 with N = ``len(table)``. When the
    table has ``Image_Intensity_Mean_<channel>`` columns (channels in ``Metadata_Path_<channel>``
    order) and at least :data:`THUMB_CHECK_MIN_ROWS` rows, each thumbnail's mean brightness must
    follow its row's measured mean intensity (median Pearson r over channels >=
    :data:`THUMB_CHECK_MIN_R`), which catches shuffled or foreign thumbnails. Raises
    ValueError (FileNotFoundError when absent) naming the file and what was expected.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: thumbnails not found")
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: thumbnails must be a .npy array (NAME.thumbs.npy written by extract)")
    try:
        thumbs = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .npy thumbnail array ({type(exc).__name__}: {exc})") from None
    if thumbs.ndim != 4 or thumbs.dtype != np.uint8 or thumbs.shape[1] != thumbs.shape[2]:
        raise ValueError(f"{path}: expected (N, S, S, C) uint8 thumbnails, got {thumbs.dtype} {thumbs.shape}")
    if table is None:
        return thumbs
    if len(thumbs) != len(table):
        raise ValueError(
            f"{path}: {len(thumbs)} thumbnails, but the table has {len(table)} rows; "
            "expected one per row, in table order"
        )
    r = thumbs_alignment(thumbs, table)
    if r is not None and r < THUMB_CHECK_MIN_R:
        raise ValueError(
            f"{path}: the thumbnails do not follow the table's rows (their brightness correlates "
            f"r={r:.2f} with the rows' Image_Intensity_Mean_*); were they shuffled or made from "
            "another table?"
        )
    return thumbs


def thumbs_alignment(thumbs: np.ndarray, table: pd.DataFrame) -> float | None:
    """Median over channels of the Pearson r between thumbnail means and ``Image_Intensity_Mean_<ch>``.

    None when the table is too short or has no such column (nothing to check).
    """
    import numpy as np

    channels = [c[len("Metadata_Path_") :] for c in table.columns if str(c).startswith("Metadata_Path_")]
    pairs = [
        (i, f"Image_Intensity_Mean_{ch}")
        for i, ch in enumerate(channels)
        if f"Image_Intensity_Mean_{ch}" in table.columns and i < thumbs.shape[3]
    ]
    if len(table) < THUMB_CHECK_MIN_ROWS or not pairs:
        return None
    rows = np.unique(np.linspace(0, len(table) - 1, min(len(table), THUMB_CHECK_MAX_ROWS)).astype(int))
    sample = np.asarray(thumbs[rows])  # bounded memory for any N
    rs = []
    for i, col in pairs:
        a = sample[..., i].mean(axis=(1, 2), dtype=np.float64)
        b = table[col].to_numpy(dtype=np.float64)[rows]
        ok = np.isfinite(b)
        if ok.sum() >= THUMB_CHECK_MIN_ROWS and a[ok].std() > 0 and b[ok].std() > 0:
            rs.append(float(np.corrcoef(a[ok], b[ok])[0, 1]))
    return float(np.median(rs)) if rs else None
