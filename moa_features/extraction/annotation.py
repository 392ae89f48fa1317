"""The treatment -> MoA table of a run: read and checked before any work, applied per chunk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moa_features import schema
from moa_features.datasets import DatasetError
from moa_features.io import read_table, write_table


def resolve_annotation(annotation, metadata: pd.DataFrame, sidecar: Path) -> pd.DataFrame | None:
    """The annotation table to apply, read and checked before any site is measured.

    ``annotation``: None, a DataFrame, a CSV/Parquet path, or ``"auto"`` (the curated table for
    the treatments of ``metadata``, also written to ``sidecar``). DatasetError naming the file
    when it is missing, unreadable or lacks the ``treatment`` and ``moa`` columns.
    """
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


def annotate_rows(df: pd.DataFrame, annotation: pd.DataFrame | None) -> pd.DataFrame:
    """``df`` (a chunk's rows) with the annotation's ``Metadata_`` label levels filled in."""
    if annotation is None or not len(df):
        return df
    from moa_features.annotate import apply_annotation

    return apply_annotation(df, annotation)


def label_columns(annotation: pd.DataFrame | None) -> list[str]:
    """The ``Metadata_`` label columns :func:`annotate_rows` adds (none without an annotation)."""
    if annotation is None:
        return []
    from moa_features.annotate import METADATA_COLUMNS

    return [schema.MOA] + [c for lvl, c in METADATA_COLUMNS.items() if lvl != "moa" and lvl in annotation]
