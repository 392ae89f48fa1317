"""MoA annotation: treatment name -> mechanism of action, curated and from UniProt.

Screens such as RxRx2 give only a treatment's name (``IL-1B``, ``TNF-alpha``,
``Sonic-Hedgehog``, ``EMPTY``). This module turns the distinct names of a screen into
the annotation table of ``docs/architecture.md`` (``treatment, moa, source, evidence,
uniprot_accession, gene, needs_review``), one row per distinct treatment, resolved in
this order:

1. ``override``: the user's own table (``--overrides``) wins and is recorded as such.
2. ``metadata``: an MoA column already present in the user's metadata.
3. ``curated``: the table shipped in ``moa_features/data/treatment_moa.csv`` (name,
   aliases, UniProt accession, gene, MoA, evidence). Names are matched after
   :func:`normalize_name`; a name that matches several entries is flagged, never merged.
   When the entry's UniProt record is at hand, the rules below cross-check it and a
   disagreement is flagged for review.
4. ``uniprot``: a Swiss-Prot record found by accession, entry name, gene or protein name
   in ``--uniprot PATH`` (or fetched with ``--online``) is classified by the ordered
   rules of :data:`RULES`; the rule that fired is kept as evidence.
5. ``unresolved``: ``Unclassified`` with the reason, ``needs_review=True``.

Curation conventions: ligands that UniProt keys as growth factors (keyword
``Growth factor``, TGF-beta/FGF/PDGF-VEGF/NGF families, hedgehogs, colony-stimulating
factors) are ``Growth factor``; other receptor-tyrosine-kinase ligands (ephrins, GAS6,
protein S, angiopoietins, insulin) are ``Tyrosine kinase receptor agonist``; chemokines
and peptide hormones acting on GPCRs are ``GPCR agonist``; gp130 cytokines (LIF, OSM,
CNTF, CT-1) are ``Interleukin``. ``Interferon`` is a class added to the RxRx2 list.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import socket
import sys
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence
from urllib.error import URLError

import pandas as pd
from Bio import ExPASy, SeqIO, SwissProt
from Bio.SeqRecord import SeqRecord

from moa_features import schema
from moa_features.io import atomic_path, read_table, write_table

UNCLASSIFIED = "Unclassified"
MOA_CLASSES = (
    "Growth factor",
    "Interleukin",
    "GPCR agonist",
    "Immunoglobulin",
    "Virulence factor",
    "TNF ligand",
    "Wnt agonist",
    "Complement protein",
    "Wnt antagonist",
    "Lectin",
    "B7 ligand",
    "STING ligand",
    "Tyrosine kinase receptor agonist",
    "Antimicrobial peptide",
    "Protein kinase activator",
    "Interferon",
    schema.NEGATIVE_CONTROL_MOA,
)
SOURCES = ("curated", "uniprot", "override", "metadata", "unresolved")
ANNOTATION_COLUMNS = (
    "treatment",
    "moa",
    "source",
    "evidence",
    "uniprot_accession",
    "gene",
    "needs_review",
)
CURATED_COLUMNS = ("treatment", "aliases", "uniprot_accession", "gene", "moa", "evidence")
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "moa-features" / "uniprot"
DEFAULT_TIMEOUT_S = 20.0
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

HUMAN_TAXON = "9606"
# UniProt accession (https://www.uniprot.org/help/accession_numbers) and entry name.
_ACCESSION_RE = re.compile(
    r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})$"
)
_ENTRY_NAME_RE = re.compile(r"^[A-Z0-9]{1,10}_[A-Z0-9]{1,5}$")

# --------------------------------------------------------------------------- names

# Greek letters (and the German sharp s, a common stand-in for beta), either case.
_GREEK_LETTERS = {
    "α": "alpha", "Α": "alpha", "β": "beta", "Β": "beta", "ß": "beta", "ẞ": "beta",
    "γ": "gamma", "Γ": "gamma", "δ": "delta", "Δ": "delta", "ε": "epsilon", "Ε": "epsilon",
    "κ": "kappa", "Κ": "kappa", "λ": "lambda", "Λ": "lambda", "ω": "omega", "Ω": "omega",
}  # fmt: skip
# Greek words shortened to the letter HGNC symbols use (IFNG, IFNL1, IFNW1, IL1B, TNFa).
_GREEK_WORDS = (
    ("epsilon", "e"), ("lambda", "l"), ("alpha", "a"), ("gamma", "g"),
    ("kappa", "k"), ("omega", "w"), ("delta", "d"), ("beta", "b"),
)  # fmt: skip
_UNIT = r"(?:[pnuμm]?g\s*/\s*[mμu]?l|[pnuμm]?mol\s*/\s*l|[pnuμm]?m|i?u\s*/\s*m?l|%|x)"
_CONCENTRATION_RE = re.compile(
    rf"(?:[\s_@,;:-]+|\s*\()\s*\d+(?:[.,]\d+)?(?:e-?\d+)?\s*{_UNIT}\s*\)?\s*$", re.IGNORECASE
)
_PREFIX_RE = re.compile(r"^(?:recombinant\s+)?(?:(?:human|hu)\s+)?", re.IGNORECASE)
_RH_PREFIX_RE = re.compile(r"^r?hu?-?(?=[A-Z])")


def normalize_name(name: str) -> str:
    """Canonical key of a treatment name, used for every name comparison.

    Case-insensitive; hyphens, spaces, primes and other punctuation removed; Greek
    letters and their spelled-out names reduced to one Latin letter (``TNF-α``,
    ``TNF-alpha`` and ``TNFa`` -> ``"tnfa"``; ``IL-1β`` -> ``"il1b"``); trailing
    concentrations with a unit dropped (``"EGF 10 ng/mL"`` -> ``"egf"``); leading
    ``recombinant``/``human`` and ``rh``/``rhu`` (``rhEGF``) dropped.
    """
    text = unicodedata.normalize("NFKC", str(name)).strip()
    for letter, word in _GREEK_LETTERS.items():
        text = text.replace(letter, word)
    while True:
        stripped = _CONCENTRATION_RE.sub("", text)
        if stripped == text or not stripped:
            break
        text = stripped
    text = _PREFIX_RE.sub("", text)
    text = _RH_PREFIX_RE.sub("", text)
    text = text.casefold()
    for word, letter in _GREEK_WORDS:
        text = text.replace(word, letter)
    return re.sub(r"[^0-9a-z]", "", text)


def looks_like_accession(name: str) -> bool:
    """Whether ``name`` is a UniProt accession (``P01375``) or entry name (``TNFA_HUMAN``)."""
    token = str(name).strip().upper()
    return bool(_ACCESSION_RE.match(token) or _ENTRY_NAME_RE.match(token))


# --------------------------------------------------------------------------- curated table


@lru_cache(maxsize=1)
def _curated_cached() -> pd.DataFrame:
    path = resources.files("moa_features") / "data" / "treatment_moa.csv"
    with resources.as_file(path) as p:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    missing = [c for c in CURATED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(CURATED_COLUMNS)}")
    unknown = sorted(set(df["moa"]) - set(MOA_CLASSES))
    if unknown:
        raise ValueError(f"{path}: column 'moa' has unknown class(es) {unknown}")
    return df[list(CURATED_COLUMNS)]


def load_curated() -> pd.DataFrame:
    """The curated table shipped with the package (a copy).

    Columns ``treatment, aliases, uniprot_accession, gene, moa, evidence``; ``aliases``
    is ``|``-separated; empty strings (not NaN) where a field does not apply
    (small molecules have no accession or gene).
    """
    return _curated_cached().copy()


@dataclass(frozen=True)
class _NameIndex:
    """Normalized name -> curated row numbers, primary names before gene symbols."""

    primary: Mapping[str, tuple[int, ...]]
    genes: Mapping[str, tuple[int, ...]]

    def lookup(self, name: str) -> tuple[int, ...]:
        key = normalize_name(name)
        return self.primary.get(key) or self.genes.get(key) or ()


def _build_index(curated: pd.DataFrame) -> _NameIndex:
    primary: dict[str, list[int]] = {}
    genes: dict[str, list[int]] = {}
    for i, row in enumerate(curated.itertuples(index=False)):
        names = [row.treatment] + [a for a in row.aliases.split("|") if a.strip()]
        for key in {normalize_name(n) for n in names} - {""}:
            primary.setdefault(key, []).append(i)
        if row.gene:
            genes.setdefault(normalize_name(row.gene), []).append(i)
    return _NameIndex(
        {k: tuple(v) for k, v in primary.items()}, {k: tuple(v) for k, v in genes.items()}
    )


# --------------------------------------------------------------------------- UniProt records

UniProtRecord = SwissProt.Record | SeqRecord


@dataclass(frozen=True)
class UniProtFacts:
    """What the rules read from one UniProt record, whatever its file format.

    ``families``: the text of each ``Belongs to the ... family`` line; ``go_functions``:
    ``(GO id, term)`` of each molecular-function GO cross-reference (term is empty for
    UniProt XML, whose Biopython parser keeps only the id).
    """

    accessions: tuple[str, ...]
    entry_name: str
    genes: tuple[str, ...]
    names: tuple[str, ...]
    keywords: tuple[str, ...]
    families: tuple[str, ...]
    go_functions: tuple[tuple[str, str], ...]
    taxon_id: str

    @property
    def accession(self) -> str:
        return self.accessions[0] if self.accessions else ""

    @property
    def gene(self) -> str:
        return self.genes[0] if self.genes else ""


_ECO_RE = re.compile(r"\s*\{ECO:[^}]*\}")
_BELONGS_RE = re.compile(r"Belongs to the (.+?)(?:\.\s|\.$|$)", re.DOTALL)
_DE_NAME_RE = re.compile(r"(?:Full|Short)=([^;{]+)")


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", _ECO_RE.sub("", text)).strip().rstrip(".;").strip()


def _families(similarity_texts: Iterable[str]) -> tuple[str, ...]:
    found = []
    for text in similarity_texts:
        for m in _BELONGS_RE.finditer(_clean(text) + "."):
            found.append(m.group(1).strip())
    return tuple(found)


def _swiss_genes(gene_name) -> tuple[str, ...]:
    """Gene names of ``SwissProt.Record.gene_name`` (list of dicts, or the old string)."""
    genes: list[str] = []
    if isinstance(gene_name, str):
        for key in ("Name", "Synonyms"):
            m = re.search(rf"{key}=([^;]+);", gene_name)
            if m:
                genes += [_clean(g) for g in m.group(1).split(",")]
    else:
        for entry in gene_name or []:
            if entry.get("Name"):
                genes.append(_clean(entry["Name"]))
            genes += [_clean(g) for g in entry.get("Synonyms", [])]
    return tuple(g for g in genes if g)


def record_facts(record: UniProtRecord) -> UniProtFacts:
    """Extract :class:`UniProtFacts` from a ``Bio.SwissProt.Record`` or a UniProt-XML
    ``SeqRecord`` (``Bio.SeqIO.parse(path, "uniprot-xml")``)."""
    if isinstance(record, SwissProt.Record):
        similarity = [c[len("SIMILARITY:") :] for c in record.comments if c.startswith("SIMILARITY:")]
        go = tuple(
            (x[1], x[2][2:])
            for x in record.cross_references
            if x[0] == "GO" and len(x) > 2 and x[2].startswith("F:")
        )
        return UniProtFacts(
            accessions=tuple(record.accessions),
            entry_name=record.entry_name,
            genes=_swiss_genes(record.gene_name),
            names=tuple(_clean(n) for n in _DE_NAME_RE.findall(record.description)),
            keywords=tuple(_clean(k) for k in record.keywords),
            families=_families(similarity),
            go_functions=go,
            taxon_id=(record.taxonomy_id or [""])[0],
        )
    if isinstance(record, SeqRecord):
        ann = record.annotations
        genes = [ann.get("gene_name_primary", "")] + list(ann.get("gene_name_synonym", []))
        names = [record.description] + [
            v for k, vs in ann.items() if k.endswith(("_fullName", "_shortName"))
            for v in (vs if isinstance(vs, list) else [vs])
        ]  # fmt: skip
        taxon = next((x.split(":", 1)[1] for x in record.dbxrefs if x.startswith("NCBI Taxonomy:")), "")
        return UniProtFacts(
            accessions=tuple(dict.fromkeys([record.id] + list(ann.get("accessions", [])))),
            entry_name=record.name,
            genes=tuple(g for g in genes if g),
            names=tuple(_clean(n) for n in names if n),
            keywords=tuple(ann.get("keywords", [])),
            families=_families(ann.get("comment_similarity", [])),
            go_functions=tuple((x[3:], "") for x in record.dbxrefs if x.startswith("GO:GO:")),
            taxon_id=taxon,
        )
    raise TypeError(
        f"expected a Bio.SwissProt.Record or a UniProt-XML SeqRecord, got {type(record).__name__}"
    )


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One classification rule: ``test(facts)`` returns the evidence when it fires.

    ``review``: whether an annotation made by this rule should still be reviewed
    (weak rules: gene-name patterns, broad GO terms, and every ``Unclassified`` reason).
    """

    id: str
    moa: str
    description: str
    test: Callable[[UniProtFacts], str | None]
    review: bool = False


def _family(pattern: str, exclude: str | None = "receptor") -> Callable[[UniProtFacts], str | None]:
    rx = re.compile(pattern, re.IGNORECASE)
    ex = re.compile(exclude, re.IGNORECASE) if exclude else None

    def test(f: UniProtFacts) -> str | None:
        for fam in f.families:
            if rx.search(fam) and not (ex and ex.search(fam)):
                return f"UniProt family: Belongs to the {fam}"
        return None

    return test


def _keyword(*names: str) -> Callable[[UniProtFacts], str | None]:
    wanted = {n.casefold() for n in names}

    def test(f: UniProtFacts) -> str | None:
        hit = [k for k in f.keywords if k.casefold() in wanted]
        return f"UniProt keyword: {', '.join(hit)}" if hit else None

    return test


def _go(pattern: str, *ids: str) -> Callable[[UniProtFacts], str | None]:
    rx = re.compile(pattern, re.IGNORECASE)

    def test(f: UniProtFacts) -> str | None:
        for go_id, term in f.go_functions:
            if (term and rx.fullmatch(term)) or go_id in ids:
                return f"GO molecular function: {go_id} {term}".rstrip()
        return None

    return test


def _gene(pattern: str) -> Callable[[UniProtFacts], str | None]:
    rx = re.compile(pattern)

    def test(f: UniProtFacts) -> str | None:
        hit = next((g for g in f.genes if rx.fullmatch(g.upper())), None)
        return f"gene name {hit} matches {pattern}" if hit else None

    return test


def _receptor(f: UniProtFacts) -> str | None:
    hit = [k for k in f.keywords if k in ("Receptor", "G-protein coupled receptor")]
    if hit:
        return f"a receptor, not a ligand (UniProt keyword: {', '.join(hit)}); no MoA class for receptors"
    return None


def _cytokine_without_family(f: UniProtFacts) -> str | None:
    if "Cytokine" in f.keywords:
        fam = "; ".join(f.families) or "none"
        return f"UniProt keyword Cytokine, but no family/GO/gene rule names its class (family: {fam})"
    return None


def _nothing_matched(f: UniProtFacts) -> str:
    fam = "; ".join(f.families) or "none"
    kws = ", ".join(k for k in f.keywords if k not in ("Reference proteome", "Complete proteome", "3D-structure"))
    return f"no rule matched (family: {fam}; keywords: {kws or 'none'})"


_GF_FAMILIES = (
    r"TGF-beta family|PDGF/VEGF growth factor family|heparin-binding growth factors family|"
    r"NGF-beta family|hedgehog family|pleiotrophin family|EPO/TPO family"
)

#: Ordered rule list: the first rule that fires gives the class. Specific families
#: first (TNF ligands and chemokines also carry the generic ``Cytokine`` keyword),
#: then keywords, GO molecular-function terms, gene-name patterns, and finally the
#: reasons for ``Unclassified``. ``Immunoglobulin domain`` (HLA, receptors) is not
#: ``Immunoglobulin``; an ``EGF-like domain`` (t-PA) is not a growth factor.
RULES: tuple[Rule, ...] = (
    Rule("family:tnf", "TNF ligand", "tumor necrosis factor family", _family(r"tumor necrosis factor family")),
    Rule("family:chemokine", "GPCR agonist", "intercrine (chemokine) families", _family(r"intercrine")),
    Rule("family:wnt", "Wnt agonist", "Wnt family", _family(r"^Wnt family")),
    Rule("family:r-spondin", "Wnt agonist", "R-spondin family", _family(r"R-spondin family")),
    Rule("family:dickkopf", "Wnt antagonist", "dickkopf family", _family(r"dickkopf family")),
    Rule("family:sfrp-sclerostin", "Wnt antagonist", "sFRP and sclerostin families",
         _family(r"secreted frizzled-related protein|sclerostin family")),
    Rule("family:interleukin", "Interleukin", "IL-n / interleukin families (not receptors)",
         _family(r"\bIL-\d+|interleukin")),
    Rule("family:interferon", "Interferon", "interferon families (not receptors)", _family(r"interferon")),
    Rule("family:growth-factor", "Growth factor", "TGF-beta, PDGF/VEGF, FGF, NGF, hedgehog, pleiotrophin, EPO/TPO families",
         _family(_GF_FAMILIES)),
    Rule("family:ephrin", "Tyrosine kinase receptor agonist", "ephrin family", _family(r"^ephrin family")),
    Rule("family:defensin", "Antimicrobial peptide", "defensin and cathelicidin families",
         _family(r"defensin family|cathelicidin family")),
    Rule("keyword:antimicrobial", "Antimicrobial peptide", "keyword Antimicrobial", _keyword("Antimicrobial")),
    Rule("keyword:toxin", "Virulence factor", "keyword Toxin or Virulence", _keyword("Toxin", "Virulence")),
    Rule("keyword:lectin", "Lectin", "keyword Lectin", _keyword("Lectin")),
    Rule("keyword:complement", "Complement protein", "keyword Complement pathway / Complement alternate pathway",
         _keyword("Complement pathway", "Complement alternate pathway")),
    Rule("keyword:immunoglobulin", "Immunoglobulin", "keyword Immunoglobulin, Immunoglobulin C/V region",
         _keyword("Immunoglobulin", "Immunoglobulin C region", "Immunoglobulin V region")),
    Rule("keyword:growth-factor", "Growth factor", "keyword Growth factor", _keyword("Growth factor")),
    Rule("go:chemokine", "GPCR agonist", "GO chemokine activity", _go(r"chemokine activity", "GO:0008009")),
    Rule("go:tnf", "TNF ligand", "GO tumor necrosis factor receptor binding",
         _go(r"tumor necrosis factor receptor binding", "GO:0005164")),
    Rule("go:interleukin", "Interleukin", "GO interleukin-n receptor binding",
         _go(r"interleukin-\d+[a-z]? receptor binding")),
    Rule("go:interferon", "Interferon", "GO interferon receptor binding",
         _go(r"(type I )?interferon(-gamma)? receptor binding")),
    Rule("go:frizzled", "Wnt agonist", "GO frizzled binding", _go(r"frizzled binding", "GO:0005109"), review=True),
    Rule("go:growth-factor", "Growth factor", "GO growth factor activity", _go(r"growth factor activity", "GO:0008083")),
    Rule("go:ephrin", "Tyrosine kinase receptor agonist", "GO ephrin receptor binding", _go(r"ephrin receptor binding")),
    Rule("go:kinase-activator", "Protein kinase activator", "GO protein kinase activator activity",
         _go(r"protein kinase activator activity", "GO:0030295")),
    Rule("go:gpcr-binding", "GPCR agonist", "GO G protein-coupled receptor binding",
         _go(r"G protein-coupled receptor binding", "GO:0001664"), review=True),
    Rule("gene:interleukin", "Interleukin", "gene IL<n>[A-F]", _gene(r"IL\d+[A-F]?"), review=True),
    Rule("gene:chemokine", "GPCR agonist", "gene CCL/CXCL/XCL/CX3CL<n>", _gene(r"(CCL|CXCL|XCL|CX3CL)\d+"), review=True),
    Rule("gene:tnfsf", "TNF ligand", "gene TNFSF<n>", _gene(r"TNFSF\d+[A-Z]?"), review=True),
    Rule("gene:wnt", "Wnt agonist", "gene WNT<n>", _gene(r"WNT\d+[A-Z]?"), review=True),
    Rule("gene:wnt-antagonist", "Wnt antagonist", "gene DKK/SFRP/FRZB/WIF1/SOST",
         _gene(r"DKK[1-4]|SFRP[1-5]|FRZB|WIF1|SOST|SOSTDC1"), review=True),
    Rule("gene:b7", "B7 ligand", "gene of a B7 family ligand",
         _gene(r"CD80|CD86|CD274|PDCD1LG2|ICOSLG|CD276|VTCN1|NCR3LG1"), review=True),
    Rule("gene:interferon", "Interferon", "gene IFN<A,B,G,K,L,W,E><n>", _gene(r"IFN[ABGKLWE]\d*"), review=True),
    Rule("gene:complement", "Complement protein", "gene of a complement component",
         _gene(r"C1Q[ABC]|C[1-9]|C1[RS]|C4[AB]|C8[ABG]|CF[BDHIP]"), review=True),
    Rule("gene:defensin", "Antimicrobial peptide", "gene DEFA/DEFB<n>, CAMP", _gene(r"DEF[AB]\d+[A-Z]?|CAMP"), review=True),
    Rule("gene:growth-factor", "Growth factor", "gene FGF/BMP/GDF/VEGF/PDGF/IGF",
         _gene(r"FGF\d+|BMP\d+|GDF\d+|VEGF[A-D]|PDGF[A-D]|IGF[12]"), review=True),
    Rule("gene:ephrin", "Tyrosine kinase receptor agonist", "gene EFNA/EFNB<n>", _gene(r"EFN[AB]\d"), review=True),
    Rule("unclassified:receptor", UNCLASSIFIED, "receptor (keyword Receptor / G-protein coupled receptor)",
         _receptor, review=True),
    Rule("unclassified:cytokine", UNCLASSIFIED, "keyword Cytokine without a more specific rule",
         _cytokine_without_family, review=True),
    Rule("unclassified:no-rule", UNCLASSIFIED, "no rule matched", _nothing_matched, review=True),
)  # fmt: skip
_RULES_BY_ID = {r.id: r for r in RULES}


def classify_record(record: UniProtRecord) -> tuple[str, str, str]:
    """Classify one UniProt record by the first rule of :data:`RULES` that fires.

    Returns ``(moa, rule id, evidence)``; ``moa`` is ``"Unclassified"`` with the reason
    in ``evidence`` when no class rule fires.
    """
    facts = record_facts(record)
    for rule in RULES:
        evidence = rule.test(facts)
        if evidence:
            return rule.moa, rule.id, evidence
    raise AssertionError("the last rule always fires")


# --------------------------------------------------------------------------- record sources

_RECORD_SUFFIXES = (".txt", ".dat", ".swiss", ".sp", ".xml")


def _open(path: Path, binary: bool = False):
    if path.suffix == ".gz":
        return gzip.open(path, "rb") if binary else gzip.open(path, "rt", encoding="utf-8")
    return open(path, "rb") if binary else open(path, encoding="utf-8")


def _sniff(path: Path) -> str | None:
    """``"xml"``, ``"swiss"`` (first line ``ID   ...``) or ``None`` (neither)."""
    with _open(path, binary=True) as handle:
        head = handle.read(200).lstrip()
    if head.startswith(b"<"):
        return "xml"
    return "swiss" if head.startswith(b"ID   ") else None


def read_uniprot(path: str | Path) -> list[UniProtRecord]:
    """Read UniProt records from a Swiss-Prot flat file, a UniProt XML file (either may
    be gzipped) or a folder of such files (``*.txt, *.dat, *.swiss, *.sp, *.xml``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"UniProt records not found: {path}")
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir()
            if p.is_file() and p.name.lower().removesuffix(".gz").endswith(_RECORD_SUFFIXES)
            and _sniff(p) is not None
        )  # fmt: skip
        if not files:
            raise ValueError(f"{path}: no UniProt record files ({', '.join(_RECORD_SUFFIXES)}, optionally .gz, "
                             "starting with 'ID   ' or '<')")  # fmt: skip
        return [r for f in files for r in read_uniprot(f)]
    is_xml = _sniff(path) == "xml"
    try:
        with _open(path, binary=is_xml) as handle:
            if is_xml:
                records: list[UniProtRecord] = list(SeqIO.parse(handle, "uniprot-xml"))
            else:
                records = list(SwissProt.parse(handle))
    except Exception as exc:  # Biopython raises ValueError/SyntaxError/ParseError variants
        raise ValueError(f"{path}: not a Swiss-Prot flat file or UniProt XML: {exc}") from exc
    if not records:
        raise ValueError(f"{path}: no UniProt records found")
    return records


class UniProtIndex:
    """Records by accession/entry name and by normalized gene and protein name."""

    def __init__(self, records: Iterable[UniProtRecord] = ()):
        self._by_id: dict[str, UniProtRecord] = {}
        self._by_name: dict[str, list[UniProtRecord]] = {}
        for record in records:
            self.add(record)

    def add(self, record: UniProtRecord) -> None:
        facts = record_facts(record)
        for acc in facts.accessions + (facts.entry_name,):
            self._by_id.setdefault(acc.upper(), record)
        for key in {normalize_name(n) for n in facts.genes + facts.names} - {""}:
            bucket = self._by_name.setdefault(key, [])
            if record not in bucket:
                bucket.append(record)

    def __len__(self) -> int:
        return len({id(r) for r in self._by_id.values()})

    def by_accession(self, accession: str) -> UniProtRecord | None:
        return self._by_id.get(accession.strip().upper())

    def by_name(self, name: str) -> list[UniProtRecord]:
        """Records whose gene or protein name matches; a single human record is
        preferred when several species match."""
        found = self._by_name.get(normalize_name(name), [])
        if len(found) > 1:
            human = [r for r in found if record_facts(r).taxon_id == HUMAN_TAXON]
            if len(human) == 1:
                return human
        return list(found)


class OnlineUnavailable(RuntimeError):
    """UniProt could not be reached (no network, timeout)."""


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def fetch_record(
    accession: str,
    cache_dir: str | Path | None = None,
    online: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> SwissProt.Record | None:
    """The Swiss-Prot record of ``accession`` from the disk cache, else (``online``)
    from UniProt through ``Bio.ExPASy.get_sprot_raw``, then cached as
    ``cache_dir/<ACC>.txt``.

    Returns ``None`` when the record is not cached and ``online`` is false, or when
    UniProt has no such entry. Raises :class:`OnlineUnavailable` when UniProt cannot be
    reached within ``timeout`` seconds.
    """
    accession = accession.strip().upper()
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    cached = cache / f"{accession}.txt"
    if cached.exists():
        try:
            with open(cached, encoding="utf-8") as handle:
                return SwissProt.read(handle)
        except Exception as exc:
            raise ValueError(f"{cached}: cached UniProt record is not a Swiss-Prot entry: {exc}") from exc
    if not online:
        return None
    try:
        with _socket_timeout(timeout), ExPASy.get_sprot_raw(accession) as handle:
            text = handle.read()
    except ValueError:  # Biopython: HTTP 400/404, no such entry
        return None
    except (URLError, OSError) as exc:
        raise OnlineUnavailable(f"UniProt unreachable while fetching {accession}: {exc}") from exc
    record = SwissProt.read(io.StringIO(text))
    with atomic_path(cached) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return record


class _RecordSource:
    """Local index first, then the cache/online; remembers a network failure so that
    one outage costs one timeout, not one per treatment."""

    def __init__(self, index: UniProtIndex, online: bool, cache_dir: str | Path | None, timeout: float):
        self.index, self.online, self.cache_dir, self.timeout = index, online, cache_dir, timeout
        self.use_cache = online or cache_dir is not None
        self.failure: str | None = None

    def get(self, accession: str) -> UniProtRecord | None:
        record = self.index.by_accession(accession)
        if record is not None or not self.use_cache:
            return record
        try:
            record = fetch_record(accession, self.cache_dir, self.online and self.failure is None, self.timeout)
        except OnlineUnavailable as exc:
            self.failure = str(exc)
            warnings.warn(f"{exc}; going on offline", stacklevel=3)
            return None
        if record is not None:
            self.index.add(record)
        return record


# --------------------------------------------------------------------------- annotation


def _row(treatment, moa, source, evidence, accession="", gene="", needs_review=False) -> dict:
    return dict(
        treatment=treatment, moa=moa, source=source, evidence=evidence,
        uniprot_accession=accession, gene=gene, needs_review=bool(needs_review),
    )  # fmt: skip


def _read_overrides(overrides: str | Path | pd.DataFrame) -> pd.DataFrame:
    where = "overrides table" if isinstance(overrides, pd.DataFrame) else str(overrides)
    df = overrides.copy() if isinstance(overrides, pd.DataFrame) else read_table(overrides)
    if "treatment" not in df.columns:
        raise ValueError(f"{where}: needs a 'treatment' column (found {list(df.columns)})")
    if "moa" not in df.columns and "uniprot_accession" not in df.columns:
        raise ValueError(f"{where}: needs a 'moa' or a 'uniprot_accession' column (found {list(df.columns)})")
    for col in ("moa", "uniprot_accession", "evidence", "gene"):
        df[col] = df[col].fillna("").astype(str).str.strip() if col in df.columns else ""
    empty = df[(df["moa"] == "") & (df["uniprot_accession"] == "")]
    if len(empty):
        raise ValueError(f"{where}: row(s) {list(empty.index)} give neither 'moa' nor 'uniprot_accession'")
    df["_key"] = df["treatment"].map(normalize_name)
    dup = df["_key"][df["_key"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: several rows for the same treatment: {sorted(set(dup))}")
    return df.set_index("_key")


def _classified_row(name: str, record: UniProtRecord, how: str) -> dict:
    moa, rule_id, evidence = classify_record(record)
    facts = record_facts(record)
    review = _RULES_BY_ID[rule_id].review
    return _row(name, moa, "uniprot", f"{how}; rule {rule_id}: {evidence}",
                facts.accession, facts.gene, review)  # fmt: skip


def _curated_row(name: str, rows: pd.DataFrame, source: _RecordSource) -> dict:
    if len(rows) > 1:
        moas = sorted(set(rows["moa"]))
        listing = "; ".join(f"{r.treatment} ({r.gene or 'no gene'}, {r.uniprot_accession or 'no accession'}, {r.moa})"
                            for r in rows.itertuples())  # fmt: skip
        moa = moas[0] if len(moas) == 1 else UNCLASSIFIED
        return _row(name, moa, "curated",
                    f"ambiguous name: matches {len(rows)} curated entries: {listing}; name one in the overrides",
                    ";".join(a for a in rows["uniprot_accession"] if a), ";".join(g for g in rows["gene"] if g),
                    True)  # fmt: skip
    row = rows.iloc[0]
    evidence, review = f"curated: {row['evidence']}", False
    record = source.get(row["uniprot_accession"]) if row["uniprot_accession"] else None
    if record is not None:
        moa, rule_id, rule_evidence = classify_record(record)
        if moa not in (UNCLASSIFIED, row["moa"]):
            evidence += f"; CHECK: UniProt rule {rule_id} gives {moa} ({rule_evidence})"
            review = True
    return _row(name, row["moa"], "curated", evidence, row["uniprot_accession"], row["gene"], review)


def annotate_treatments(
    names: Iterable[str],
    uniprot: str | Path | UniProtIndex | Iterable[UniProtRecord] | None = None,
    online: bool = False,
    overrides: str | Path | pd.DataFrame | None = None,
    cache_dir: str | Path | None = None,
    metadata_moa: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> pd.DataFrame:
    """Annotate each distinct treatment name with its MoA (one row per name, first-seen order).

    ``uniprot``: Swiss-Prot/UniProt-XML file or folder (see :func:`read_uniprot`), an
    index or records. ``online``: fetch records that are needed but missing (curated
    accessions, accession-like names, accessions in ``overrides``) from UniProt, cached
    in ``cache_dir`` (default ``~/.cache/moa-features/uniprot``; the cache is also read
    offline when ``cache_dir`` is given). ``overrides``: CSV/table with ``treatment``
    and ``moa`` (and optionally ``evidence``), or ``treatment`` and
    ``uniprot_accession`` to have the rules classify that record. ``metadata_moa``:
    MoA already known from the user's metadata, by treatment name.
    Returns the columns of :data:`ANNOTATION_COLUMNS`.
    """
    if isinstance(uniprot, UniProtIndex):
        index = uniprot
    elif isinstance(uniprot, (str, Path)):
        index = UniProtIndex(read_uniprot(uniprot))
    else:
        index = UniProtIndex(uniprot or ())
    source = _RecordSource(index, online, cache_dir, timeout)
    curated = _curated_cached()
    curated_index = _build_index(curated)
    over = _read_overrides(overrides) if overrides is not None else None
    known = {normalize_name(k): str(v).strip() for k, v in (metadata_moa or {}).items()
             if isinstance(v, str) and v.strip()}  # fmt: skip

    distinct: list[str] = []
    skipped = 0
    for n in names:
        if n is None or (isinstance(n, float) and pd.isna(n)) or not str(n).strip():
            skipped += 1
        elif str(n) not in distinct:
            distinct.append(str(n))
    if skipped:
        warnings.warn(f"annotate_treatments: ignored {skipped} empty/missing treatment name(s)", stacklevel=2)

    out = []
    for name in distinct:
        key = normalize_name(name)
        matches = curated_index.lookup(name)
        if over is not None and key in over.index and over.at[key, "moa"]:
            o = over.loc[key]
            note = f": {o['evidence']}" if o["evidence"] else ""
            out.append(_row(name, o["moa"], "override", f"user override{note}",
                            o["uniprot_accession"], o["gene"]))  # fmt: skip
        elif key in known:
            row = _row(name, known[key], "metadata", "MoA given in the metadata")
            if len(matches) == 1 and curated.iloc[matches[0]]["moa"] != known[key]:
                c = curated.iloc[matches[0]]
                row.update(evidence=f"MoA given in the metadata; CHECK: curated table says {c['moa']} ({c['evidence']})",
                           uniprot_accession=c["uniprot_accession"], gene=c["gene"], needs_review=True)  # fmt: skip
            out.append(row)
        elif over is not None and key in over.index:
            acc = over.at[key, "uniprot_accession"]
            record = source.get(acc)
            if record is None:
                out.append(_row(name, UNCLASSIFIED, "unresolved",
                                f"accession {acc} from the overrides: no UniProt record "
                                f"({'not found' if online else 'not in --uniprot records; try --online'})",
                                acc, needs_review=True))  # fmt: skip
            else:
                out.append(_classified_row(name, record, f"accession {acc} from the overrides"))
        elif matches:
            out.append(_curated_row(name, curated.iloc[list(matches)], source))
        else:
            out.append(_uniprot_or_unresolved(name, key, source, online))
    table = pd.DataFrame(out, columns=list(ANNOTATION_COLUMNS))
    _flag_spelling_variants(table)
    return table


def _uniprot_or_unresolved(name: str, key: str, source: _RecordSource, online: bool) -> dict:
    if looks_like_accession(name):
        record = source.get(name)
        if record is not None:
            return _classified_row(name, record, f"UniProt entry {name.strip().upper()}")
    candidates = source.index.by_name(name)
    if len(candidates) == 1:
        return _classified_row(name, candidates[0], f"UniProt record {record_facts(candidates[0]).entry_name} "
                                                    "matched by gene/protein name")  # fmt: skip
    if len(candidates) > 1:
        listing = ", ".join(record_facts(r).entry_name for r in candidates)
        return _row(name, UNCLASSIFIED, "unresolved",
                    f"ambiguous name: matches UniProt records {listing}; name one in the overrides",
                    needs_review=True)  # fmt: skip
    where = "curated table" + (" or the UniProt records" if len(source.index) else "")
    hint = "; add it to the overrides (treatment,moa or treatment,uniprot_accession)"
    if not len(source.index) and not online:
        hint += " or give UniProt records (--uniprot)"
    if source.failure:
        hint += f"; online retrieval failed: {source.failure}"
    return _row(name, UNCLASSIFIED, "unresolved",
                f"unknown treatment: '{name}' (key '{key}') is not in the {where}{hint}", needs_review=True)


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


# --------------------------------------------------------------------------- applying


def apply_annotation(
    table: pd.DataFrame,
    annotation: pd.DataFrame,
    treatment_col: str = schema.TREATMENT,
    moa_col: str = schema.MOA,
    overwrite: bool = False,
) -> pd.DataFrame:
    """A copy of ``table`` with ``moa_col`` filled from ``annotation`` by treatment.

    Names match exactly, else after :func:`normalize_name`. Negative-control treatments
    (``EMPTY, UNTREATED, DMSO, NEGATIVE_CONTROL``) map to ``Negative control``;
    treatments absent from the annotation become ``Unclassified`` with a warning naming
    them. An existing, complete ``moa_col`` is kept unless ``overwrite``; an incomplete
    one keeps its values and only its missing entries are filled.
    """
    if treatment_col not in table.columns:
        raise KeyError(f"apply_annotation: table has no treatment column '{treatment_col}' "
                       f"(columns: {list(table.columns)[:20]})")  # fmt: skip
    for col in ("treatment", "moa"):
        if col not in annotation.columns:
            raise KeyError(f"apply_annotation: annotation table has no '{col}' column "
                           f"(columns: {list(annotation.columns)})")  # fmt: skip
    out = table.copy()
    existing = out[moa_col] if moa_col in out.columns else None
    if existing is not None and not overwrite and _complete(existing):
        return out
    exact = dict(zip(annotation["treatment"].astype(str), annotation["moa"].astype(str)))
    by_key: dict[str, set[str]] = {}
    for t, m in exact.items():
        by_key.setdefault(normalize_name(t), set()).add(m)
    negative = {normalize_name(t) for t in schema.NEGATIVE_CONTROL_TREATMENTS}

    missing: list[str] = []

    def lookup(t) -> str:
        if t is None or (isinstance(t, float) and pd.isna(t)):
            missing.append(str(t))
            return UNCLASSIFIED
        t = str(t)
        if t in exact:
            return exact[t]
        key = normalize_name(t)
        if len(by_key.get(key, ())) == 1:
            return next(iter(by_key[key]))
        if key in negative:
            return schema.NEGATIVE_CONTROL_MOA
        missing.append(t)
        return UNCLASSIFIED

    mapping = {t: lookup(t) for t in pd.unique(out[treatment_col])}
    filled = out[treatment_col].map(mapping)
    if existing is not None and not overwrite:
        keep = existing.notna() & (existing.astype(str).str.strip() != "")
        filled = existing.where(keep, filled)
    out[moa_col] = filled.astype(object)
    if missing:
        warnings.warn(
            f"apply_annotation: {len(missing)} treatment(s) absent from the annotation table, "
            f"set to '{UNCLASSIFIED}': {', '.join(sorted(missing))}",
            stacklevel=2,
        )
    return out


def _complete(column: pd.Series) -> bool:
    return bool(column.notna().all() and (column.astype(str).str.strip() != "").all())


# --------------------------------------------------------------------------- CLI


def _guess_column(df: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in df.columns), None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa-features annotate",
        description="Annotate each distinct treatment of a screen with its mechanism of action "
        "(curated table, UniProt rules, your overrides). Exit status 0 also when some treatments "
        "stay unresolved: they are listed on stderr and have needs_review=True in the output.",
    )
    p.add_argument("metadata", type=Path, help="RxRx metadata CSV (column 'treatment', or 'sirna' for RxRx1) "
                   "or a feature table (column Metadata_Treatment); CSV or Parquet")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, required=True, help="annotation table to write (.csv or .parquet)")
    p.add_argument("--uniprot", type=Path, help="Swiss-Prot flat file, UniProt XML, or a folder of records")
    p.add_argument("--online", action="store_true", help="fetch missing UniProt records (ExPASy), cached on disk")
    p.add_argument("--overrides", type=Path, help="CSV with treatment,moa[,evidence] (or treatment,uniprot_accession)")
    p.add_argument("--treatment-column", help="treatment column of METADATA (default: guessed)")
    p.add_argument("--moa-column", help="MoA column already in METADATA (default: Metadata_moa or moa if present)")
    p.add_argument("--cache-dir", type=Path, help=f"UniProt record cache (default {DEFAULT_CACHE_DIR})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="network timeout in seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    """``moa-features annotate METADATA -o treatment_moa.csv [--uniprot PATH] [--online] [--overrides CSV]``."""
    args = build_parser().parse_args(argv)
    try:
        meta = read_table(args.metadata)
        col = args.treatment_column or _guess_column(meta, TREATMENT_COLUMN_CANDIDATES)
        if col is None or col not in meta.columns:
            wanted = args.treatment_column or " or ".join(TREATMENT_COLUMN_CANDIDATES)
            raise ValueError(f"{args.metadata}: no treatment column {wanted} (columns: {list(meta.columns)}); "
                             "name it with --treatment-column")  # fmt: skip
        moa_col = args.moa_column or _guess_column(meta, MOA_COLUMN_CANDIDATES)
        if moa_col is not None and moa_col not in meta.columns:
            raise ValueError(f"{args.metadata}: no MoA column '{moa_col}' (columns: {list(meta.columns)})")
        known = None
        if moa_col is not None:
            pairs = meta[[col, moa_col]].dropna().drop_duplicates()
            known = dict(zip(pairs[col].astype(str), pairs[moa_col].astype(str)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = annotate_treatments(
                meta[col].tolist(), uniprot=args.uniprot, online=args.online, overrides=args.overrides,
                cache_dir=args.cache_dir, metadata_moa=known, timeout=args.timeout,
            )  # fmt: skip
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        write_table(table, args.output)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = table["source"].value_counts()
    summary = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in SOURCES)
    print(f"annotated {len(table)} treatments from column '{col}' ({summary}); "
          f"{int(table['needs_review'].sum())} need review -> {args.output}", file=sys.stderr)  # fmt: skip
    unresolved = table.loc[table["source"] == "unresolved", "treatment"].tolist()
    if unresolved:
        print(f"warning: {len(unresolved)} treatment(s) unresolved (moa '{UNCLASSIFIED}', needs_review=True): "
              f"{', '.join(unresolved)}; add them to an --overrides CSV (treatment,moa)", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
