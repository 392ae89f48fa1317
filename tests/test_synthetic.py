"""The synthetic demo screen: layout, metadata, determinism, batch effects, phenotypes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from moa_features import schema
from moa_features.synthetic import (
    CONTROL,
    METADATA_COLUMNS,
    PRESETS,
    TREATMENT_MOA,
    TREATMENTS,
    dose_effect,
    image_path,
    make_screen,
    phenotype_modifiers,
    plate_layout,
    resolve_spec,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEC_TREATMENTS = {
    "Growth factor": {"EGF", "FGF-2", "VEGF-A", "HGF"},
    "Interleukin": {"IL-1B", "IL-6", "IL-17A"},
    "TNF ligand": {"TNF-alpha", "TRAIL"},
    "GPCR agonist": {"CXCL12"},
    "Wnt agonist": {"Wnt-3a"},
    "Wnt antagonist": {"DKK-1"},
}


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    make_screen(root, "tiny", seed=0)
    return root


@pytest.fixture(scope="module")
def table(screen) -> pd.DataFrame:
    """Metadata joined with the ground truth, plus per-image channel means and the
    Otsu Hoechst-positive fraction and median nucleus area of every site."""
    meta = pd.read_csv(screen / "metadata.csv")
    gt = pd.read_csv(screen / "ground_truth.csv")
    df = meta.merge(gt[["site_id", "moa", "effect", "n_cells"]], on="site_id", validate="1:1")
    rows = []
    for r in df.itertuples():
        ims = [
            _read(image_path(screen, r.experiment, r.plate, r.well, r.site, c)) for c in range(1, 7)
        ]
        nuclei = ndi.binary_opening(ims[0] > threshold_otsu(ims[0]))
        lab, n = ndi.label(nuclei)
        rows.append(
            {f"mean_w{c}": float(a.mean()) for c, a in enumerate(ims, 1)}
            | {
                "hoechst_area": float(nuclei.mean()),
                "nucleus_area": float(np.median(np.bincount(lab.ravel())[1:])),
            }
        )
    df = pd.concat([df, pd.DataFrame(rows)], axis=1)
    df["plate_id"] = df["experiment"] + "_" + df["plate"].astype(str)
    return df


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", f"{path}: mode {im.mode}, expected 8-bit grayscale"
        return np.asarray(im)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_files_shape_dtype(screen):
    meta = pd.read_csv(screen / "metadata.csv")
    assert 30 <= len(meta) <= 60
    size = PRESETS["tiny"].image_size
    expected = set()
    for r in meta.itertuples():
        for c in range(1, 7):
            p = (
                screen
                / "images"
                / r.experiment
                / f"Plate{r.plate}"
                / f"{r.well}_s{r.site}_w{c}.png"
            )
            expected.add(p)
            a = _read(p)
            assert a.shape == (size, size) and a.dtype == np.uint8
            assert a.max() > a.min(), f"{p} is flat"
    assert set((screen / "images").rglob("*.png")) == expected
    assert not list(screen.rglob("*.tmp")), "temporary files left behind"
    for name in ("screen.json", "ground_truth.csv"):
        assert (screen / name).is_file()


def test_metadata_columns_and_ids(screen):
    meta = pd.read_csv(screen / "metadata.csv", dtype={"well": str})
    assert tuple(meta.columns) == METADATA_COLUMNS
    assert "moa" not in meta.columns and not any("moa" in c.lower() for c in meta.columns)
    assert meta["site_id"].is_unique
    assert (
        meta["site_id"]
        == meta.apply(lambda r: f"{r.experiment}_{r.plate}_{r.well}_{r.site}", axis=1)
    ).all()
    assert (
        meta["well_id"] == meta.apply(lambda r: f"{r.experiment}_{r.plate}_{r.well}", axis=1)
    ).all()
    assert (meta["cell_type"] == "HUVEC").all() and (meta["dataset"] == "train").all()
    assert meta["experiment"].str.fullmatch(r"HUVEC-\d\d").all()
    assert set(meta["experiment"]) == {"HUVEC-01", "HUVEC-02"}
    assert meta["plate"].dtype.kind == "i" and set(meta["plate"]) == {1, 2}
    assert meta["site"].dtype.kind == "i" and (meta["site"] >= 1).all()
    assert meta["well"].str.fullmatch(r"[A-P](0[1-9]|1\d|2[0-4])").all()
    empty = meta["treatment"] == CONTROL
    assert (meta.loc[empty, "well_type"] == "negative_control").all()
    assert (meta.loc[~empty, "well_type"] == "treatment").all()
    assert (meta.loc[empty, "treatment_conc"] == 0).all()
    assert (meta.loc[~empty, "treatment_conc"] > 0).all()
    assert set(meta["treatment"]) <= set(TREATMENT_MOA)
    # one treatment and concentration per well
    assert (meta.groupby("well_id")[["treatment", "treatment_conc"]].nunique() == 1).all().all()


def test_treatments_moas_and_imbalance(screen):
    meta = pd.read_csv(screen / "metadata.csv")
    gt = pd.read_csv(screen / "ground_truth.csv")
    assert list(gt["site_id"]) == list(meta["site_id"])
    assert {t.name: t.moa for t in TREATMENTS} == {
        t: m for m, ts in SPEC_TREATMENTS.items() for t in ts
    }
    assert (gt["moa"] == gt["treatment"].map(TREATMENT_MOA)).all()
    assert (gt.loc[gt["treatment"] == CONTROL, "moa"] == schema.NEGATIVE_CONTROL_MOA).all()
    assert (
        gt["phenotype"].notna().all() and (gt.loc[gt["treatment"] == CONTROL, "effect"] == 0).all()
    )
    moas = set(gt["moa"]) - {schema.NEGATIVE_CONTROL_MOA}
    assert moas == set(SPEC_TREATMENTS)  # six MoA classes
    per_plate_controls = meta[meta["treatment"] == CONTROL].groupby(["experiment", "plate"]).size()
    assert len(per_plate_controls) == meta.groupby(["experiment", "plate"]).ngroups
    assert (per_plate_controls >= 2).all()
    counts = gt.loc[gt["moa"] != schema.NEGATIVE_CONTROL_MOA, "moa"].value_counts()
    assert counts.max() >= 8 * counts.min()
    assert counts["Growth factor"] > counts["TNF ligand"] > counts["Wnt agonist"]
    assert counts["Interleukin"] > counts["GPCR agonist"] >= counts["Wnt antagonist"]


def test_screen_json_records_design(screen):
    info = json.loads((screen / "screen.json").read_text())
    assert info["preset"] == "tiny" and info["seed"] == 0 and info["overrides"] == {}
    assert info["spec"]["image_size"] == PRESETS["tiny"].image_size
    assert {t["name"] for t in info["treatments"]} == set(TREATMENT_MOA) - {CONTROL}


def test_deterministic_across_seeds_and_jobs(screen, tmp_path):
    reference = _tree_bytes(screen)
    make_screen(tmp_path / "jobs2", "tiny", seed=0, n_jobs=2)
    assert _tree_bytes(tmp_path / "jobs2") == reference
    other = make_screen(tmp_path / "seed1", "tiny", seed=1, n_experiments=1, n_plates=1)
    w1 = pd.read_csv(other).iloc[0]
    a = (
        tmp_path / "seed1" / image_path(Path(), w1.experiment, w1.plate, w1.well, w1.site, 1)
    ).read_bytes()
    b = screen / image_path(Path(), w1.experiment, w1.plate, w1.well, w1.site, 1)
    assert not b.exists() or b.read_bytes() != a
    assert _tree_bytes(tmp_path / "seed1")["metadata.csv"] != reference["metadata.csv"]


def test_idempotent_rerun_and_regeneration(tmp_path):
    root = tmp_path / "s"
    small = {"n_experiments": 1, "n_plates": 1}
    meta = make_screen(root, "tiny", seed=3, **small)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    assert make_screen(root, "tiny", seed=3, **small) == meta
    assert time.perf_counter() - t0 < 0.5
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps
    # a different design regenerates and leaves no stale images behind
    make_screen(root, "tiny", seed=4, **small)
    info = json.loads((root / "screen.json").read_text())
    assert info["seed"] == 4 and info["overrides"] == small
    sites = pd.read_csv(root / "metadata.csv")
    assert len(list((root / "images").rglob("*.png"))) == 6 * len(sites)
    # an interrupted run (no metadata.csv yet) is not taken as complete
    (root / "metadata.csv").unlink()
    stale = root / "images" / "HUVEC-01" / "Plate1" / "P24_s1_w1.png"
    stale.write_bytes(b"stale")
    make_screen(root, "tiny", seed=4, **small)
    assert not stale.exists() and pd.read_csv(root / "metadata.csv").equals(sites)


def test_overrides_are_checked():
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_spec("huge")
    with pytest.raises(ValueError, match="n_platez"):
        resolve_spec("tiny", n_platez=3)
    with pytest.raises(ValueError, match="control_wells"):
        resolve_spec("tiny", control_wells=0)
    with pytest.raises(ValueError, match="replicates"):
        resolve_spec("tiny", replicates={"common": 1.5, "medium": 1, "rare": 1})
    assert resolve_spec("demo", image_size=512, sites_per_well=3).image_size == 512


def test_plate_layout_design():
    spec = resolve_spec("demo")
    for e in range(spec.n_experiments):
        for p in range(1, spec.n_plates + 1):
            plan = plate_layout(spec, 0, e, p)
            wells = [w.well for w in plan]
            assert len(set(wells)) == len(wells)
            counts = pd.Series([w.treatment for w in plan]).value_counts()
            assert counts[CONTROL] == spec.control_wells
            for t in TREATMENTS:
                assert counts[t.name] == spec.replicates[t.frequency]
                assert {w.conc for w in plan if w.treatment == t.name} <= set(t.doses)
    # doses rotate: every common treatment sees every dose across the screen
    all_wells = [w for e in range(2) for p in (1, 2, 3) for w in plate_layout(spec, 0, e, p)]
    assert {w.conc for w in all_wells if w.treatment == "EGF"} == set(TREATMENTS[0].doses)


def test_dose_response_and_modifiers():
    egf = TREATMENTS[0]
    assert dose_effect(CONTROL, 0.0) == 0.0
    assert dose_effect("EGF", egf.ec50) == pytest.approx(0.5 * egf.strength)
    effects = [dose_effect("EGF", c) for c in egf.doses]
    assert effects == sorted(effects) and 0 < effects[0] < effects[-1] < 1
    with pytest.raises(ValueError, match="unknown treatment"):
        dose_effect("aspirin", 1.0)
    base = phenotype_modifiers(schema.NEGATIVE_CONTROL_MOA, 0.0)
    gf = phenotype_modifiers("Growth factor", 1.0)
    assert gf["nucleus_area"] == pytest.approx(1.25 * base["nucleus_area"])
    assert gf["density"] > base["density"] and gf["er"] == base["er"]
    assert phenotype_modifiers("Interleukin", 0.0) == base


def test_batch_effects_exceed_moa_differences(table):
    """Raw per-image means drift more between plates than the MoAs differ from each other
    (after per-plate normalisation), in most channels: a naive model sees plates first."""
    ctrl = table["moa"] == schema.NEGATIVE_CONTROL_MOA
    wins = 0
    for c in range(1, 7):
        col = table[f"mean_w{c}"]
        plate_means = col.groupby(table["plate_id"]).mean()
        plate_spread = plate_means.std() / plate_means.mean()
        # relative effect of each MoA against the controls of its own plate
        ctrl_mean = col[ctrl].groupby(table.loc[ctrl, "plate_id"]).mean()
        rel = col / table["plate_id"].map(ctrl_mean)
        moa_spread = rel.groupby(table["moa"]).mean().std()
        wins += plate_spread > moa_spread
    assert wins >= 4, f"plate drift exceeds MoA spread in only {wins} of 6 channels"
    # and plate drift is large in absolute terms: >= 15 % between the extreme plates
    w2 = table["mean_w2"].groupby(table["plate_id"]).mean()
    assert w2.max() / w2.min() > 1.15


def test_growth_factor_phenotype_on_same_plate(table):
    """Growth factors (more cells, larger nuclei) raise the Hoechst-positive area and the
    median nucleus area above the controls of the same plate; interleukins brighten w2."""
    diffs = {"hoechst_area": [], "nucleus_area": [], "il_w2": []}
    for _, plate in table.groupby("plate_id"):
        ctrl = plate[plate["moa"] == schema.NEGATIVE_CONTROL_MOA]
        gf = plate[plate["moa"] == "Growth factor"]
        il = plate[plate["moa"] == "Interleukin"]
        diffs["hoechst_area"].append(gf["hoechst_area"].mean() / ctrl["hoechst_area"].mean())
        diffs["nucleus_area"].append(gf["nucleus_area"].mean() / ctrl["nucleus_area"].mean())
        diffs["il_w2"].append(il["mean_w2"].mean() / ctrl["mean_w2"].mean())
    for name, ratios in diffs.items():
        assert np.mean(ratios) > 1.03, (name, ratios)
        assert sum(r > 1 for r in ratios) >= 3, (name, ratios)


def test_looks_like_real_huvec_sites(table):
    """Per-channel median intensity within a factor 2.5 of real RxRx1 HUVEC sites, and a
    similar Hoechst-positive fraction."""
    real_dir = DATA / "rxrx1" / "images" / "HUVEC-01"
    reals = [
        [_read(real_dir / f"Plate{p}" / f"B02_s1_w{c}.png") for c in range(1, 7)]
        for p in range(1, 5)
    ]
    for c in range(1, 7):
        real = np.median([r[c - 1].mean() for r in reals])
        synth = table[f"mean_w{c}"].median()
        assert real / 2.5 < synth < real * 2.5, (c, real, synth)
    real_area = np.median([np.mean(r[0] > threshold_otsu(r[0])) for r in reals])
    assert 0.5 * real_area < table["hoechst_area"].median() < 2 * real_area
