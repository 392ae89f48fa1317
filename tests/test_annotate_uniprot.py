"""MoA annotation from UniProt records: parsing real Swiss-Prot/UniProt-XML files, the rules, the cache.

Needs Biopython (an optional extra): skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SwissProt = pytest.importorskip("Bio.SwissProt", reason="Biopython (the 'uniprot' extra) is not installed")

from moa_features import annotate as A  # noqa: E402
from moa_features.annotate.rules import RULES_BY_ID  # noqa: E402

UNIPROT = Path(__file__).resolve().parent / "data" / "uniprot"


@pytest.fixture(scope="module")
def records() -> dict[str, object]:
    """The real Swiss-Prot / UniProt-XML records of tests/data/uniprot, by entry name."""
    return {A.record_facts(r).entry_name: r for r in A.read_uniprot(UNIPROT)}


# ------------------------------------------------------------------ UniProt rules on real records


EXPECTED = {
    # entry name: (moa, rule id)
    "5HT4R_HUMAN": (A.UNCLASSIFIED, "unclassified:receptor"),  # a GPCR, not a GPCR agonist
    "LSHR_RAT": (A.UNCLASSIFIED, "unclassified:receptor"),
    "CLD1_HUMAN": (A.UNCLASSIFIED, "unclassified:receptor"),  # keyword Receptor (virus entry)
    "HLAA_HUMAN": (A.UNCLASSIFIED, "unclassified:no-rule"),  # Immunoglobulin domain != Immunoglobulin
    "TPA_HUMAN": (A.UNCLASSIFIED, "unclassified:no-rule"),  # EGF-like domain != growth factor
    "GRN_HUMAN": ("Growth factor", "go:growth-factor"),  # keyword Cytokine + GO growth factor activity
    "IVBKI_DENPO": ("Virulence factor", "keyword:toxin"),  # dendrotoxin
    "29C0_ANCSP": ("Virulence factor", "keyword:toxin"),  # UniProt XML record
    "FLP13_CAEEL": (A.UNCLASSIFIED, "unclassified:no-rule"),  # UniProt XML, neuropeptide
    "CHDH_HUMAN": (A.UNCLASSIFIED, "unclassified:no-rule"),
}


def test_real_records_parse(records):
    assert len(records) == 14
    tpa = A.record_facts(records["TPA_HUMAN"])
    assert tpa.accession == "P00750" and tpa.gene == "PLAT" and tpa.taxon_id == "9606"
    assert "peptidase S1 family" in tpa.families
    assert ("GO:0004252", "serine-type endopeptidase activity") in tpa.go_functions
    xml = A.record_facts(records["29C0_ANCSP"])
    assert xml.accession == "P84001" and "Toxin" in xml.keywords


@pytest.mark.parametrize("entry", sorted(EXPECTED))
def test_rules_give_documented_class(records, entry):
    moa, rule_id, evidence = A.classify_record(records[entry])
    assert (moa, rule_id) == EXPECTED[entry], evidence
    assert evidence
    if moa == A.UNCLASSIFIED:
        assert RULES_BY_ID[rule_id].review


def test_rule_list_is_documented_and_ordered():
    ids = [r.id for r in A.RULES]
    assert len(ids) == len(set(ids))
    assert ids[-1] == "unclassified:no-rule"
    assert {r.moa for r in A.RULES} <= set(A.MOA_CLASSES) | {A.UNCLASSIFIED}
    kinds = [i.split(":")[0] for i in ids]
    order = ["family", "keyword", "go", "gene", "unclassified"]
    assert kinds == sorted(kinds, key=order.index)


def _record(**fields) -> SwissProt.Record:
    """A Swiss-Prot record with only the fields the rules read (constructed known answers)."""
    rec = SwissProt.Record()
    rec.entry_name, rec.accessions = fields.get("entry", "TEST_HUMAN"), ["Q00000"]
    rec.gene_name = [{"Name": fields["gene"]}] if "gene" in fields else []
    rec.keywords = fields.get("keywords", [])
    rec.comments = [f"SIMILARITY: Belongs to the {fam}." for fam in fields.get("families", [])]
    rec.cross_references = [("GO", i, f"F:{t}", "IEA:InterPro") for i, t in fields.get("go", [])]
    rec.description = "RecName: Full=Test protein;"
    rec.taxonomy_id = ["9606"]
    return rec


@pytest.mark.parametrize(
    "fields, expected",
    [
        (dict(families=["tumor necrosis factor family"], keywords=["Cytokine"]), ("TNF ligand", "family:tnf")),
        (
            dict(families=["intercrine alpha (chemokine CxC) family"], keywords=["Cytokine"]),
            ("GPCR agonist", "family:chemokine"),
        ),
        (dict(families=["IL-6 superfamily"], keywords=["Cytokine"]), ("Interleukin", "family:interleukin")),
        (
            dict(families=["interleukin-1 receptor family"], keywords=["Receptor"]),
            (A.UNCLASSIFIED, "unclassified:receptor"),
        ),
        (dict(families=["Wnt family"]), ("Wnt agonist", "family:wnt")),
        (dict(families=["dickkopf family"]), ("Wnt antagonist", "family:dickkopf")),
        (
            dict(families=["TGF-beta family"], keywords=["Growth factor"]),
            ("Growth factor", "family:growth-factor-smad"),
        ),
        (
            dict(families=["beta-defensin family"], keywords=["Antimicrobial"]),
            ("Antimicrobial peptide", "family:defensin"),
        ),
        (dict(keywords=["Lectin", "Complement pathway"]), ("Lectin", "keyword:lectin")),
        (dict(keywords=["Complement alternate pathway"]), ("Complement protein", "keyword:complement")),
        (dict(keywords=["Immunoglobulin C region"]), ("Immunoglobulin", "keyword:immunoglobulin")),
        (dict(keywords=["Immunoglobulin domain", "Receptor"]), (A.UNCLASSIFIED, "unclassified:receptor")),
        (dict(go=[("GO:0008009", "chemokine activity")]), ("GPCR agonist", "go:chemokine")),
        (dict(go=[("GO:0005138", "interleukin-6 receptor binding")]), ("Interleukin", "go:interleukin")),
        (dict(gene="CD274"), ("B7 ligand", "gene:b7")),
        (dict(gene="Il17f"), ("Interleukin", "gene:interleukin")),
        (dict(gene="IL6R", keywords=["Receptor"]), (A.UNCLASSIFIED, "unclassified:receptor")),
        (dict(gene="TNFRSF1A"), (A.UNCLASSIFIED, "unclassified:no-rule")),
        (dict(keywords=["Cytokine"]), (A.UNCLASSIFIED, "unclassified:cytokine")),
    ],
)
def test_rules_on_constructed_records(fields, expected):
    moa, rule_id, _ = A.classify_record(_record(**fields))
    assert (moa, rule_id) == expected


def test_unknown_name_found_in_uniprot_records_is_classified():
    table = A.annotate_treatments(["Granulins", "dendrotoxin-K", "P00750", "HTR4"], uniprot=UNIPROT)
    t = table.set_index("treatment")
    assert (t["source"] == "uniprot").all()
    assert t.loc["Granulins", "moa"] == "Growth factor" and t.loc["Granulins", "gene"] == "GRN"
    assert t.loc["dendrotoxin-K", "moa"] == "Virulence factor"
    assert t.loc["P00750", "moa"] == A.UNCLASSIFIED and t.loc["P00750", "needs_review"]
    assert "unclassified:receptor" in t.loc["HTR4", "evidence"]


def test_curated_entry_is_cross_checked_against_its_record(tmp_path):
    """A curated class that the record's rules contradict is kept but flagged."""
    grn = [b for b in (UNIPROT / "multi_ex.txt").read_text().split("//\n") if "GRN_HUMAN" in b][0] + "//\n"
    # GRN's real record (rules: Growth factor) cached under TNF's accession
    (tmp_path / "P01375.txt").write_text(grn.replace("AC   P28799;", "AC   P01375; P28799;", 1))
    (tmp_path / "P00750.txt").write_text((UNIPROT / "multi_ex.txt").read_text().split("//\n")[0] + "//\n")
    table = A.annotate_treatments(["TNF-alpha", "EGF"], cache_dir=tmp_path).set_index("treatment")
    assert table.loc["TNF-alpha", "moa"] == "TNF ligand"
    assert table.loc["TNF-alpha", "needs_review"]
    assert "CHECK: UniProt rule go:growth-factor gives Growth factor" in table.loc["TNF-alpha", "evidence"]
    assert not table.loc["EGF", "needs_review"]  # no record for P01133 in the cache: nothing to check


# ------------------------------------------------------------------ online / cache


def test_cache_is_used_without_network(tmp_path):
    grn = [b for b in (UNIPROT / "multi_ex.txt").read_text().split("//\n") if "GRN_HUMAN" in b][0] + "//\n"
    (tmp_path / "P28799.txt").write_text(grn)
    record = A.fetch_record("p28799", cache_dir=tmp_path, online=True)
    assert record.entry_name == "GRN_HUMAN"
    table = A.annotate_treatments(["P28799"], online=True, cache_dir=tmp_path)
    assert table.loc[0, "moa"] == "Growth factor" and table.loc[0, "source"] == "uniprot"


def test_network_failure_is_a_clear_warning_not_a_hang(tmp_path, monkeypatch):
    # the real Biopython call, sent through a proxy on a closed local port: fails at once,
    # with or without internet on the test machine
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(A.OnlineUnavailable, match="P01133"):
        A.fetch_record("P01133", cache_dir=tmp_path, online=True, timeout=2)
    with pytest.warns(UserWarning, match="UniProt unreachable"):
        table = A.annotate_treatments(["Q99999", "O99999"], online=True, cache_dir=tmp_path, timeout=2)
    assert (table["source"] == "unresolved").all()
    assert "online retrieval failed" in table.loc[0, "evidence"]
    assert not list(tmp_path.iterdir())


def test_offline_default_never_fetches(tmp_path):
    assert A.fetch_record("P01133", cache_dir=tmp_path, online=False) is None


def test_rule_pathway_and_action_are_in_the_vocabulary():
    for rule in A.RULES:
        assert rule.pathway in A.PATHWAYS + ("",), rule.id
        assert rule.action in A.ACTIONS + ("",), rule.id


def test_uniprot_row_carries_the_rule_pathway(records):
    table = A.annotate_treatments(["dendrotoxin-K"], uniprot=list(records.values()))
    row = table.iloc[0]
    assert (row["moa"], row["pathway"], row["action"], row["class_kind"]) == (
        "Virulence factor",
        "other",
        "modulator",
        "family",
    )


def test_override_with_accession_is_classified_by_the_rules(tmp_path):
    over = tmp_path / "my_edits.csv"
    pd.DataFrame({"treatment": ["LSH receptor"], "uniprot_accession": ["P16235"]}).to_csv(over, index=False)
    t = A.annotate_treatments(["LSH receptor", "EGF"], uniprot=UNIPROT, overrides=over).set_index("treatment")
    assert t.loc["LSH receptor", "source"] == "uniprot"
    assert t.loc["LSH receptor", "moa"] == A.UNCLASSIFIED
    assert "unclassified:receptor" in t.loc["LSH receptor", "evidence"]
    assert t.loc["EGF", "source"] == "curated"
