"""Orchestration: chain the stages so that each stage module knows nothing of the later ones.

Stage modules (``extract``, ``train``, ``report``, ...) each do one step and import only earlier
layers (``tests/test_import_direction.py`` checks this). This module, the CLI and the demo sit
above them and chain the steps:

- :func:`extract_command`: ``moa-features extract ...`` = extract, then the report of the table;
- :func:`train_command`: ``moa-features train ...`` = train, then the report of the run.

Both take the stage's own command line (including its ``--no-report`` flag) and return its exit
status; the report is written only when the stage produced its output.

Examples
--------
>>> from moa_features.pipeline import extract_output
>>> str(extract_output(["screen/metadata.csv", "--format", "csv"]))
'features/metadata.csv'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moa_features import schema
from moa_features.io import read_json

# Stage modules are imported inside the functions: `moa-features extract` need not load XGBoost.


def _wants_report(args: argparse.Namespace) -> bool:
    """``--no-report`` is spelt ``report=False`` by extract and ``no_report=True`` by train."""
    return bool(getattr(args, "report", True)) and not getattr(args, "no_report", False)


def extract_output(argv: list[str]) -> Path:
    """The feature table an ``extract`` command line writes (its ``-o``, else the default name).

    Parameters
    ----------
    argv : list of str
        ``moa-features extract`` arguments.

    Returns
    -------
    Path
        ``-o`` when given, else ``features/<input stem>.parquet`` (``features/demo.parquet`` with
        ``--demo``), with a ``.csv`` suffix under ``--format csv``; the rule ``extraction.cli.main`` applies.
    """
    from moa_features.extraction.cli import build_parser

    args = build_parser().parse_args(argv)
    name = "demo" if args.demo or args.input is None else Path(args.input).stem.replace(".csv", "")
    output = Path(args.output or f"features/{name}.parquet")
    return output.with_suffix(".csv") if args.format == "csv" and output.suffix == ".parquet" else output


def train_output(argv: list[str]) -> Path:
    """The run folder a ``train`` command line writes.

    Parameters
    ----------
    argv : list of str
        ``moa-features train`` arguments.

    Returns
    -------
    Path
        ``-o`` when given, else ``models/<table name>``.
    """
    from moa_features.training import cli as train_stage

    args = train_stage.build_parser().parse_args(argv)
    stem = schema.sidecar_paths(args.table)["thumbs"].name.removesuffix(".thumbs.npy")
    return Path(args.output or Path("models") / stem)


def write_report(features: str | Path, run_dir: str | Path | None = None, command: str = "") -> Path | None:
    """Write the HTML report of a feature table (and a training run) and say where it went.

    Parameters
    ----------
    features : str or Path
        The feature table.
    run_dir : str or Path, optional
        A training run folder to report too.
    command : str, default ""
        The command line, recorded in the report's provenance.

    Returns
    -------
    Path or None
        The page, or ``None`` when the inputs cannot make one (e.g. every site failed, so the
        table is empty): the reason goes to stderr and the stage's own result stands.
    """
    from moa_features.report import build_report

    try:
        path = build_report(features, run_dir=run_dir, provenance={"command": command} if command else None)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"report not written: {exc}", file=sys.stderr, flush=True)
        return None
    print(f"report -> {path}", flush=True)
    return path


def extract_command(argv: list[str] | None = None) -> int:
    """``moa-features extract``: the extract stage, then its report unless ``--no-report``.

    Parameters
    ----------
    argv : list of str, optional
        ``moa-features extract`` arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Extract's exit status: 0 all sites measured, 3 some failed, 2 unusable input.
    """
    from moa_features.extraction import cli as extract_stage
    from moa_features.extraction.core import EXIT_OK, EXIT_SITES_FAILED

    argv = list(sys.argv[1:] if argv is None else argv)
    args = extract_stage.build_parser().parse_args(argv)
    table = extract_output(argv)
    summary = schema.sidecar_paths(table)["summary"]
    before = summary.stat().st_mtime_ns if summary.exists() else None
    status = extract_stage.main([*argv, "--no-report"])
    if status not in (EXIT_OK, EXIT_SITES_FAILED) or not _wants_report(args):
        return status
    measured = summary.exists() and summary.stat().st_mtime_ns != before and read_json(summary).get("n_ok", 0) > 0
    if measured:
        write_report(table, command="moa-features extract " + " ".join(argv))
    else:  # every site failed: the table is empty, or the previous one was kept
        side = schema.sidecar_paths(table)  # a kept table: this run's errors are failed-run.errors.parquet
        errors = side["failed_errors"] if side["failed_errors"].exists() else side["errors"]
        print(
            f"no report: no site of {args.input or 'the demo screen'} was measured (see {errors})",
            file=sys.stderr,
            flush=True,
        )
    return status


def train_command(argv: list[str] | None = None) -> int:
    """``moa-features train``: the train stage, then the report of the run unless ``--no-report``.

    Parameters
    ----------
    argv : list of str, optional
        ``moa-features train`` arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Train's exit status: 0 trained, 2 unusable input.
    """
    from moa_features.training import cli as train_stage

    argv = list(sys.argv[1:] if argv is None else argv)
    args = train_stage.build_parser().parse_args(argv)
    status = train_stage.main([*argv, "--no-report"])
    if status == 0 and _wants_report(args):
        write_report(args.table, run_dir=train_output(argv), command="moa-features train " + " ".join(argv))
    return status
