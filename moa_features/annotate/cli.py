"""``moa-features annotate`` (also ``python -m moa_features.annotate``)."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from moa_features import schema
from moa_features.annotate.curated import UNCLASSIFIED
from moa_features.annotate.resolve import SOURCES, annotate_treatments
from moa_features.annotate.uniprot import DEFAULT_CACHE_DIR, DEFAULT_TIMEOUT_S
from moa_features.io import check_writable_file, read_table, refuse_overwriting_inputs, write_table

# Column names tried, in order, when the treatment column is not given.
TREATMENT_COLUMN_CANDIDATES = (
    schema.TREATMENT,
    "treatment",
    "Treatment",
    "sirna",
    "Metadata_treatment",
    "Metadata_sirna",
    "compound",
    "Metadata_Compound",
)
MOA_COLUMN_CANDIDATES = (schema.MOA, "moa", "Moa", "MoA")


def _guess_column(df: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in df.columns), None)


def read_metadata(path: Path) -> pd.DataFrame:
    """A metadata or feature table; CSV columns are read as text, so ``007`` stays ``007``."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")) and path.is_file():
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except Exception as exc:  # pandas raises many parser/decoding error types
            raise ValueError(f"{path}: not a readable CSV table ({type(exc).__name__}: {exc})") from exc
    return read_table(path)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``moa-features annotate``."""
    p = argparse.ArgumentParser(
        prog="moa-features annotate",
        description="Annotate each distinct treatment of a screen with its mechanism of action at several "
        "levels (moa, receptor, pathway, action, mechanism, class_kind, caveat) from the curated table, "
        "UniProt rules and your overrides. Exit status 0 also when some treatments stay unresolved: they "
        "are listed on stderr and have needs_review=True in the output; 2 for unusable input.",
    )
    p.add_argument(
        "metadata",
        type=Path,
        help="RxRx metadata CSV (column 'treatment', or 'sirna' for RxRx1) "
        "or a feature table (column Metadata_Treatment); CSV or Parquet",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="annotation table to write (.csv or .parquet)")
    p.add_argument("--uniprot", type=Path, help="Swiss-Prot flat file, UniProt XML, or a folder of records")
    p.add_argument("--online", action="store_true", help="fetch missing UniProt records (ExPASy), cached on disk")
    p.add_argument(
        "--overrides",
        type=Path,
        help="CSV with treatment,moa[,evidence,receptor,pathway,action,caveat] (or treatment,uniprot_accession)",
    )
    p.add_argument("--treatment-column", help="treatment column of METADATA (default: guessed)")
    p.add_argument("--moa-column", help="MoA column already in METADATA (default: Metadata_moa or moa if present)")
    p.add_argument("--cache-dir", type=Path, help=f"UniProt record cache (default {DEFAULT_CACHE_DIR})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="network timeout in seconds")
    return p


def _known_moa(meta: pd.DataFrame, path: Path, col: str, moa_column: str | None) -> dict[str, str] | None:
    moa_col = moa_column or _guess_column(meta, MOA_COLUMN_CANDIDATES)
    if moa_col is None:
        return None
    if moa_col not in meta.columns:
        raise ValueError(f"{path}: no MoA column '{moa_col}' (columns: {list(meta.columns)})")
    pairs = meta[[col, moa_col]].dropna().drop_duplicates()
    return dict(zip(pairs[col].astype(str), pairs[moa_col].astype(str)))


def _print_summary(table: pd.DataFrame, col: str, output: Path) -> None:
    counts = table["source"].value_counts()
    summary = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in SOURCES)
    print(
        f"annotated {len(table)} treatments from column '{col}' ({summary}); "
        f"{int(table['needs_review'].sum())} need review -> {output}",
        file=sys.stderr,
    )
    antagonists = table[table["action"] == "antagonist"]
    for moa, group in antagonists.groupby("moa"):
        if (table.loc[table["moa"] == moa, "action"] != "antagonist").any():
            print(
                f"note: antagonist(s) {', '.join(group['treatment'])} share the moa class '{moa}' with agonists; "
                "they have action=antagonist: train on Metadata_mechanism or Metadata_action to keep them apart",
                file=sys.stderr,
            )
    unresolved = table.loc[table["source"] == "unresolved", "treatment"].tolist()
    if unresolved:
        print(
            f"warning: {len(unresolved)} treatment(s) unresolved (moa '{UNCLASSIFIED}', needs_review=True): "
            f"{', '.join(unresolved)}; add them to an --overrides CSV (treatment,moa)",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    """``moa-features annotate METADATA -o treatment_moa.csv [--uniprot PATH] [--online] [--overrides CSV]``.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        0 on success (unresolved names included), 2 for unusable input (the message names
        the file and what was expected).
    """
    args = build_parser().parse_args(argv)
    try:
        refuse_overwriting_inputs([args.output], [args.metadata, args.overrides, args.uniprot], "-o")
        check_writable_file(args.output, "annotation table (-o)")
        meta = read_metadata(args.metadata)
        col = args.treatment_column or _guess_column(meta, TREATMENT_COLUMN_CANDIDATES)
        if col is None or col not in meta.columns:
            wanted = args.treatment_column or " or ".join(TREATMENT_COLUMN_CANDIDATES)
            raise ValueError(
                f"{args.metadata}: no treatment column {wanted} (columns: {list(meta.columns)}); "
                "name it with --treatment-column"
            )
        known = _known_moa(meta, args.metadata, col, args.moa_column)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = annotate_treatments(
                meta[col].tolist(),
                uniprot=args.uniprot,
                online=args.online,
                overrides=args.overrides,
                cache_dir=args.cache_dir,
                metadata_moa=known,
                timeout=args.timeout,
            )
        for w in caught:
            print(f"moa-features annotate: warning: {w.message}", file=sys.stderr)
        write_table(table, args.output)
    except (OSError, ValueError, KeyError, ModuleNotFoundError) as exc:
        print(f"moa-features annotate: error: {exc}", file=sys.stderr)
        return 2
    _print_summary(table, col, args.output)
    return 0
