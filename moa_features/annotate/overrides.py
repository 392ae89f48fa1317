"""The user's overrides table: reading and validating it, with messages that name the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moa_features.annotate.curated import ACTIONS, CLASS_KIND, PATHWAYS
from moa_features.annotate.names import ACCESSION_RE

OPTIONAL_COLUMNS = ("evidence", "uniprot_accession", "gene", "receptor", "pathway", "action", "caveat", "class_kind")
EXPECTED = (
    "expected a CSV (or Parquet) table with a header row and columns treatment,moa "
    f"(optional: {','.join(OPTIONAL_COLUMNS)}), or treatment,uniprot_accession to have the rules classify a record"
)
_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: overrides file not found")
    if not path.is_file():
        raise ValueError(f"{path}: the overrides path is not a file; {EXPECTED}")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path).fillna("").astype(str)
        if name.endswith((".tsv", ".tsv.gz")):
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
        if name.endswith(_CSV_SUFFIXES):
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except Exception as exc:  # pandas/pyarrow raise many parser and decoding error types
        raise ValueError(f"{path}: not a readable overrides table ({type(exc).__name__}: {exc}); {EXPECTED}") from exc
    raise ValueError(f"{path}: unknown overrides format (use .csv, .tsv or .parquet); {EXPECTED}")


def _lines(df: pd.DataFrame, mask: pd.Series) -> str:
    """File line numbers (header = line 1) of the rows in ``mask``."""
    return ", ".join(str(i + 2) for i in df.index[mask][:10])


def read_overrides(overrides: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read and validate an overrides table.

    Parameters
    ----------
    overrides : str, Path or pandas.DataFrame
        CSV/TSV/Parquet file, or a table, with a ``treatment`` column and ``moa`` and/or
        ``uniprot_accession``; optional ``evidence, gene, receptor, pathway, action,
        caveat, class_kind``.

    Returns
    -------
    pandas.DataFrame
        Every column of :data:`OPTIONAL_COLUMNS` plus ``treatment`` and ``moa``, as stripped
        strings (``""`` when not given), in file order.

    Raises
    ------
    FileNotFoundError, ValueError
        Unreadable file, missing columns, empty names, rows that give neither ``moa`` nor
        ``uniprot_accession``, a name given twice, or a value outside a vocabulary: the
        message names the file, the line(s) and what was expected.
    """
    if isinstance(overrides, pd.DataFrame):
        where, df = "overrides table", overrides.fillna("").astype(str).reset_index(drop=True)
    else:
        where, df = str(overrides), _read(Path(overrides))
    df = df.rename(columns=lambda c: str(c).strip())
    if "treatment" not in df.columns:
        raise ValueError(f"{where}: needs a 'treatment' column (found {list(df.columns)}); {EXPECTED}")
    if "moa" not in df.columns and "uniprot_accession" not in df.columns:
        raise ValueError(
            f"{where}: needs a 'moa' or a 'uniprot_accession' column (found {list(df.columns)}); {EXPECTED}"
        )
    for col in ("treatment", "moa") + OPTIONAL_COLUMNS:
        df[col] = df[col].fillna("").astype(str).str.strip() if col in df.columns else ""
    problems = []
    if (bad := df["treatment"] == "").any():
        problems.append(f"empty 'treatment' on line(s) {_lines(df, bad)}")
    if (bad := (df["moa"] == "") & (df["uniprot_accession"] == "")).any():
        problems.append(f"neither 'moa' nor 'uniprot_accession' on line(s) {_lines(df, bad)}")
    if (bad := df["treatment"].duplicated(keep=False) & (df["treatment"] != "")).any():
        problems.append(
            f"the same treatment on several lines ({_lines(df, bad)}): {sorted(set(df.loc[bad, 'treatment']))}"
        )
    acc = df["uniprot_accession"]
    if (bad := (acc != "") & ~acc.str.upper().str.match(ACCESSION_RE.pattern)).any():
        problems.append(
            f"'uniprot_accession' is not a UniProt accession on line(s) {_lines(df, bad)} ({sorted(set(acc[bad]))[:5]})"
        )
    for col, allowed in (("pathway", PATHWAYS), ("action", ACTIONS), ("class_kind", tuple(set(CLASS_KIND.values())))):
        if (bad := (df[col] != "") & ~df[col].isin(allowed)).any():
            problems.append(
                f"'{col}' on line(s) {_lines(df, bad)} is {sorted(set(df.loc[bad, col]))}; "
                f"expected one of {sorted(allowed)}"
            )
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return df[["treatment", "moa", *OPTIONAL_COLUMNS]]
