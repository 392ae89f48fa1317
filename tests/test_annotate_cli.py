"""``moa-features annotate`` end to end: real metadata CSVs on disk, real subprocesses, bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from moa_features import annotate as A
from moa_features import cli, schema

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
UNIPROT = Path(__file__).resolve().parent / "data" / "uniprot"
# The names of issue 14's "done when", as the original RxRx2 metadata and notebooks spell them.
ISSUE_14 = [
    "CCL14a",
    "GCP-2",
    "IL-12",
    "PDGF-AB",
    "IL-1Ra",
    "IL-36Ra",
    "C5a",
    "Wnt-5a",
    "DMXAA",
    "Ang-2",
    "IL-34",
    "M-CSF",
    "Insulin",
    "IGF-1",
    "EMPTY",
]


def _rxrx2_metadata(path: Path, treatments: list[str]) -> Path:
    """An RxRx2-layout metadata CSV (its real columns), two wells and two sites per treatment."""
    rows = []
    for i, t in enumerate(treatments):
        for w in range(2):
            well = f"{'BCDEFGHIJKLMNOP'[i % 15]}{w + 2:02d}"
            for s in (1, 2):
                rows.append(
                    dict(
                        site_id=f"HUVEC-1_1_{well}_{s}",
                        well_id=f"HUVEC-1_1_{well}",
                        cell_type="HUVEC",
                        experiment="HUVEC-1",
                        plate=1,
                        well=well,
                        site=s,
                        treatment=t,
                        treatment_conc="" if t == "EMPTY" else 0.01,
                    )
                )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "moa_features.annotate", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_issue_14_names_end_to_end(tmp_path):
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ISSUE_14)
    out = tmp_path / "treatment_moa.csv"
    proc = _run(meta, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    t = pd.read_csv(out, keep_default_na=False).set_index("treatment")
    assert t.index.tolist() == ISSUE_14
    assert (t["source"] == "curated").all() and (t["moa"] != A.UNCLASSIFIED).all()  # every name resolves
    assert t.loc["IL-1Ra", "action"] == t.loc["IL-36Ra", "action"] == "antagonist"
    assert t.loc["IL-1Ra", "moa"] == "Interleukin"  # kept in the original class...
    assert t.loc["IL-1Ra", "mechanism"] != t.loc["IL-12", "mechanism"]  # ...never merged with agonists
    assert t.loc["C5a", "pathway"] == "GPCR"
    assert t.loc["Wnt-5a", "pathway"] == "non-canonical Wnt"
    assert t.loc["IL-34", ["pathway", "receptor"]].tolist() == t.loc["M-CSF", ["pathway", "receptor"]].tolist()
    assert t.loc["Insulin", "pathway"] == t.loc["IGF-1", "pathway"] == "RTK"
    assert re.search(r"mouse.*not human", t.loc["DMXAA", "caveat"])
    assert t.loc["Ang-2", "action"] == "antagonist"
    assert t.loc["EMPTY", "moa"] == schema.NEGATIVE_CONTROL_MOA
    assert "antagonist(s) IL-1Ra, IL-36Ra share the moa class 'Interleukin'" in proc.stderr
    # the table carries every level as a Metadata_ column: any of them can be the training label
    table = A.apply_annotation(pd.read_csv(meta).rename(columns={"treatment": schema.TREATMENT}), t.reset_index())
    assert table.groupby(schema.TREATMENT)["Metadata_pathway"].first()["C5a"] == "GPCR"
    assert set(A.METADATA_COLUMNS.values()) <= set(table.columns)


def test_moa_features_annotate_subcommand(tmp_path, capsys):
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["IL-12 p70", "SDF-1α", "EMPTY"])
    out = tmp_path / "a.parquet"
    assert cli.main(["annotate", str(meta), "-o", str(out)]) == 0
    t = pd.read_parquet(out).set_index("treatment")
    assert t.loc["IL-12 p70", "gene"] == "IL12A;IL12B" and t.loc["SDF-1α", "gene"] == "CXCL12"
    assert "annotated 3 treatments from column 'treatment'" in capsys.readouterr().err


def test_cli_rxrx1_metadata_and_unknown_names(tmp_path, capsys):
    """Real RxRx1 metadata (column ``sirna``, all UNTREATED) and a screen with an unknown name."""
    rxrx1 = SHARED / "rxrx1" / "metadata.csv"
    if not rxrx1.exists():
        pytest.skip(f"real RxRx1 metadata not found at {rxrx1} (../shared/data absent)")
    out = tmp_path / "treatment_moa.csv"
    assert A.main([str(rxrx1), "-o", str(out)]) == 0
    t = pd.read_csv(out)
    assert t["moa"].tolist() == ["Negative control"] and t["treatment"].tolist() == ["UNTREATED"]
    assert "column 'sirna'" in capsys.readouterr().err

    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF", "Frobnicin-7", "007"])
    assert A.main([str(meta), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    t = pd.read_csv(out, dtype={"treatment": str}).set_index("treatment")
    assert re.search(r"unresolved.*Frobnicin-7", err)
    assert t.loc["Frobnicin-7", "needs_review"] and "007" in t.index  # names are read as text


def test_cli_errors_name_the_file(tmp_path, capsys):
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"well": ["B02"]}).to_csv(meta, index=False)
    assert A.main([str(meta), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "meta.csv" in err and "--treatment-column" in err


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


MALFORMED = {
    "empty": ("", "not a readable overrides table"),
    "binary": (bytes(range(256)) * 4, "not a readable overrides table"),
    "semicolons": ("treatment;moa\nEGF;Lectin\n", "needs a 'treatment' column"),
    "no_moa": ("treatment,notes\nEGF,x\n", "needs a 'moa' or a 'uniprot_accession' column"),
    "ragged": ('treatment,moa\nEGF,Lectin,extra,"unclosed\n', "not a readable overrides table"),
    "duplicate": ("treatment,moa\nEGF,Lectin\nEGF,B7 ligand\n", "same treatment on several lines \\(2, 3\\)"),
    "empty_row": ("treatment,moa\n,Lectin\n", "empty 'treatment' on line\\(s\\) 2"),
    "no_class": ("treatment,moa,evidence\nEGF,,mine\n", "neither 'moa' nor 'uniprot_accession' on line\\(s\\) 2"),
    "bad_pathway": ("treatment,moa,pathway\nEGF,Lectin,MAPK\n", "'pathway' on line\\(s\\) 2 is \\['MAPK'\\]"),
    "bad_action": ("treatment,moa,action\nEGF,Lectin,inhibitor\n", "expected one of \\['agonist', 'antagonist'"),
    "bad_accession": ("treatment,uniprot_accession\nEGF,EGF_HUMAN_X\n", "not a UniProt accession"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_overrides_exit_2_naming_the_file(tmp_path, capsys, case):
    content, message = MALFORMED[case]
    over = _write(tmp_path / f"overrides_{case}.csv", content)
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF"])
    assert A.main([str(meta), "-o", str(tmp_path / "a.csv"), "--overrides", str(over)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-features annotate: error: ") and str(over) in err
    assert re.search(message, err), err
    assert not (tmp_path / "a.csv").exists()


def test_overrides_path_problems_exit_2(tmp_path, capsys):
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF"])
    for over, message in [
        (tmp_path, "not a file"),
        (tmp_path / "missing.csv", "not found"),
        (_write(tmp_path / "o.xlsx", "x"), "unknown overrides format"),
    ]:
        assert A.main([str(meta), "-o", str(tmp_path / "a.csv"), "--overrides", str(over)]) == 2
        err = capsys.readouterr().err
        assert str(over) in err and message in err


def test_malformed_overrides_in_a_real_process_has_no_traceback(tmp_path):
    over = _write(tmp_path / "edits.csv", bytes(range(256)))
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF"])
    proc = _run(meta, "-o", tmp_path / "a.csv", "--overrides", over)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "edits.csv" in proc.stderr and "expected" in proc.stderr


def test_override_collisions_are_listed_on_stderr(tmp_path):
    over = _write(tmp_path / "edits.csv", "treatment,moa\n???,Lectin\n123,B7 ligand\n")
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["???", "---", "123", "1-2-3"])
    proc = _run(meta, "-o", tmp_path / "a.csv", "--overrides", over)
    assert proc.returncode == 0, proc.stderr
    assert "override: 2 name(s) not matched by normalised form" in proc.stderr
    assert "'---' not matched to '???'" in proc.stderr and "'1-2-3' not matched to '123'" in proc.stderr
    t = pd.read_csv(tmp_path / "a.csv", dtype={"treatment": str}).set_index("treatment")
    assert t["source"].to_dict() == {"???": "override", "---": "unresolved", "123": "override", "1-2-3": "unresolved"}


_NO_BIOPYTHON = "import sys; sys.modules['Bio'] = None; from moa_features.annotate.cli import main; sys.exit(main({}))"


def test_without_biopython_the_curated_table_works_and_uniprot_says_what_to_install(tmp_path):
    """Biopython is an optional extra: a real process in which it cannot be imported."""
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF", "EMPTY"])
    plain = [str(meta), "-o", str(tmp_path / "a.csv")]
    proc = subprocess.run(
        [sys.executable, "-c", _NO_BIOPYTHON.format(plain)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "a.csv")["moa"].tolist() == ["Growth factor", "Negative control"]
    for extra in (["--uniprot", str(UNIPROT)], ["--online", "--cache-dir", str(tmp_path / "cache")]):
        proc = subprocess.run(
            [sys.executable, "-c", _NO_BIOPYTHON.format(plain + extra)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert proc.returncode == 2, proc.stderr
        assert "needs Biopython" in proc.stderr and "moa-features[uniprot]" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_output_naming_an_input_is_refused_before_any_work(tmp_path, capsys):
    """Issue 22 item 1: ``-o`` naming the metadata (or the overrides) would destroy it; exit 2, nothing written."""
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF", "EMPTY"])
    over = _write(tmp_path / "over.csv", "treatment,moa\nEGF,Growth factor\n")
    for target in (meta, over):
        before = target.read_bytes()
        assert A.main([str(meta), "-o", str(target), "--overrides", str(over)]) == 2
        err = capsys.readouterr().err
        assert f"-o {target} would overwrite the input {target}" in err and "Traceback" not in err
        assert target.read_bytes() == before


def test_overrides_naming_no_treatment_of_the_screen_are_listed(tmp_path, capsys):
    """Issue 22 item 27: an override for a treatment the screen does not have changes nothing; say so."""
    meta = _rxrx2_metadata(tmp_path / "metadata.csv", ["EGF", "EMPTY"])
    over = _write(tmp_path / "over.csv", "treatment,moa\nEGF,Growth factor\nEFG,Growth factor\nTNFa,Cytokine\n")
    assert A.main([str(meta), "-o", str(tmp_path / "a.csv"), "--overrides", str(over)]) == 0
    err = capsys.readouterr().err
    assert f"2 override(s) in {over} name no treatment of the screen" in err and "EFG, TNFa" in err
    assert "moa-features annotate: warning:" in err
