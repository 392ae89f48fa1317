"""Checks made before a report is built: where it goes, whose page it replaces, which inputs belong together.

A report is named after what it shows: ``reports/<run name>.html`` for a training run,
``reports/<table name>.html`` for a feature table alone. Each page records its table and run in
a ``<meta name="moa-features-report">`` tag (:func:`report_owner`), so a later report never
silently replaces the page of another run or another table (:func:`check_owner`). A run is
reported only with the table it was trained on (:func:`check_run_table`).

Examples
--------
>>> str(default_output("features/demo.parquet", None)), str(default_output("features/demo.parquet", "models/nsc"))
('reports/demo.html', 'reports/nsc.html')
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from moa_features import schema
from moa_features.io import check_writable_file, refuse_overwriting_inputs
from moa_features.runs import file_sha256

META_NAME = "moa-features-report"
SQLITE_HEADER = b"SQLite format 3\x00"


def table_stem(features: str | Path) -> str:
    """Table name without its format suffix: ``features/demo.parquet`` -> ``demo``."""
    return schema.sidecar_paths(features)["summary"].name[: -len(".summary.json")]


def default_output(features: str | Path, run_dir: str | Path | None) -> Path:
    """``reports/<run name>.html`` with a run, else ``reports/<table name>.html``."""
    name = Path(run_dir).resolve().name if run_dir else table_stem(features)
    return Path("reports") / f"{name}.html"


def figures_folder(output: str | Path) -> Path:
    """The folder beside the page that holds its figures as PNG files: ``<output stem>_files/``."""
    output = Path(output)
    return output.with_name(f"{output.stem}_files")


def owner_record(features: str | Path, run_dir: str | Path | None) -> dict[str, str | None]:
    """What a page records about its inputs (absolute paths)."""
    return {"table": str(Path(features).resolve()), "run": str(Path(run_dir).resolve()) if run_dir else None}


def report_owner(path: str | Path) -> dict[str, Any] | None:
    """The ``{"table", "run"}`` an existing report recorded; ``{}`` for a page without the record."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(16_384)
    m = re.search(rf'<meta name="{META_NAME}" content="([^"]*)"', head)
    if not m:
        return {}
    try:
        value = json.loads(html.unescape(m.group(1)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def check_owner(output: Path, record: Mapping[str, str | None], overwrite: bool) -> None:
    """Refuse to replace a page made from another run or another table (unless ``overwrite``).

    A run's report may replace the table-only report of the same table (it shows all of it);
    a page that is not a moa-features report is never replaced silently.
    """
    owner = report_owner(output)
    if owner is None or overwrite:
        return
    hint = "choose another -o, or pass --overwrite to replace it"
    if not owner:
        raise ValueError(f"-o {output} exists and is not a moa-features report; {hint}")
    if owner.get("run") and owner.get("run") != record["run"]:
        raise ValueError(f"{output} is the report of run {owner['run']}; {hint}")
    if owner.get("table") != record["table"]:
        raise ValueError(f"{output} is the report of table {owner.get('table')}; {hint}")


def check_output(
    output: Path, inputs: Sequence[str | Path | None], record: Mapping[str, str | None], overwrite: bool
) -> None:
    """Before any work: not an input, not a folder, writable (with its figures folder), not another run's page."""
    folder = figures_folder(output)
    refuse_overwriting_inputs([output, folder], inputs, "-o")
    if output.is_dir():
        raise ValueError(f"-o {output} is a folder; expected the page's file name (e.g. {output / 'report.html'})")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder; the report's figures go there (choose another -o)")
    check_writable_file(output, "report (-o)")
    check_owner(output, record, overwrite)


def check_votes(path: Path | None) -> None:
    """A vote store must be an SQLite file (the app's), not e.g. a CSV."""
    if path is None:
        return
    if not path.is_file():
        raise FileNotFoundError(f"--votes {path}: vote store not found")
    with open(path, "rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER and path.stat().st_size > 0:
        raise ValueError(f"--votes {path}: not an SQLite vote store (written by moa-features app as NAME.votes.sqlite)")


def _row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> set[str]:
    return set(frame[list(columns)].astype(str).agg("@".join, axis=1))


def check_run_table(features: Path, table: pd.DataFrame, run_dir: Path, config: Mapping[str, Any]) -> str:
    """The run was trained on ``features``: the same content (the SHA-256 the run recorded).

    Runs written before the hash was recorded: the same path, or every held-out well of the run
    is a well of the table.

    Returns a sentence for the report; raises ValueError naming both tables otherwise.
    """
    trained = config.get("table")
    digest = config.get("table_sha256")
    if not trained and not digest:
        return "The run did not record the table it was trained on (written by an older moa-features): not checked."
    if digest and digest == file_sha256(features):
        return f"The run was trained on this table ({features.name}, same content)."
    if digest:
        raise ValueError(
            f"--run {run_dir} was trained on {trained}, not on {features} (the table's content differs from the "
            "one the run recorded); pass the run's own table, or the run trained on this table"
        )
    if trained and Path(str(trained)).resolve() == features.resolve():
        return f"The run was trained on this table ({features})."
    preds = run_dir / "predictions.parquet"
    keys = [c for c in (schema.WELL_ID, schema.PLATE, schema.WELL) if c in table.columns]
    keys = [schema.WELL_ID] if schema.WELL_ID in keys else keys
    if keys and preds.is_file():
        held_out = pd.read_parquet(preds)
        if set(keys) <= set(held_out.columns) and _row_keys(held_out, keys) <= _row_keys(table, keys):
            return f"The run was trained on {trained}; every held-out well of the run is a well of {features.name}."
    raise ValueError(
        f"--run {run_dir} was trained on {trained}, not on {features}; pass the run's own table, or the run "
        "trained on this table"
    )
