"""MoA annotation: name normalisation and matching, the curated table and its levels, resolution, apply."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from moa_features import annotate as A
from moa_features import schema
from moa_features.annotate.curated import curated_index, curated_table

DEMO = {
    "EGF": "Growth factor",
    "FGF-2": "Growth factor",
    "VEGF-A": "Growth factor",
    "HGF": "Growth factor",
    "IL-1B": "Interleukin",
    "IL-6": "Interleukin",
    "IL-17A": "Interleukin",
    "TNF-alpha": "TNF ligand",
    "TRAIL": "TNF ligand",
    "CXCL12": "GPCR agonist",
    "Wnt-3a": "Wnt agonist",
    "DKK-1": "Wnt antagonist",
    "EMPTY": "Negative control",
}


def _by_name(names, **kwargs) -> pd.DataFrame:
    return A.annotate_treatments(names, **kwargs).set_index("treatment")


# ------------------------------------------------------------------ normalize_name / is_faithful


@pytest.mark.parametrize(
    "spellings",
    [
        ["TNF-alpha", "TNF-α", "TNFa", "TNF alpha", "tnf_ALPHA", "TNF-Α"],
        ["IL-1B", "IL-1β", "IL-1ß", "IL1B", "il 1 beta", "IL-1beta"],
        ["IFN-gamma", "IFN-γ", "IFNG", "IFN gamma", "Interferon gamma", "interferon-γ"],
        ["IL-6", "Interleukin-6", "interleukin 6", "IL6"],
        ["EGF", "EGF 10 ng/mL", "EGF_100ng/ml", "EGF (50 ng/ml)", "rhEGF", "Recombinant human EGF", "EGF 1.5 µg/mL"],
        ["CXCL12", "CXCL12 1 uM", "CXCL12@10nM", "CXCL-12"],
    ],
)
def test_normalize_name_equates_spellings(spellings):
    assert len({A.normalize_name(s) for s in spellings}) == 1, [A.normalize_name(s) for s in spellings]
    assert all(A.is_faithful(s) for s in spellings)


def test_normalize_name_keeps_meaningful_numbers():
    # a number without a unit is part of the name, not a concentration
    assert A.normalize_name("IL-6") != A.normalize_name("IL")
    assert A.normalize_name("FGF-2") == "fgf2"
    assert A.normalize_name("IL-1") != A.normalize_name("IL-17")
    assert A.normalize_name("Wnt-3a") == "wnt3a"
    assert A.normalize_name("4-1BBL") == "41bbl"


@pytest.mark.parametrize("name", ["白介素", "干扰素-6", "???", "---", "123", "1-2-3", "", "IL-6 인터루킨"])
def test_lossy_names_are_not_faithful(name):
    assert not A.is_faithful(name)


# ------------------------------------------------------------------ curated table


def test_curated_table_is_well_formed():
    cur = A.load_curated()
    assert list(cur.columns) == list(A.CURATED_COLUMNS) + ["class_kind"]
    assert len(cur) >= 300
    assert cur["treatment"].is_unique
    assert set(cur["moa"]) == set(A.MOA_CLASSES)  # every original class is seeded, nothing else
    assert set(cur["pathway"]) <= set(A.PATHWAYS) | {A.NEGATIVE_CONTROL}
    assert set(cur["action"]) == set(A.ACTIONS) | {A.NEGATIVE_CONTROL}
    assert set(cur["class_kind"]) == {"mechanism", "family", "control"}
    assert (cur["evidence"].str.len() > 10).all()
    acc = cur["uniprot_accession"]
    assert acc[acc != ""].map(lambda a: all(A.names.ACCESSION_RE.match(x) for x in a.split(";"))).all()
    # heterodimers name both chains, gene for gene
    multi = cur[acc.str.contains(";")]
    assert set(multi["treatment"]) == {"IL-12", "IL-23", "IL-27", "PDGF-AB"}
    assert (multi["gene"].str.count(";") == 1).all()
    # a row without accession says why (small molecule, or curator unsure)
    no_acc = cur[acc == ""]
    assert no_acc["evidence"].str.contains("no UniProt entry|not filled in|not a protein").all(), no_acc
    # the same accession twice only for anaphylatoxins cut from their parent protein
    dup = cur[acc.ne("") & acc.duplicated(keep=False)]
    assert set(dup["treatment"]) == {"C3", "C3a", "C5", "C5a"}
    # receptors are gene symbols (FZD* etc. for a family)
    receptors = {r for rs in cur["receptor"] for r in rs.split(";") if r}
    assert all(r.rstrip("*").isalnum() and r.upper() == r for r in receptors), receptors


def test_class_kind_separates_families_from_mechanisms():
    assert {m for m, k in A.CLASS_KIND.items() if k == "family"} >= {
        "Virulence factor",
        "Complement protein",
        "Lectin",
        "Immunoglobulin",
        "B7 ligand",
    }
    assert set(A.CLASS_KIND) == set(A.MOA_CLASSES)


def test_curated_names_collide_only_where_declared_ambiguous():
    idx, cur = curated_index(), curated_table()
    ambiguous = {k: sorted(cur["treatment"].iloc[list(v)]) for k, v in idx.primary.items() if len(v) > 1}
    assert ambiguous == {
        "il1": ["IL-1A", "IL-1B"],
        "pdgf": ["PDGF-AA", "PDGF-BB"],
        "c4": ["C4A", "C4B"],
        "tgfb": ["TGF-beta1", "TGF-beta2", "TGF-beta3"],
        "ifna": ["IFN-alpha1", "IFN-alpha2"],
        "ifnl": ["IFN-lambda1", "IFN-lambda2", "IFN-lambda3"],
        "mip1": ["CCL3", "CCL4"],
    }


def test_every_class_has_several_treatments():
    """The demo picks >= 3 treatments per class: every original class has at least 4 curated names."""
    counts = curated_table().groupby("moa").size()
    assert (counts.drop(A.NEGATIVE_CONTROL) >= 4).all(), counts


# ------------------------------------------------------------------ the assignments of issue 14


@pytest.mark.parametrize(
    "name, moa, pathway, action",
    [
        ("IL-1Ra", "Interleukin", "IL-1R/TLR–MyD88", "antagonist"),
        ("IL-36Ra", "Interleukin", "IL-1R/TLR–MyD88", "antagonist"),
        ("IL-38", "Interleukin", "IL-1R/TLR–MyD88", "antagonist"),
        ("IL-1B", "Interleukin", "IL-1R/TLR–MyD88", "agonist"),
        ("IL-34", "Interleukin", "RTK", "agonist"),
        ("M-CSF", "Growth factor", "RTK", "agonist"),
        ("Insulin", "Tyrosine kinase receptor agonist", "RTK", "agonist"),
        ("IGF-2", "Growth factor", "RTK", "agonist"),
        ("GM-CSF", "Growth factor", "JAK–STAT (cytokine receptor)", "agonist"),
        ("EPO", "Growth factor", "JAK–STAT (cytokine receptor)", "agonist"),
        ("IL-3", "Interleukin", "JAK–STAT (cytokine receptor)", "agonist"),
        ("TGF-beta1", "Growth factor", "SMAD (TGF-β superfamily)", "agonist"),
        ("BMP-4", "Growth factor", "SMAD (TGF-β superfamily)", "agonist"),
        ("Activin A", "Growth factor", "SMAD (TGF-β superfamily)", "agonist"),
        ("Sonic-Hedgehog", "Growth factor", "Hedgehog", "agonist"),
        ("C3a", "Complement protein", "GPCR", "agonist"),
        ("C5a", "Complement protein", "GPCR", "agonist"),
        ("C5", "Complement protein", "complement", "modulator"),
        ("Wnt-5a", "Wnt agonist", "non-canonical Wnt", "agonist"),
        ("Wnt-5b", "Wnt agonist", "non-canonical Wnt", "agonist"),
        ("Wnt-11", "Wnt agonist", "non-canonical Wnt", "agonist"),
        ("Wnt-3a", "Wnt agonist", "canonical Wnt", "agonist"),
        ("DKK-1", "Wnt antagonist", "canonical Wnt", "antagonist"),
        ("DKK-3", "Wnt antagonist", "other", "modulator"),
        ("Angiopoietin-2", "Tyrosine kinase receptor agonist", "RTK", "antagonist"),
        ("DMXAA", "STING ligand", "pattern recognition", "agonist"),
        ("LPS", "Virulence factor", "IL-1R/TLR–MyD88", "agonist"),
        ("TNF-alpha", "TNF ligand", "NF-κB/TNFR", "agonist"),
    ],
)
def test_curated_levels(name, moa, pathway, action):
    row = _by_name([name]).loc[name]
    assert (row["moa"], row["pathway"], row["action"]) == (moa, pathway, action)
    assert row["mechanism"] == f"{pathway} {action}"
    assert row["class_kind"] == A.CLASS_KIND[moa]


def test_caveats_carry_species_and_cell_type_facts():
    t = _by_name(["DMXAA", "Angiopoietin-2", "DKK-3", "C5a", "Concanavalin A", "EGF"])
    assert "mouse but not human STING" in t.loc["DMXAA", "caveat"]
    assert "endothelial" in t.loc["Angiopoietin-2", "caveat"] and "Maisonpierre" in t.loc["Angiopoietin-2", "evidence"]
    assert "LRP5/6" in t.loc["DKK-3", "caveat"]
    assert "P01031" in t.loc["C5a", "caveat"]
    assert "w2" in t.loc["Concanavalin A", "caveat"]
    assert t.loc["EGF", "caveat"] == ""


# ------------------------------------------------------------------ name matching against the curated table


@pytest.mark.parametrize(
    "name, treatment, review",
    [
        ("CCL14a", "CCL14", False),  # isoform name used by RxRx2
        ("CXCL12b", "CXCL12", True),  # generic isoform suffix: resolved, flagged
        ("CCL15a", "CCL15", True),
        ("GCP-2", "CXCL6", False),  # alias
        ("SDF-1α", "CXCL12", False),
        ("SDF-1β", "CXCL12", False),
        ("IL-12", "IL-12", False),  # heterodimer
        ("IL-12 p70", "IL-12", False),
        ("IL-12p40", "IL-12B", False),  # subunit
        ("PDGF-AB", "PDGF-AB", False),
        ("PDGF-BB", "PDGF-BB", False),
        ("CXCL6/GCP-2", "CXCL6", False),  # vendor spellings: every part names the same entry
        ("GCP-2 (CXCL6)", "CXCL6", False),
        ("rhIL-1β 10 ng/mL", "IL-1B", False),
    ],
)
def test_curated_name_matching(name, treatment, review):
    rows, how = curated_index().lookup(name)
    assert [curated_table()["treatment"].iloc[i] for i in rows] == [treatment], how
    row = _by_name([name]).loc[name]
    assert row["source"] == "curated" and bool(row["needs_review"]) == review
    if how == "isoform":
        assert "isoform suffix" in row["evidence"]


def test_parts_that_disagree_do_not_match():
    rows, _ = curated_index().lookup("CXCL6/CXCL8")
    assert rows == ()


def test_lossy_names_never_match_the_curated_table():
    # its key "6" would otherwise be compared with every curated key
    assert curated_index().lookup("白介素-6") == ((), "")
    assert _by_name(["白介素-6"]).loc["白介素-6", "source"] == "unresolved"


# ------------------------------------------------------------------ resolution


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
    table = _by_name(["EGF", "Frobnicin-7", "UNTREATED"])
    assert table.loc["Frobnicin-7", "moa"] == A.UNCLASSIFIED
    assert table.loc["Frobnicin-7", "source"] == "unresolved"
    assert table.loc["Frobnicin-7", "needs_review"]
    assert table.loc["Frobnicin-7", "pathway"] == ""
    assert "Frobnicin-7" in table.loc["Frobnicin-7", "evidence"]
    assert table.loc["UNTREATED", "moa"] == schema.NEGATIVE_CONTROL_MOA


def test_ambiguous_name_is_flagged_not_merged():
    table = _by_name(["IL-1", "MIP-1", "IL-1alpha", "TGF-beta"])
    il1 = table.loc["IL-1"]
    assert il1["needs_review"] and "ambiguous" in il1["evidence"]
    assert (il1["moa"], il1["pathway"], il1["action"]) == ("Interleukin", "IL-1R/TLR–MyD88", "agonist")  # agree
    assert il1["uniprot_accession"] == "P01583;P01584"
    assert table.loc["IL-1alpha", "gene"] == "IL1A" and not table.loc["IL-1alpha", "needs_review"]


def test_spelling_variants_in_one_screen_are_flagged():
    table = _by_name(["TNF-alpha", "TNFa", "EGF"])
    assert table.loc["TNFa", "moa"] == table.loc["TNF-alpha", "moa"] == "TNF ligand"
    assert table.loc["TNFa", "needs_review"] and "same entry" in table.loc["TNFa", "evidence"]
    assert not table.loc["EGF", "needs_review"]


def test_metadata_moa_is_used_and_disagreement_flagged():
    table = _by_name(
        ["EGF", "IL-6", "Mystery"], metadata_moa={"EGF": "Growth factor", "IL-6": "Growth factor", "Mystery": "Lectin"}
    )
    assert (table["source"] == "metadata").all()
    assert not table.loc["EGF", "needs_review"] and table.loc["EGF", "pathway"] == "RTK"
    assert table.loc["IL-6", "needs_review"] and "Interleukin" in table.loc["IL-6", "evidence"]
    assert table.loc["IL-6", "pathway"] == ""  # the curated pathway belongs to another class
    assert table.loc["IL-6", "receptor"] == "IL6R;IL6ST"  # a fact about the protein


# ------------------------------------------------------------------ overrides (issue 15 #5)


def _overrides(tmp_path, rows: dict[str, list[str]]) -> Path:
    path = tmp_path / "my_edits.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_overrides_win_and_are_recorded(tmp_path):
    over = _overrides(
        tmp_path,
        {
            "treatment": ["Sonic-Hedgehog", "Frobnicin-7"],
            "moa": ["Hedgehog agonist", "Lectin"],
            "evidence": ["lab convention", ""],
            "pathway": ["Hedgehog", ""],
            "action": ["agonist", ""],
        },
    )
    table = _by_name(["Sonic hedgehog", "Frobnicin-7", "EGF"], overrides=over)
    row = table.loc["Sonic hedgehog"]  # another spelling, unambiguous: the override applies
    assert (row["moa"], row["source"], row["pathway"], row["mechanism"]) == (
        "Hedgehog agonist",
        "override",
        "Hedgehog",
        "Hedgehog agonist",
    )
    assert "lab convention" in row["evidence"] and row["receptor"] == "PTCH1;PTCH2"  # protein facts filled in
    assert table.loc["Frobnicin-7", "source"] == "override" and table.loc["Frobnicin-7", "class_kind"] == "family"
    assert table.loc["EGF", "source"] == "curated"


@pytest.mark.parametrize(
    "named, other",
    [("白介素", "干扰素"), ("???", "---"), ("123", "1-2-3"), ("IL-6 인터루킨", "IL-6 白介素")],
)
def test_override_applies_only_to_the_name_it_names(tmp_path, named, other):
    """Two different names with the same normalised form: the override is not applied to the other."""
    over = _overrides(tmp_path, {"treatment": [named], "moa": ["Lectin"]})
    for screen in ([named, other], [other]):
        with pytest.warns(UserWarning, match="override: 1 name.*not matched by normalised form"):
            table = _by_name(screen, overrides=over)
        assert table.loc[other, "source"] != "override"
        assert table.loc[other, "needs_review"] and f"'{named}'" in table.loc[other, "evidence"]
        if named in screen:
            assert table.loc[named, "source"] == "override" and table.loc[named, "moa"] == "Lectin"


def test_override_not_applied_to_a_variant_when_the_screen_has_both(tmp_path):
    over = _overrides(tmp_path, {"treatment": ["C4A"], "moa": ["Lectin"]})
    with pytest.warns(UserWarning, match="the screen also has 'C4A'"):
        table = _by_name(["C4A", "C4a"], overrides=over)
    assert table.loc["C4A", "source"] == "override"
    assert table.loc["C4a", "source"] == "curated" and table.loc["C4a", "needs_review"]


def test_two_override_rows_with_one_key_are_applied_exactly(tmp_path):
    over = _overrides(tmp_path, {"treatment": ["TNF-alpha", "TNFa"], "moa": ["Lectin", "B7 ligand"]})
    with pytest.warns(UserWarning, match="several reference names"):
        table = _by_name(["TNF-alpha", "TNFa", "TNF alpha"], overrides=over)
    assert table.loc["TNF-alpha", "moa"] == "Lectin" and table.loc["TNFa", "moa"] == "B7 ligand"
    assert table.loc["TNF alpha", "source"] == "curated"


def test_metadata_moa_matching_is_exact_for_lossy_names():
    with pytest.warns(UserWarning, match="metadata MoA"):
        table = _by_name(["???", "---"], metadata_moa={"???": "Lectin"})
    assert table.loc["???", "source"] == "metadata" and table.loc["---", "source"] == "unresolved"


# ------------------------------------------------------------------ apply_annotation


def test_apply_annotation_fills_and_warns():
    ann = A.annotate_treatments(["EGF", "TNF-alpha", "IL-1Ra"])
    table = pd.DataFrame(
        {schema.TREATMENT: ["EGF", "TNFa", "EMPTY", "DMSO", "Mystery", "EGF", "IL-1Ra"], "x": range(7)}
    )
    with pytest.warns(UserWarning, match="Mystery"):
        out = A.apply_annotation(table, ann)
    assert out[schema.MOA].tolist() == [
        "Growth factor",
        "TNF ligand",
        "Negative control",
        "Negative control",
        A.UNCLASSIFIED,
        "Growth factor",
        "Interleukin",
    ]
    assert out["Metadata_pathway"].tolist() == [
        "RTK",
        "NF-κB/TNFR",
        "Negative control",
        "Negative control",
        A.UNCLASSIFIED,
        "RTK",
        "IL-1R/TLR–MyD88",
    ]
    assert out["Metadata_action"].iloc[-1] == "antagonist"
    assert out["Metadata_mechanism"].iloc[-1] == "IL-1R/TLR–MyD88 antagonist"
    assert out["Metadata_class_kind"].tolist()[:3] == ["family", "family", "control"]
    assert out["Metadata_receptor"].tolist()[:3] == ["EGFR", "TNFRSF1A;TNFRSF1B", ""]
    assert set(A.METADATA_COLUMNS.values()) <= set(out.columns)
    assert schema.MOA not in table.columns  # a copy
    assert out["x"].tolist() == list(range(7))


def test_apply_annotation_reads_an_annotation_csv(tmp_path):
    """An annotation written to CSV and read back (empty caveats become NaN) applies the same."""
    ann = A.annotate_treatments(["EGF", "DMXAA"])
    ann.to_csv(tmp_path / "a.csv", index=False)
    out = A.apply_annotation(pd.DataFrame({schema.TREATMENT: ["EGF", "DMXAA"]}), pd.read_csv(tmp_path / "a.csv"))
    assert out["Metadata_caveat"].iloc[0] == "" and "human" in out["Metadata_caveat"].iloc[1]


def test_apply_annotation_with_an_old_two_column_annotation():
    old = pd.DataFrame({"treatment": ["EGF"], "moa": ["Growth factor"]})
    out = A.apply_annotation(pd.DataFrame({schema.TREATMENT: ["EGF"]}), old)
    assert out.columns.tolist() == [schema.TREATMENT, schema.MOA]


def test_apply_annotation_keeps_complete_column_unless_told():
    ann = A.annotate_treatments(["EGF"])
    table = pd.DataFrame({schema.TREATMENT: ["EGF", "EGF"], schema.MOA: ["Mine", "Mine"]})
    assert A.apply_annotation(table, ann)[schema.MOA].tolist() == ["Mine", "Mine"]
    assert A.apply_annotation(table, ann, overwrite=True)[schema.MOA].tolist() == ["Growth factor"] * 2
    partial = pd.DataFrame({schema.TREATMENT: ["EGF", "EGF"], schema.MOA: ["Mine", None]})
    assert A.apply_annotation(partial, ann)[schema.MOA].tolist() == ["Mine", "Growth factor"]


def test_apply_annotation_matches_lossy_names_exactly():
    ann = pd.DataFrame({"treatment": ["???"], "moa": ["Lectin"]})
    with pytest.warns(UserWarning) as caught:
        out = A.apply_annotation(pd.DataFrame({schema.TREATMENT: ["???", "---"]}), ann)
    assert out[schema.MOA].tolist() == ["Lectin", A.UNCLASSIFIED]
    assert any("'---' not matched to '???'" in str(w.message) for w in caught)


def test_apply_annotation_names_missing_column():
    with pytest.raises(KeyError, match="Metadata_Treatment"):
        A.apply_annotation(pd.DataFrame({"treatment": ["EGF"]}), A.annotate_treatments(["EGF"]))


# ------------------------------------------------------------------ real benchmark names


def test_bbbc021_compound_names_resolve_or_are_reported(bbbc021_moa):
    """Small-molecule names of a real MoA benchmark are mostly outside the curated table:
    each is reported (never guessed), apart from DMSO and bryostatin (a PKC activator)."""
    moa = pd.read_csv(bbbc021_moa)
    names = sorted(moa["compound"].unique())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = _by_name(names)
    assert table.loc["DMSO", "moa"] == "Negative control"
    assert table.loc["bryostatin", "moa"] == "Protein kinase activator"
    rest = table.drop(index=["DMSO", "bryostatin"])
    assert len(rest) == len(names) - 2
    assert (rest["moa"] == A.UNCLASSIFIED).all() and rest["needs_review"].all()
