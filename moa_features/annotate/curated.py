"""The curated treatment table shipped with the package and its vocabularies.

``moa_features/data/treatment_moa.csv`` has one row per treatment: its name, ``|``-separated
aliases, UniProt accession(s), gene(s), and five annotation levels:

- ``moa``: the original RxRx2 analysis's 15 classes (plus ``Interferon`` and
  ``Negative control``), kept so that results compare with the original;
- ``receptor``: ``;``-separated HGNC symbols of the receptor or molecular target
  (``FZD*`` stands for members of a family);
- ``pathway``: one of :data:`PATHWAYS`, the signalling route the receptor uses;
- ``action``: one of :data:`ACTIONS`, what the treatment does at that receptor;
- ``caveat``: species or cell-type facts that change the expected phenotype.

``class_kind`` (:data:`CLASS_KIND`) follows from ``moa``: ``mechanism`` when the class names a
target and an action, ``family`` when it names a protein family. Antagonists stay in their
original ``moa`` class with ``action=antagonist`` (the original's users compare on those
classes); the ``mechanism`` level (``pathway`` + ``action``, see :func:`mechanism`) keeps them
apart from the agonists.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from moa_features import schema
from moa_features.annotate.names import ACCESSION_RE, is_faithful, name_variants, normalize_name

UNCLASSIFIED = "Unclassified"
NEGATIVE_CONTROL = schema.NEGATIVE_CONTROL_MOA
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
    NEGATIVE_CONTROL,
)
#: Whether each ``moa`` class names a mechanism (target and action) or a protein family.
CLASS_KIND = {
    "GPCR agonist": "mechanism",
    "Wnt agonist": "mechanism",
    "Wnt antagonist": "mechanism",
    "STING ligand": "mechanism",
    "Tyrosine kinase receptor agonist": "mechanism",
    "Protein kinase activator": "mechanism",
    "Growth factor": "family",
    "Interleukin": "family",
    "Interferon": "family",
    "TNF ligand": "family",
    "Immunoglobulin": "family",
    "Virulence factor": "family",
    "Complement protein": "family",
    "Lectin": "family",
    "B7 ligand": "family",
    "Antimicrobial peptide": "family",
    NEGATIVE_CONTROL: "control",
}
#: Signalling routes (``pathway``), named by receptor class and main output.
PATHWAYS = (
    "RTK",
    "JAK–STAT (cytokine receptor)",
    "SMAD (TGF-β superfamily)",
    "NF-κB/TNFR",
    "IL-1R/TLR–MyD88",
    "GPCR",
    "canonical Wnt",
    "non-canonical Wnt",
    "Hedgehog",
    "Notch",
    "complement",
    "pattern recognition",
    "other",
)
ACTIONS = ("agonist", "antagonist", "modulator")
LEVELS = ("moa", "pathway", "action", "mechanism")
CURATED_COLUMNS = (
    "treatment",
    "aliases",
    "uniprot_accession",
    "gene",
    "moa",
    "receptor",
    "pathway",
    "action",
    "caveat",
    "evidence",
)


def mechanism(pathway: str, action: str) -> str:
    """The mechanism level: ``"<pathway> <action>"`` (``"GPCR agonist"``, ``"IL-1R/TLR–MyD88 antagonist"``).

    ``Negative control`` stays itself; an empty pathway or action gives ``""``.
    """
    if NEGATIVE_CONTROL in (pathway, action):
        return NEGATIVE_CONTROL
    return f"{pathway} {action}" if pathway and action else ""


def _validate(df: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in CURATED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected {list(CURATED_COLUMNS)}")
    for col, allowed in (("moa", MOA_CLASSES), ("pathway", PATHWAYS), ("action", ACTIONS)):
        ok = set(allowed) | ({NEGATIVE_CONTROL} if col != "moa" else set())
        bad = sorted(set(df[col]) - ok)
        if bad:
            raise ValueError(f"{where}: column '{col}' has unknown value(s) {bad}; expected one of {sorted(ok)}")
    for acc in df["uniprot_accession"]:
        if acc and not all(ACCESSION_RE.match(a) for a in acc.split(";")):
            raise ValueError(f"{where}: '{acc}' is not a UniProt accession (';'-separated for heterodimers)")
    return df[list(CURATED_COLUMNS)]


@lru_cache(maxsize=1)
def curated_table() -> pd.DataFrame:
    """The shipped table, validated and cached (do not modify; :func:`load_curated` gives a copy)."""
    path = resources.files("moa_features") / "data" / "treatment_moa.csv"
    with resources.as_file(path) as p:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    return _validate(df, str(path))


def load_curated() -> pd.DataFrame:
    """The curated table shipped with the package (a copy).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CURATED_COLUMNS` plus ``class_kind``; ``aliases`` is ``|``-separated;
        empty strings (not NaN) where a field does not apply (small molecules have no
        accession or gene).
    """
    df = curated_table().copy()
    df["class_kind"] = df["moa"].map(CLASS_KIND)
    return df


class NameIndex:
    """Normalised curated names -> row numbers: names and aliases first, then gene symbols."""

    def __init__(self, curated: pd.DataFrame):
        self.primary: dict[str, tuple[int, ...]] = {}
        self.genes: dict[str, tuple[int, ...]] = {}
        for i, row in enumerate(curated.itertuples(index=False)):
            names = [row.treatment] + [a for a in row.aliases.split("|") if a.strip()]
            for key in {normalize_name(n) for n in names} - {""}:
                self.primary[key] = self.primary.get(key, ()) + (i,)
            if row.gene and ";" not in row.gene:  # heterodimers are found by name, their subunits by gene
                gene = normalize_name(row.gene)
                self.genes[gene] = self.genes.get(gene, ()) + (i,)

    def _by_key(self, key: str) -> tuple[int, ...]:
        return self.primary.get(key) or self.genes.get(key) or ()

    def lookup(self, name: str) -> tuple[tuple[int, ...], str]:
        """Rows matching ``name`` and how: ``"name"``, ``"parts"``, ``"isoform"`` or ``""`` (none).

        Non-faithful names (:func:`~moa_features.annotate.names.is_faithful`) match nothing.
        """
        if not is_faithful(name):
            return (), ""
        rows = self._by_key(normalize_name(name))
        if rows:
            return rows, "name"
        variants = name_variants(name)
        parts = [self._by_key(k) for k, how in variants if how == "parts"]
        if parts and all(parts) and len(set(parts)) == 1:
            return parts[0], "parts"
        for key, how in variants:
            if how == "isoform" and self._by_key(key):
                return self._by_key(key), "isoform"
        return (), ""


@lru_cache(maxsize=1)
def curated_index() -> NameIndex:
    """The :class:`NameIndex` of :func:`curated_table` (cached)."""
    return NameIndex(curated_table())
