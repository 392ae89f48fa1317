"""Ordered classification rules: a UniProt record -> MoA class, pathway and action.

The first rule of :data:`RULES` that fires gives the class; its evidence (the family line,
keyword, GO term or gene name that fired) is kept. Rules name a ``pathway`` and ``action``
only where the rule itself determines them (a chemokine acts on a GPCR); otherwise they are
left empty for a curator to fill.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from moa_features.annotate.curated import UNCLASSIFIED
from moa_features.annotate.uniprot import UniProtFacts, UniProtRecord, record_facts


@dataclass(frozen=True)
class Rule:
    """One classification rule: ``test(facts)`` returns the evidence when it fires.

    ``review``: whether an annotation made by this rule should still be reviewed
    (weak rules: gene-name patterns, broad GO terms, and every ``Unclassified`` reason).
    ``pathway`` and ``action``: what the rule determines about them (``""`` when it does not).
    """

    id: str
    moa: str
    description: str
    test: Callable[[UniProtFacts], str | None]
    review: bool = False
    pathway: str = ""
    action: str = ""


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


_RTK, _JAK, _SMAD, _TNFR, _MYD88 = (
    "RTK",
    "JAK–STAT (cytokine receptor)",
    "SMAD (TGF-β superfamily)",
    "NF-κB/TNFR",
    "IL-1R/TLR–MyD88",
)
_AG, _ANT, _MOD = "agonist", "antagonist", "modulator"

#: Ordered rule list: the first rule that fires gives the class. Specific families
#: first (TNF ligands and chemokines also carry the generic ``Cytokine`` keyword),
#: then keywords, GO molecular-function terms, gene-name patterns, and finally the
#: reasons for ``Unclassified``. ``Immunoglobulin domain`` (HLA, receptors) is not
#: ``Immunoglobulin``; an ``EGF-like domain`` (t-PA) is not a growth factor. Growth-factor
#: families are split by the receptor they act on (RTK, SMAD, Hedgehog, JAK–STAT).
# Left unformatted (skip marker on the closing paren): one rule per line pair reads as a table.
RULES: tuple[Rule, ...] = (
    Rule("family:tnf", "TNF ligand", "tumor necrosis factor family", _family(r"tumor necrosis factor family"),
         pathway=_TNFR, action=_AG),
    Rule("family:chemokine", "GPCR agonist", "intercrine (chemokine) families", _family(r"intercrine"),
         pathway="GPCR", action=_AG),
    Rule("family:wnt", "Wnt agonist", "Wnt family (canonical or not depends on the Wnt)", _family(r"^Wnt family"),
         action=_AG, review=True),
    Rule("family:r-spondin", "Wnt agonist", "R-spondin family", _family(r"R-spondin family"),
         pathway="canonical Wnt", action=_AG),
    Rule("family:dickkopf", "Wnt antagonist", "dickkopf family (DKK-3 is the exception: curated)",
         _family(r"dickkopf family"), pathway="canonical Wnt", action=_ANT),
    Rule("family:sfrp-sclerostin", "Wnt antagonist", "sFRP and sclerostin families",
         _family(r"secreted frizzled-related protein|sclerostin family"), pathway="canonical Wnt", action=_ANT),
    Rule("family:interleukin", "Interleukin", "IL-n / interleukin families (not receptors; receptor logic varies)",
         _family(r"\bIL-\d+|interleukin")),
    Rule("family:interferon", "Interferon", "interferon families (not receptors)", _family(r"interferon"),
         pathway=_JAK, action=_AG),
    Rule("family:growth-factor-smad", "Growth factor", "TGF-beta family (SMAD)", _family(r"TGF-beta family"),
         pathway=_SMAD, action=_AG),
    Rule("family:growth-factor-rtk", "Growth factor", "PDGF/VEGF, heparin-binding (FGF), NGF-beta families (RTK)",
         _family(r"PDGF/VEGF growth factor family|heparin-binding growth factors family|NGF-beta family"),
         pathway=_RTK, action=_AG),
    Rule("family:growth-factor-hedgehog", "Growth factor", "hedgehog family", _family(r"hedgehog family"),
         pathway="Hedgehog", action=_AG),
    Rule("family:growth-factor-jak", "Growth factor", "EPO/TPO family (cytokine receptors)", _family(r"EPO/TPO family"),
         pathway=_JAK, action=_AG),
    Rule("family:growth-factor-other", "Growth factor", "pleiotrophin family", _family(r"pleiotrophin family"),
         pathway="other", action=_AG),
    Rule("family:ephrin", "Tyrosine kinase receptor agonist", "ephrin family", _family(r"^ephrin family"),
         pathway=_RTK, action=_AG),
    Rule("family:defensin", "Antimicrobial peptide", "defensin and cathelicidin families",
         _family(r"defensin family|cathelicidin family"), action=_MOD),
    Rule("keyword:antimicrobial", "Antimicrobial peptide", "keyword Antimicrobial", _keyword("Antimicrobial"),
         action=_MOD),
    Rule("keyword:toxin", "Virulence factor", "keyword Toxin or Virulence", _keyword("Toxin", "Virulence"),
         pathway="other", action=_MOD),
    Rule("keyword:lectin", "Lectin", "keyword Lectin", _keyword("Lectin"), action=_MOD),
    Rule("keyword:complement", "Complement protein", "keyword Complement pathway / Complement alternate pathway",
         _keyword("Complement pathway", "Complement alternate pathway"), pathway="complement", action=_MOD),
    Rule("keyword:immunoglobulin", "Immunoglobulin", "keyword Immunoglobulin, Immunoglobulin C/V region",
         _keyword("Immunoglobulin", "Immunoglobulin C region", "Immunoglobulin V region"), pathway="other",
         action=_MOD),
    Rule("keyword:growth-factor", "Growth factor", "keyword Growth factor", _keyword("Growth factor"), action=_AG),
    Rule("go:chemokine", "GPCR agonist", "GO chemokine activity", _go(r"chemokine activity", "GO:0008009"),
         pathway="GPCR", action=_AG),
    Rule("go:tnf", "TNF ligand", "GO tumor necrosis factor receptor binding",
         _go(r"tumor necrosis factor receptor binding", "GO:0005164"), pathway=_TNFR, action=_AG),
    Rule("go:interleukin", "Interleukin", "GO interleukin-n receptor binding",
         _go(r"interleukin-\d+[a-z]? receptor binding")),
    Rule("go:interferon", "Interferon", "GO interferon receptor binding",
         _go(r"(type I )?interferon(-gamma)? receptor binding"), pathway=_JAK, action=_AG),
    Rule("go:frizzled", "Wnt agonist", "GO frizzled binding", _go(r"frizzled binding", "GO:0005109"), review=True),
    Rule("go:growth-factor", "Growth factor", "GO growth factor activity", _go(r"growth factor activity", "GO:0008083"),
         action=_AG),
    Rule("go:ephrin", "Tyrosine kinase receptor agonist", "GO ephrin receptor binding", _go(r"ephrin receptor binding"),
         pathway=_RTK, action=_AG),
    Rule("go:kinase-activator", "Protein kinase activator", "GO protein kinase activator activity",
         _go(r"protein kinase activator activity", "GO:0030295"), pathway="other", action=_AG),
    Rule("go:gpcr-binding", "GPCR agonist", "GO G protein-coupled receptor binding",
         _go(r"G protein-coupled receptor binding", "GO:0001664"), review=True, pathway="GPCR"),
    Rule("gene:interleukin", "Interleukin", "gene IL<n>[A-F]", _gene(r"IL\d+[A-F]?"), review=True),
    Rule("gene:chemokine", "GPCR agonist", "gene CCL/CXCL/XCL/CX3CL<n>", _gene(r"(CCL|CXCL|XCL|CX3CL)\d+"), review=True,
         pathway="GPCR", action=_AG),
    Rule("gene:tnfsf", "TNF ligand", "gene TNFSF<n>", _gene(r"TNFSF\d+[A-Z]?"), review=True, pathway=_TNFR,
         action=_AG),
    Rule("gene:wnt", "Wnt agonist", "gene WNT<n>", _gene(r"WNT\d+[A-Z]?"), review=True, action=_AG),
    Rule("gene:wnt-antagonist", "Wnt antagonist", "gene DKK/SFRP/FRZB/WIF1/SOST",
         _gene(r"DKK[1-4]|SFRP[1-5]|FRZB|WIF1|SOST|SOSTDC1"), review=True),
    Rule("gene:b7", "B7 ligand", "gene of a B7 family ligand",
         _gene(r"CD80|CD86|CD274|PDCD1LG2|ICOSLG|CD276|VTCN1|NCR3LG1"), review=True, pathway="other", action=_AG),
    Rule("gene:interferon", "Interferon", "gene IFN<A,B,G,K,L,W,E><n>", _gene(r"IFN[ABGKLWE]\d*"), review=True,
         pathway=_JAK, action=_AG),
    Rule("gene:complement", "Complement protein", "gene of a complement component",
         _gene(r"C1Q[ABC]|C[1-9]|C1[RS]|C4[AB]|C8[ABG]|CF[BDHIP]"), review=True, pathway="complement"),
    Rule("gene:defensin", "Antimicrobial peptide", "gene DEFA/DEFB<n>, CAMP", _gene(r"DEF[AB]\d+[A-Z]?|CAMP"),
         review=True, action=_MOD),
    Rule("gene:growth-factor", "Growth factor", "gene FGF/BMP/GDF/VEGF/PDGF/IGF",
         _gene(r"FGF\d+|BMP\d+|GDF\d+|VEGF[A-D]|PDGF[A-D]|IGF[12]"), review=True, action=_AG),
    Rule("gene:ephrin", "Tyrosine kinase receptor agonist", "gene EFNA/EFNB<n>", _gene(r"EFN[AB]\d"), review=True,
         pathway=_RTK, action=_AG),
    Rule("unclassified:receptor", UNCLASSIFIED, "receptor (keyword Receptor / G-protein coupled receptor)",
         _receptor, review=True),
    Rule("unclassified:cytokine", UNCLASSIFIED, "keyword Cytokine without a more specific rule",
         _cytokine_without_family, review=True),
    Rule("unclassified:no-rule", UNCLASSIFIED, "no rule matched", _nothing_matched, review=True),
)  # fmt: skip
RULES_BY_ID = {r.id: r for r in RULES}


def classify_record(record: UniProtRecord) -> tuple[str, str, str]:
    """Classify one UniProt record by the first rule of :data:`RULES` that fires.

    Parameters
    ----------
    record : Bio.SwissProt.Record or Bio.SeqRecord.SeqRecord
        See :func:`~moa_features.annotate.uniprot.record_facts`.

    Returns
    -------
    tuple of str
        ``(moa, rule id, evidence)``; ``moa`` is ``"Unclassified"`` with the reason in
        ``evidence`` when no class rule fires. ``RULES_BY_ID[rule id]`` gives the rule's
        ``pathway``, ``action`` and ``review``.
    """
    facts = record_facts(record)
    for rule in RULES:
        evidence = rule.test(facts)
        if evidence:
            return rule.moa, rule.id, evidence
    raise AssertionError("the last rule always fires")
