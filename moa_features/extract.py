"""The main job: a dataset on disk -> a per-site feature table.

``python -m moa_features.extract INPUT -o features/NAME.parquet [--n-jobs N] [--thumbs 100] ...``

The program (extract, then the HTML report of the table, as ``moa-features extract``) and the
public face of :mod:`moa_features.extraction`, whose modules each hold one concern: the worker,
the chunk store, the runners, the checks, the annotation, the writer, the job and the command
line. Exit status: 0 when every site was measured, 3 when some sites failed (see the errors
table), 2 for unusable input, which stops the run before the first site is read.
"""

from __future__ import annotations

from moa_features.extraction.checks import PROBE_SITES, check_channels, validate_options
from moa_features.extraction.chunks import ChunkStore
from moa_features.extraction.cli import DEFAULT_DEMO_ROOT, build_parser, main
from moa_features.extraction.core import EXIT_OK, EXIT_SITES_FAILED, EXIT_USAGE, ExtractResult, extract
from moa_features.extraction.worker import ChunkResult, process_chunk, thumbnail
from moa_features.extraction.writer import ROW_GROUP_ROWS

__all__ = [
    "DEFAULT_DEMO_ROOT",
    "EXIT_OK",
    "EXIT_SITES_FAILED",
    "EXIT_USAGE",
    "PROBE_SITES",
    "ROW_GROUP_ROWS",
    "ChunkResult",
    "ChunkStore",
    "ExtractResult",
    "build_parser",
    "check_channels",
    "extract",
    "main",
    "process_chunk",
    "thumbnail",
    "validate_options",
]

if __name__ == "__main__":  # the same program as `moa-features extract`: extract, then the report
    from moa_features.pipeline import extract_command

    raise SystemExit(extract_command())
