"""Small I/O helpers used at the edges: tables in Parquet/CSV and atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
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
