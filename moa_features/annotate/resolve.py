"""Treatment names -> annotation table, and the annotation written into a feature table.

:func:`annotate_treatments` resolves each distinct name in this order: the user's overrides,
an MoA column of the user's metadata, the curated table, UniProt records, else
``Unclassified`` with the reason. :func:`apply_annotation` writes the annotation's levels
into a table as ``Metadata_`` columns so that any level can be the training label.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from moa_features import schema
from moa_features.annotate.curated import (
    CLASS_KIND,
    NEGATIVE_CONTROL,
    UNCLASSIFIED,
    curated_index,
    curated_table,
    mechanism,
)
from moa_features.annotate.names import Collision, is_faithful, looks_like_accession, match_names, normalize_name
from moa_features.annotate.overrides import read_overrides
from moa_features.annotate.rules import RULES_BY_ID, classify_record
from moa_features.annotate.uniprot import (
    DEFAULT_TIMEOUT_S,
    RecordSource,
    UniProtIndex,
    UniProtRecord,
    read_uniprot,
    record_facts,
)

SOURCES = ("curated", "uniprot", "override", "metadata", "unresolved")
ANNOTATION_COLUMNS = (
    "treatment",
    "moa",
    "receptor",
    "pathway",
    "action",
    "mechanism",
    "class_kind",
    "caveat",
    "source",
    "evidence",
    "uniprot_accession",
    "gene",
    "needs_review",
)
#: Annotation column -> the ``Metadata_`` column :func:`apply_annotation` writes.
METADATA_COLUMNS = {
    "moa": schema.MOA,
    "receptor": "Metadata_receptor",
    "pathway": "Metadata_pathway",
    "action": "Metadata_action",
    "mechanism": "Metadata_mechanism",
    "class_kind": "Metadata_class_kind",
    "caveat": "Metadata_caveat",
}
#: Levels usable as a training label: ``Unclassified`` / ``Negative control`` where unknown / a control.
LABEL_LEVELS = ("moa", "pathway", "action", "mechanism")
_FACTS = ("receptor", "caveat", "uniprot_accession", "gene")


def _row(treatment: str, moa: str, source: str, evidence: str, *, needs_review: bool = False, **fields: str) -> dict:
    """One annotation row; ``fields``: receptor, pathway, action, caveat, uniprot_accession, gene."""
    row = {c: "" for c in ANNOTATION_COLUMNS} | fields
    row.update(
        treatment=treatment,
        moa=moa,
        source=source,
        evidence=evidence,
        needs_review=bool(needs_review),
        class_kind=fields.get("class_kind") or CLASS_KIND.get(moa, ""),
        mechanism=mechanism(row["pathway"], row["action"]),
    )
    return row


def _curated_fields(entry: pd.Series, classification: bool = True) -> dict[str, str]:
    cols = _FACTS + (("pathway", "action") if classification else ())
    return {c: entry[c] for c in cols}


def _classified_row(name: str, record: UniProtRecord, how: str) -> dict:
    moa, rule_id, evidence = classify_record(record)
    facts, rule = record_facts(record), RULES_BY_ID[rule_id]
    return _row(
        name,
        moa,
        "uniprot",
        f"{how}; rule {rule_id}: {evidence}",
        needs_review=rule.review,
        pathway=rule.pathway,
        action=rule.action,
        uniprot_accession=facts.accession,
        gene=facts.gene,
    )


def _curated_row(name: str, rows: pd.DataFrame, how: str, source: RecordSource) -> dict:
    if len(rows) > 1:
        listing = "; ".join(
            f"{r.treatment} ({r.gene or 'no gene'}, {r.uniprot_accession or 'no accession'}, {r.moa})"
            for r in rows.itertuples()
        )
        agreed = {c: rows[c].iloc[0] if rows[c].nunique() == 1 else "" for c in ("moa", "pathway", "action")}
        return _row(
            name,
            agreed["moa"] or UNCLASSIFIED,
            "curated",
            f"ambiguous name: matches {len(rows)} curated entries: {listing}; name one in the overrides",
            needs_review=True,
            pathway=agreed["pathway"],
            action=agreed["action"],
            uniprot_accession=";".join(a for a in rows["uniprot_accession"] if a),
            gene=";".join(g for g in rows["gene"] if g),
        )
    entry = rows.iloc[0]
    evidence, review = f"curated: {entry['evidence']}", False
    if how == "isoform":
        evidence = f"matched curated '{entry['treatment']}' after removing an isoform suffix; {evidence}"
        review = True
    elif how == "parts":
        evidence = f"every part of the name matches curated '{entry['treatment']}'; {evidence}"
    acc = entry["uniprot_accession"]
    record = source.get(acc) if acc and ";" not in acc else None
    if record is not None:
        moa, rule_id, rule_evidence = classify_record(record)
        if moa not in (UNCLASSIFIED, entry["moa"]):
            evidence += f"; CHECK: UniProt rule {rule_id} gives {moa} ({rule_evidence})"
            review = True
    return _row(name, entry["moa"], "curated", evidence, needs_review=review, **_curated_fields(entry))


def _override_row(name: str, o: pd.Series, curated: pd.DataFrame | None) -> dict:
    """The override's own fields; protein facts it leaves empty come from a single curated match."""
    fields = {c: o[c] for c in ("receptor", "pathway", "action", "caveat", "class_kind", "uniprot_accession", "gene")}
    if curated is not None and len(curated) == 1:
        fields |= {c: curated.iloc[0][c] for c in _FACTS if not fields[c]}
    note = f": {o['evidence']}" if o["evidence"] else ""
    return _row(name, o["moa"], "override", f"user override '{o['treatment']}'{note}", **fields)


def _metadata_row(name: str, moa: str, curated: pd.DataFrame | None) -> dict:
    if curated is None or len(curated) != 1:
        return _row(name, moa, "metadata", "MoA given in the metadata")
    entry = curated.iloc[0]
    if entry["moa"] == moa:
        return _row(
            name, moa, "metadata", "MoA given in the metadata (agrees with the curated table)", **_curated_fields(entry)
        )
    return _row(
        name,
        moa,
        "metadata",
        f"MoA given in the metadata; CHECK: curated table says {entry['moa']} ({entry['evidence']})",
        needs_review=True,
        **_curated_fields(entry, classification=False),
    )


def _uniprot_or_unresolved(name: str, source: RecordSource, online: bool) -> dict:
    if looks_like_accession(name):
        record = source.get(name)
        if record is not None:
            return _classified_row(name, record, f"UniProt entry {name.strip().upper()}")
    candidates = source.index.by_name(name) if is_faithful(name) else []
    if len(candidates) == 1:
        entry = record_facts(candidates[0]).entry_name
        return _classified_row(name, candidates[0], f"UniProt record {entry} matched by gene/protein name")
    if len(candidates) > 1:
        listing = ", ".join(record_facts(r).entry_name for r in candidates)
        return _row(
            name,
            UNCLASSIFIED,
            "unresolved",
            f"ambiguous name: matches UniProt records {listing}; name one in the overrides",
            needs_review=True,
        )
    where = "curated table" + (" or the UniProt records" if len(source.index) else "")
    hint = "; add it to the overrides (treatment,moa or treatment,uniprot_accession)"
    if not is_faithful(name):
        hint = "; its normalised form drops letters or has none, so it is compared exactly" + hint
    if not len(source.index) and not online:
        hint += " or give UniProt records (--uniprot)"
    if source.failure:
        hint += f"; online retrieval failed: {source.failure}"
    return _row(
        name,
        UNCLASSIFIED,
        "unresolved",
        f"unknown treatment: '{name}' (key '{normalize_name(name)}') is not in the {where}{hint}",
        needs_review=True,
    )


def _flag_spelling_variants(table: pd.DataFrame) -> None:
    """Several spellings of one entry in one screen (``TNF-alpha`` and ``TNFa``) are
    kept as separate rows but flagged, so that a reviewer decides whether they differ."""
    resolved = table[table["uniprot_accession"].astype(bool) & (table["source"] != "override")]
    for _acc, group in resolved.groupby("uniprot_accession"):
        if group["moa"].nunique() == 1 and len(group) > 1 and group["source"].eq("curated").all():
            names = ", ".join(f"'{t}'" for t in group["treatment"])
            for i in group.index:
                table.at[i, "evidence"] += f"; NOTE: same entry as {names} in this screen"
                table.at[i, "needs_review"] = True


def _distinct_names(names: Iterable[object]) -> list[str]:
    distinct: dict[str, None] = {}
    skipped = 0
    for n in names:
        if _is_missing(n) or not str(n).strip():
            skipped += 1
        else:
            distinct.setdefault(str(n))
    if skipped:
        warnings.warn(f"annotate_treatments: ignored {skipped} empty/missing treatment name(s)", stacklevel=3)
    return list(distinct)


def _report_collisions(collisions: Sequence[Collision], what: str, table: pd.DataFrame) -> None:
    """Warn once, listing every collision, and note each on its row (``needs_review=True``)."""
    if not collisions:
        return
    warnings.warn(
        f"{what}: {len(collisions)} name(s) not matched by normalised form: "
        + "; ".join(c.describe() for c in collisions),
        stacklevel=3,
    )
    where = {t: i for i, t in enumerate(table["treatment"])}
    for c in collisions:
        i = table.index[where[c.name]]
        table.at[i, "evidence"] += f"; NOTE: {what} {c.describe()}"
        table.at[i, "needs_review"] = True


def annotate_treatments(
    names: Iterable[str],
    uniprot: str | Path | UniProtIndex | Iterable[UniProtRecord] | None = None,
    online: bool = False,
    overrides: str | Path | pd.DataFrame | None = None,
    cache_dir: str | Path | None = None,
    metadata_moa: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> pd.DataFrame:
    """Annotate each distinct treatment name (one row per name, first-seen order).

    Parameters
    ----------
    names : iterable of str
        Treatment names; repeats, empty and missing names are dropped (the latter with a warning).
    uniprot : str, Path, UniProtIndex or iterable of records, optional
        Swiss-Prot/UniProt-XML file or folder (:func:`~moa_features.annotate.read_uniprot`),
        an index, or records: used for names outside the curated table, and to cross-check it.
    online : bool
        Fetch records that are needed but missing (curated accessions, accession-like names,
        accessions in ``overrides``) from UniProt; needs Biopython.
    overrides : str, Path or pandas.DataFrame, optional
        The user's decisions (:func:`~moa_features.annotate.read_overrides`); they win. An
        override applies to the name it gives, and to another spelling of it only when the
        normalised form is unambiguous (:func:`~moa_features.annotate.match_names`);
        collisions are warned about and noted in ``evidence``.
    cache_dir : str or Path, optional
        UniProt record cache (default ``~/.cache/moa-features/uniprot``), read offline too
        when given.
    metadata_moa : mapping, optional
        MoA already known from the user's metadata, by treatment name (matched like overrides).
    timeout : float
        Network timeout in seconds.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ANNOTATION_COLUMNS`.
    """
    if isinstance(uniprot, UniProtIndex):
        index = uniprot
    elif isinstance(uniprot, (str, Path)):
        index = UniProtIndex(read_uniprot(uniprot))
    else:
        index = UniProtIndex(uniprot or ())
    source = RecordSource(index, online, cache_dir, timeout)
    curated, lookup = curated_table(), curated_index().lookup
    over = read_overrides(overrides) if overrides is not None else None
    known = {str(k): str(v).strip() for k, v in (metadata_moa or {}).items() if isinstance(v, str) and v.strip()}

    distinct = _distinct_names(names)
    over_match, over_coll = match_names(distinct, list(over["treatment"])) if over is not None else ({}, [])
    known_names = list(known)
    known_match, known_coll = match_names(distinct, known_names)

    out = []
    for name in distinct:
        rows, how = lookup(name)
        entries = curated.iloc[list(rows)] if rows else None
        o = over.iloc[over_match[name]] if name in over_match else None
        if o is not None and o["moa"]:
            out.append(_override_row(name, o, entries))
        elif name in known_match:
            out.append(_metadata_row(name, known[known_names[known_match[name]]], entries))
        elif o is not None:
            acc = o["uniprot_accession"]
            record = source.get(acc)
            if record is None:
                why = "not found" if online else "not in --uniprot records; try --online"
                out.append(
                    _row(
                        name,
                        UNCLASSIFIED,
                        "unresolved",
                        f"accession {acc} from the overrides: no UniProt record ({why})",
                        needs_review=True,
                        uniprot_accession=acc,
                    )
                )
            else:
                out.append(_classified_row(name, record, f"accession {acc} from the overrides"))
        elif entries is not None:
            out.append(_curated_row(name, entries, how, source))
        else:
            out.append(_uniprot_or_unresolved(name, source, online))
    table = pd.DataFrame(out, columns=list(ANNOTATION_COLUMNS))
    if over is not None:
        _warn_unused_overrides(over, set(over_match.values()), overrides)
    _flag_spelling_variants(table)
    _report_collisions(over_coll, "override", table)
    _report_collisions(known_coll, "metadata MoA", table)
    return table


def _warn_unused_overrides(over: pd.DataFrame, used: set[int], source: object) -> None:
    """Warn, listing them, about overrides that name no treatment of the screen (a typo, or another screen)."""
    unused = [str(t) for i, t in enumerate(over["treatment"]) if i not in used]
    if unused:
        where = source if isinstance(source, (str, Path)) else "the overrides"
        warnings.warn(
            f"{len(unused)} override(s) in {where} name no treatment of the screen, so they change nothing: "
            f"{', '.join(unused[:20])}{', ...' if len(unused) > 20 else ''}; check their spelling",
            UserWarning,
            stacklevel=3,
        )


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _complete(column: pd.Series) -> bool:
    return bool(column.notna().all() and (column.astype(str).str.strip() != "").all())


def _value(annotation_value: object, level: str) -> str:
    text = "" if annotation_value is None or pd.isna(annotation_value) else str(annotation_value).strip()
    return text or (UNCLASSIFIED if level in LABEL_LEVELS else "")


def apply_annotation(
    table: pd.DataFrame,
    annotation: pd.DataFrame,
    treatment_col: str = schema.TREATMENT,
    moa_col: str = schema.MOA,
    overwrite: bool = False,
) -> pd.DataFrame:
    """A copy of ``table`` with the annotation's levels written as ``Metadata_`` columns.

    Parameters
    ----------
    table : pandas.DataFrame
        Feature or metadata table with ``treatment_col``.
    annotation : pandas.DataFrame
        Output of :func:`annotate_treatments` (or a CSV of it); needs ``treatment`` and
        ``moa``. Each other column of :data:`METADATA_COLUMNS` it has is written too
        (``pathway`` -> ``Metadata_pathway``...), so ``train --label Metadata_pathway`` works.
    treatment_col : str
        Treatment column of ``table``.
    moa_col : str
        Column that receives ``moa`` (default ``Metadata_moa``).
    overwrite : bool
        Replace existing columns. Otherwise a complete existing column is kept and an
        incomplete one keeps its values, only its missing entries being filled.

    Returns
    -------
    pandas.DataFrame
        Names match exactly, else by normalised form when unambiguous (collisions are
        warned about). Negative-control treatments (``EMPTY, UNTREATED, DMSO,
        NEGATIVE_CONTROL``) absent from the annotation get ``Negative control`` in every
        label level; other absent treatments get ``Unclassified`` with a warning naming them.

    Raises
    ------
    KeyError
        ``treatment_col`` not in ``table``, or ``treatment``/``moa`` not in ``annotation``.
    """
    if treatment_col not in table.columns:
        raise KeyError(
            f"apply_annotation: table has no treatment column '{treatment_col}' (columns: {list(table.columns)[:20]})"
        )
    for col in ("treatment", "moa"):
        if col not in annotation.columns:
            raise KeyError(
                f"apply_annotation: annotation table has no '{col}' column (columns: {list(annotation.columns)})"
            )
    targets = {
        lvl: (moa_col if lvl == "moa" else col) for lvl, col in METADATA_COLUMNS.items() if lvl in annotation.columns
    }
    uniques = list(pd.unique(table[treatment_col]))
    present = [str(t) for t in uniques if not _is_missing(t)]
    matches, collisions = match_names(present, annotation["treatment"].astype(str).tolist())
    negative = {normalize_name(t) for t in schema.NEGATIVE_CONTROL_TREATMENTS}
    values: dict[str, dict[object, str]] = {lvl: {} for lvl in targets}
    missing: list[str] = []
    for t in uniques:
        i = None if _is_missing(t) else matches.get(str(t))
        control = i is None and not _is_missing(t) and is_faithful(t) and normalize_name(t) in negative
        if i is None and not control:
            missing.append(str(t))
        for lvl in targets:
            if i is not None:
                values[lvl][t] = _value(annotation[lvl].iloc[i], lvl)
            elif control:
                values[lvl][t] = NEGATIVE_CONTROL if lvl in LABEL_LEVELS else ("control" if lvl == "class_kind" else "")
            else:
                values[lvl][t] = _value(None, lvl)
    out = table.copy()
    for lvl, col in targets.items():
        filled = out[treatment_col].map(values[lvl])
        existing = out[col] if col in out.columns else None
        if existing is not None and not overwrite:
            if _complete(existing):
                continue
            keep = existing.notna() & (existing.astype(str).str.strip() != "")
            filled = existing.where(keep, filled)
        out[col] = filled.astype(object)
    if collisions:
        warnings.warn(
            "apply_annotation: not matched by normalised form: " + "; ".join(c.describe() for c in collisions),
            stacklevel=2,
        )
    if missing:
        warnings.warn(
            f"apply_annotation: {len(missing)} treatment(s) absent from the annotation table, "
            f"set to '{UNCLASSIFIED}': {', '.join(sorted(missing))}",
            stacklevel=2,
        )
    return out
