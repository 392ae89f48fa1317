"""MoA annotation: name normalisation, curated table, UniProt rules on real records, CLI."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from Bio import SwissProt

from moa_features import annotate as A
from moa_features import schema

UNIPROT = Path(__file__).resolve().parent / "data" / "uniprot"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

DEMO = {
    "EGF": "Growth factor", "FGF-2": "Growth factor", "VEGF-A": "Growth factor", "HGF": "Growth factor",
    "IL-1B": "Interleukin", "IL-6": "Interleukin", "IL-17A": "Interleukin",
    "TNF-alpha": "TNF ligand", "TRAIL": "TNF ligand", "CXCL12": "GPCR agonist",
    "Wnt-3a": "Wnt agonist", "DKK-1": "Wnt antagonist", "EMPTY": "Negative control",
}  # fmt: skip


@pytest.fixture(scope="module")
def records() -> dict[str, object]:
    """The real Swiss-Prot / UniProt-XML records of tests/data/uniprot, by entry name."""
    return {A.record_facts(r).entry_name: r for r in A.read_uniprot(UNIPROT)}


# ------------------------------------------------------------------ normalize_name


@pytest.mark.parametrize(
    "spellings",
    [
        ["TNF-alpha", "TNF-α", "TNFa", "TNF alpha", "tnf_ALPHA", "TNF-Α"],
        ["IL-1B", "IL-1β", "IL-1ß", "IL1B", "il 1 beta", "IL-1beta"],
        ["IFN-gamma", "IFN-γ", "IFNG", "IFN gamma"],
        ["EGF", "EGF 10 ng/mL", "EGF_100ng/ml", "EGF (50 ng/ml)", "rhEGF", "Recombinant human EGF", "EGF 1.5 µg/mL"],
        ["CXCL12", "CXCL12 1 uM", "CXCL12@10nM", "CXCL-12"],
    ],
)
def test_normalize_name_equates_spellings(spellings):
    assert len({A.normalize_name(s) for s in spellings}) == 1, [A.normalize_name(s) for s in spellings]


def test_normalize_name_keeps_meaningful_numbers():
    # a number without a unit is part of the name, not a concentration
    assert A.normalize_name("IL-6") != A.normalize_name("IL")
    assert A.normalize_name("FGF-2") == "fgf2"
    assert A.normalize_name("IL-1") != A.normalize_name("IL-17")
    assert A.normalize_name("Wnt-3a") == "wnt3a"
    assert A.normalize_name("4-1BBL") == "41bbl"


# ------------------------------------------------------------------ curated table


def test_curated_table_is_well_formed():
    cur = A.load_curated()
    assert list(cur.columns) == list(A.CURATED_COLUMNS)
    assert len(cur) >= 250
    assert cur["treatment"].is_unique
    assert set(cur["moa"]) <= set(A.MOA_CLASSES)
    # every class the RxRx2 analysis used is seeded
    assert set(A.MOA_CLASSES) - {"Interferon"} <= set(cur["moa"])
    assert (cur["evidence"].str.len() > 10).all()
    acc = cur["uniprot_accession"]
    assert acc[acc != ""].map(lambda a: bool(A._ACCESSION_RE.match(a))).all()
    # a row without accession says why (small molecule, or curator unsure)
    no_acc = cur[acc == ""]
    assert no_acc["evidence"].str.contains("no UniProt entry|not filled in|not a protein").all(), no_acc
    # the same accession twice only for anaphylatoxins cut from their parent protein
    dup = cur[acc.ne("") & acc.duplicated(keep=False)]
    assert set(dup["treatment"]) == {"C3", "C3a", "C5", "C5a"}


def test_curated_names_collide_only_where_declared_ambiguous():
    idx = A._build_index(A._curated_cached())
    cur = A.load_curated()
    ambiguous = {k: sorted(cur["treatment"].iloc[list(v)]) for k, v in idx.primary.items() if len(v) > 1}
    assert ambiguous == {
        "il1": ["IL-1A", "IL-1B"], "pdgf": ["PDGF-AA", "PDGF-BB"], "c4": ["C4A", "C4B"],
        "tgfb": ["TGF-beta1", "TGF-beta2", "TGF-beta3"], "ifna": ["IFN-alpha1", "IFN-alpha2"],
        "ifnl": ["IFN-lambda1", "IFN-lambda2", "IFN-lambda3"], "mip1": ["CCL3", "CCL4"],
    }  # fmt: skip


def test_demo_screen_treatments_all_resolve():
    names = list(DEMO) + ["EMPTY"]  # repeated names give one row each
    table = A.annotate_treatments(names)
    assert list(table.columns) == list(A.ANNOTATION_COLUMNS)
    assert table["treatment"].tolist() == list(DEMO)
    assert dict(zip(table["treatment"], table["moa"])) == DEMO
    assert (table["source"] == "curated").all()
    assert not table["needs_review"].any()
    assert table.set_index("treatment").loc["TNF-alpha", "uniprot_accession"] == "P01375"


def test_built_in_demo_screen_agrees_with_its_ground_truth():
    from moa_features.synthetic import TREATMENT_MOA

    table = A.annotate_treatments(list(TREATMENT_MOA))
    assert dict(zip(table["treatment"], table["moa"])) == TREATMENT_MOA


def test_unknown_treatment_is_reported_not_dropped():
    table = A.annotate_treatments(["EGF", "Frobnicin-7", "UNTREATED"]).set_index("treatment")
    assert table.loc["Frobnicin-7", "moa"] == A.UNCLASSIFIED
    assert table.loc["Frobnicin-7", "source"] == "unresolved"
    assert table.loc["Frobnicin-7", "needs_review"]
    assert "Frobnicin-7" in table.loc["Frobnicin-7", "evidence"]
    assert table.loc["UNTREATED", "moa"] == schema.NEGATIVE_CONTROL_MOA


def test_ambiguous_name_is_flagged_not_merged():
    table = A.annotate_treatments(["IL-1", "MIP-1", "IL-1alpha"]).set_index("treatment")
    il1 = table.loc["IL-1"]
    assert il1["needs_review"] and "ambiguous" in il1["evidence"]
    assert il1["moa"] == "Interleukin"  # both candidates agree on the class
    assert il1["uniprot_accession"] == "P01583;P01584"
    assert table.loc["IL-1alpha", "gene"] == "IL1A" and not table.loc["IL-1alpha", "needs_review"]


def test_spelling_variants_in_one_screen_are_flagged():
    table = A.annotate_treatments(["TNF-alpha", "TNFa", "EGF"]).set_index("treatment")
    assert table.loc["TNFa", "moa"] == table.loc["TNF-alpha", "moa"] == "TNF ligand"
    assert table.loc["TNFa", "needs_review"] and "same entry" in table.loc["TNFa", "evidence"]
    assert not table.loc["EGF", "needs_review"]


def test_overrides_win_and_are_recorded(tmp_path):
    over = tmp_path / "my_edits.csv"
    pd.DataFrame(
        {"treatment": ["Sonic-Hedgehog", "Frobnicin-7", "LSH receptor"],
         "moa": ["Hedgehog agonist", "Lectin", ""],
         "evidence": ["lab convention", "", ""],
         "uniprot_accession": ["", "", "P16235"]}
    ).to_csv(over, index=False)  # fmt: skip
    table = A.annotate_treatments(
        ["Sonic hedgehog", "Frobnicin-7", "LSH receptor", "EGF"], uniprot=UNIPROT, overrides=over
    ).set_index("treatment")
    assert table.loc["Sonic hedgehog", "moa"] == "Hedgehog agonist"
    assert table.loc["Sonic hedgehog", "source"] == "override"
    assert "lab convention" in table.loc["Sonic hedgehog", "evidence"]
    assert table.loc["Frobnicin-7", "source"] == "override"
    # an accession alone lets the rules classify that record
    assert table.loc["LSH receptor", "source"] == "uniprot"
    assert table.loc["LSH receptor", "moa"] == A.UNCLASSIFIED
    assert "unclassified:receptor" in table.loc["LSH receptor", "evidence"]
    assert table.loc["EGF", "source"] == "curated"


def test_bad_overrides_name_the_file_and_column(tmp_path):
    over = tmp_path / "edits.csv"
    pd.DataFrame({"name": ["EGF"], "moa": ["Growth factor"]}).to_csv(over, index=False)
    with pytest.raises(ValueError, match=r"edits\.csv.*'treatment'"):
        A.annotate_treatments(["EGF"], overrides=over)


def test_metadata_moa_is_used_and_disagreement_flagged():
    table = A.annotate_treatments(
        ["EGF", "IL-6", "Mystery"], metadata_moa={"EGF": "Growth factor", "IL-6": "Growth factor", "Mystery": "Lectin"}
    ).set_index("treatment")
    assert (table["source"] == "metadata").all()
    assert not table.loc["EGF", "needs_review"]
    assert table.loc["IL-6", "needs_review"] and "Interleukin" in table.loc["IL-6", "evidence"]


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
        assert A._RULES_BY_ID[rule_id].review


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
        (dict(families=["intercrine alpha (chemokine CxC) family"], keywords=["Cytokine"]),
         ("GPCR agonist", "family:chemokine")),
        (dict(families=["IL-6 superfamily"], keywords=["Cytokine"]), ("Interleukin", "family:interleukin")),
        (dict(families=["interleukin-1 receptor family"], keywords=["Receptor"]),
         (A.UNCLASSIFIED, "unclassified:receptor")),
        (dict(families=["Wnt family"]), ("Wnt agonist", "family:wnt")),
        (dict(families=["dickkopf family"]), ("Wnt antagonist", "family:dickkopf")),
        (dict(families=["TGF-beta family"], keywords=["Growth factor"]), ("Growth factor", "family:growth-factor")),
        (dict(families=["beta-defensin family"], keywords=["Antimicrobial"]),
         ("Antimicrobial peptide", "family:defensin")),
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


# ------------------------------------------------------------------ apply_annotation


def test_apply_annotation_fills_and_warns():
    ann = A.annotate_treatments(["EGF", "TNF-alpha"])
    table = pd.DataFrame({schema.TREATMENT: ["EGF", "TNFa", "EMPTY", "DMSO", "Mystery", "EGF"], "x": range(6)})
    with pytest.warns(UserWarning, match="Mystery"):
        out = A.apply_annotation(table, ann)
    assert out[schema.MOA].tolist() == [
        "Growth factor", "TNF ligand", "Negative control", "Negative control", A.UNCLASSIFIED, "Growth factor"
    ]  # fmt: skip
    assert schema.MOA not in table.columns  # a copy
    assert out["x"].tolist() == list(range(6))


def test_apply_annotation_keeps_complete_column_unless_told():
    ann = A.annotate_treatments(["EGF"])
    table = pd.DataFrame({schema.TREATMENT: ["EGF", "EGF"], schema.MOA: ["Mine", "Mine"]})
    assert A.apply_annotation(table, ann)[schema.MOA].tolist() == ["Mine", "Mine"]
    assert A.apply_annotation(table, ann, overwrite=True)[schema.MOA].tolist() == ["Growth factor"] * 2
    partial = pd.DataFrame({schema.TREATMENT: ["EGF", "EGF"], schema.MOA: ["Mine", None]})
    assert A.apply_annotation(partial, ann)[schema.MOA].tolist() == ["Mine", "Growth factor"]


def test_apply_annotation_names_missing_column():
    with pytest.raises(KeyError, match="Metadata_Treatment"):
        A.apply_annotation(pd.DataFrame({"treatment": ["EGF"]}), A.annotate_treatments(["EGF"]))


# ------------------------------------------------------------------ CLI


def test_cli_rxrx1_metadata_and_demo_names(tmp_path, capsys):
    """Real RxRx1 metadata (column ``sirna``, all UNTREATED) and a screen with an unknown name."""
    out = tmp_path / "treatment_moa.csv"
    assert A.main([str(SHARED / "rxrx1" / "metadata.csv"), "-o", str(out)]) == 0
    t = pd.read_csv(out)
    assert t["moa"].tolist() == ["Negative control"] and t["treatment"].tolist() == ["UNTREATED"]
    assert "column 'sirna'" in capsys.readouterr().err

    meta = tmp_path / "metadata.csv"
    pd.DataFrame({"treatment": list(DEMO) * 2 + ["Frobnicin-7"], "plate": 1}).to_csv(meta, index=False)
    assert A.main([str(meta), "-o", str(out), "--uniprot", str(UNIPROT)]) == 0
    err = capsys.readouterr().err
    t = pd.read_csv(out)
    assert len(t) == len(DEMO) + 1
    assert re.search(r"unresolved.*Frobnicin-7", err)
    assert t.set_index("treatment").loc["Frobnicin-7", "needs_review"]


def test_cli_errors_name_the_file(tmp_path, capsys):
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"well": ["B02"]}).to_csv(meta, index=False)
    assert A.main([str(meta), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "meta.csv" in err and "--treatment-column" in err


def test_module_entry_point(tmp_path):
    meta = tmp_path / "features.csv"
    pd.DataFrame({schema.TREATMENT: ["IL-6", "EMPTY"]}).to_csv(meta, index=False)
    out = tmp_path / "a.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "moa_features.annotate", str(meta), "-o", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(out)["moa"].tolist() == ["Interleukin", "Negative control"]


def test_bbbc021_compound_names_resolve_or_are_reported():
    """Small-molecule names of a real MoA benchmark are mostly outside the curated table:
    each is reported (never guessed), apart from DMSO and bryostatin (a PKC activator)."""
    moa = pd.read_csv(SHARED / "bbbc021" / "BBBC021_v1_moa.csv")
    names = sorted(moa["compound"].unique())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = A.annotate_treatments(names).set_index("treatment")
    assert table.loc["DMSO", "moa"] == "Negative control"
    assert table.loc["bryostatin", "moa"] == "Protein kinase activator"
    rest = table.drop(index=["DMSO", "bryostatin"])
    assert len(rest) == len(names) - 2
    assert (rest["moa"] == A.UNCLASSIFIED).all() and rest["needs_review"].all()
