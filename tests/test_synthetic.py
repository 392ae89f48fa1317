"""The synthetic demo screen: layout, metadata, ground truth, determinism, batch effects, phenotypes."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from moa_features import schema
from moa_features.annotate import annotate_treatments
from moa_features.synthetic import (
    CONTROL,
    EFFECT_THRESHOLD,
    GENERATOR_VERSION,
    METADATA_COLUMNS,
    MOA_EFFECTS,
    N_DOSES,
    PLATE_ROWS,
    PRESETS,
    TREATMENT_MOA,
    TREATMENT_TRUTH_COLUMNS,
    TREATMENTS,
    dose_effect,
    image_path,
    library,
    make_screen,
    phenotype_modifiers,
    plate_groups,
    plate_layout,
    resolve_spec,
    screen_layout,
    treatment_effects,
    treatment_truth,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WELL_1536 = r"(?:[A-Z]|A[A-F])(?:0[1-9]|[1-3]\d|4[0-8])"


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
    df = meta.merge(gt[["site_id", "moa", "active", "effect", "n_cells"]], on="site_id", validate="1:1")
    rows = []
    for r in df.itertuples():
        ims = [_read(image_path(screen, r.experiment, r.plate, r.well, r.site, c)) for c in range(1, 7)]
        nuclei = ndi.binary_opening(ims[0] > threshold_otsu(ims[0]))
        lab, _ = ndi.label(nuclei)
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


@pytest.fixture(scope="module")
def demo_truth() -> pd.DataFrame:
    """The demo preset's answer key and layout, computed without rendering images."""
    spec = resolve_spec("demo")
    wells = pd.DataFrame(screen_layout(spec, 0))
    return treatment_truth(spec, 0).assign(
        n_layout_wells=lambda t: t["treatment"].map(wells["treatment"].value_counts())
    )


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", f"{path}: mode {im.mode}, expected 8-bit grayscale"
        return np.asarray(im)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_files_shape_dtype(screen):
    meta = pd.read_csv(screen / "metadata.csv")
    spec = PRESETS["tiny"]
    assert len(meta) == len(screen_layout(spec, 0)) * spec.sites_per_well
    size = spec.image_size
    expected = set()
    for r in meta.itertuples():
        for c in range(1, 7):
            p = screen / "images" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}_w{c}.png"
            expected.add(p)
            a = _read(p)
            assert a.shape == (size, size) and a.dtype == np.uint8
            assert a.max() > a.min(), f"{p} is flat"
    assert set((screen / "images").rglob("*.png")) == expected
    assert not list(screen.rglob("*.tmp")), "temporary files left behind"
    for name in ("screen.json", "ground_truth.csv", "ground_truth_treatments.csv"):
        assert (screen / name).is_file()


def test_metadata_columns_and_ids(screen):
    meta = pd.read_csv(screen / "metadata.csv", dtype={"well": str})
    assert tuple(meta.columns) == METADATA_COLUMNS
    assert "moa" not in meta.columns and not any("moa" in c.lower() for c in meta.columns)
    assert meta["site_id"].is_unique
    assert (meta["site_id"] == meta.apply(lambda r: f"{r.experiment}_{r.plate}_{r.well}_{r.site}", axis=1)).all()
    assert (meta["well_id"] == meta.apply(lambda r: f"{r.experiment}_{r.plate}_{r.well}", axis=1)).all()
    assert (meta["cell_type"] == "HUVEC").all() and (meta["dataset"] == "synthetic").all()
    assert meta["experiment"].str.fullmatch(r"HUVEC-\d\d").all()
    assert set(meta["experiment"]) == {"HUVEC-01", "HUVEC-02"}
    assert meta["plate"].dtype.kind == "i" and set(meta["plate"]) == {1, 2}
    assert meta["site"].dtype.kind == "i" and (meta["site"] >= 1).all()
    # 1536-well names (rows A..AF, columns 01..48), outer ring empty as in RxRx2
    assert meta["well"].str.fullmatch(WELL_1536).all()
    rows = meta["well"].str[:-2]
    assert not rows.isin(["A", "AF"]).any() and not meta["well"].str[-2:].isin(["01", "48"]).any()
    empty = meta["treatment"] == CONTROL
    assert (meta.loc[empty, "well_type"] == "negative_control").all()
    assert (meta.loc[~empty, "well_type"] == "treatment").all()
    assert (meta.loc[empty, "treatment_conc"] == 0).all()
    assert (meta.loc[~empty, "treatment_conc"] > 0).all()
    assert set(meta["treatment"]) <= set(TREATMENT_MOA)
    # one treatment and concentration per well
    assert (meta.groupby("well_id")[["treatment", "treatment_conc"]].nunique() == 1).all().all()


def test_ground_truth_agrees_with_metadata(screen):
    meta = pd.read_csv(screen / "metadata.csv")
    gt = pd.read_csv(screen / "ground_truth.csv")
    truth = pd.read_csv(screen / "ground_truth_treatments.csv")
    assert tuple(truth.columns) == TREATMENT_TRUTH_COLUMNS
    # per site: same sites, treatments and concentrations as the metadata, in the same order
    assert list(gt["site_id"]) == list(meta["site_id"])
    assert (gt[["treatment", "treatment_conc"]].to_numpy() == meta[["treatment", "treatment_conc"]].to_numpy()).all()
    assert (gt["moa"] == gt["treatment"].map(TREATMENT_MOA)).all()
    assert (gt.loc[gt["treatment"] == CONTROL, "moa"] == schema.NEGATIVE_CONTROL_MOA).all()
    assert (gt.loc[gt["treatment"] == CONTROL, "effect"] == 0).all()
    # per treatment: every treated treatment of the metadata, its wells and its concentrations
    treated = meta[meta["treatment"] != CONTROL]
    assert set(truth["treatment"]) == set(treated["treatment"])
    wells = treated.groupby("treatment")["well_id"].nunique()
    assert (truth.set_index("treatment")["n_wells"] == wells.reindex(truth["treatment"]).to_numpy()).all()
    for r in truth.itertuples():
        doses = {float(d) for d in r.doses.split(";")}
        assert set(treated.loc[treated["treatment"] == r.treatment, "treatment_conc"]) == doses, r.treatment
    # the per-site and per-treatment files agree on activity; inactive treatments show no effect
    active = truth.set_index("treatment")["active"]
    sites = gt[gt["treatment"] != CONTROL]
    assert (sites["active"] == sites["treatment"].map(active)).all()
    assert (sites.loc[~sites["active"], "effect"] == 0).all()
    assert (sites.loc[sites["active"], "effect"] > 0).all()


def test_demo_design_is_a_mini_rxrx2(demo_truth):
    """>= 8 MoA classes with >= 3 (active) treatments each, unequal class sizes, >= 4
    concentrations per treatment, 20-30 % inactive treatments, controls on every plate."""
    spec = resolve_spec("demo")
    sizes = demo_truth["moa"].value_counts()
    active = demo_truth[demo_truth["active"]]["moa"].value_counts()
    assert len(sizes) >= 8 and (sizes >= 3).all() and (active.reindex(sizes.index) >= 3).all()
    assert sizes.max() >= 2 * sizes.min()
    assert 0.2 <= 1 - demo_truth["active"].mean() <= 0.3
    assert (demo_truth["doses"].str.split(";").map(len) >= 4).all()
    assert (demo_truth["n_wells"] == demo_truth["n_layout_wells"]).all()
    wells = pd.DataFrame(screen_layout(spec, 0))
    wells["plate_id"] = wells["experiment"] + "_" + wells["plate"].astype(str)
    assert wells["experiment"].nunique() >= 2 and wells["plate_id"].nunique() >= 4
    assert (wells[wells["treatment"] == CONTROL].groupby("plate_id").size() >= 8).all()
    # every concentration of every treatment is on the screen, on one plate per experiment
    treated = wells[wells["treatment"] != CONTROL]
    assert (treated.groupby("treatment")["conc"].nunique() == N_DOSES).all()
    per_experiment = treated.groupby(["treatment", "experiment"])["plate"].nunique()
    assert (per_experiment == 1).all() and (
        treated.groupby("treatment")["experiment"].nunique() == spec.n_experiments
    ).all()
    # held-out plates: leaving out any plate group (its treatments and its plates) keeps
    # >= 1 active treatment of every class for training
    active = set(demo_truth.loc[demo_truth["active"], "treatment"])
    for plate in range(1, spec.n_plates + 1):
        kept = treated[(treated["plate"] != plate) & treated["treatment"].isin(active)]
        assert set(kept["treatment"].map(TREATMENT_MOA)) == set(sizes.index), plate
    assert wells["well"].str.fullmatch(WELL_1536).all()
    assert PLATE_ROWS[0] == "A" and PLATE_ROWS[-1] == "AF" and len(PLATE_ROWS) == 32


def test_treatment_names_resolve_through_annotate():
    table = annotate_treatments(list(TREATMENT_MOA))
    assert dict(zip(table["treatment"], table["moa"])) == TREATMENT_MOA
    assert (table["source"] == "curated").all() and not table["needs_review"].any()


def test_screen_json_records_design(screen):
    info = json.loads((screen / "screen.json").read_text())
    assert info["preset"] == "tiny" and info["seed"] == 0 and info["overrides"] == {}
    assert info["generator"] == GENERATOR_VERSION
    assert info["spec"]["image_size"] == PRESETS["tiny"].image_size
    assert {t["name"] for t in info["treatments"]} == {t.name for t in library(PRESETS["tiny"])}
    assert all(t["moa"] == TREATMENT_MOA[t["name"]] for t in info["treatments"])


def test_deterministic_across_seeds_and_jobs(screen, tmp_path):
    reference = _tree_bytes(screen)
    make_screen(tmp_path / "jobs2", "tiny", seed=0, n_jobs=2)
    assert _tree_bytes(tmp_path / "jobs2") == reference
    other = make_screen(tmp_path / "seed1", "tiny", seed=1, n_experiments=1, n_plates=1)
    w1 = pd.read_csv(other).iloc[0]
    a = (tmp_path / "seed1" / image_path(Path(), w1.experiment, w1.plate, w1.well, w1.site, 1)).read_bytes()
    b = screen / image_path(Path(), w1.experiment, w1.plate, w1.well, w1.site, 1)
    assert not b.exists() or b.read_bytes() != a
    assert _tree_bytes(tmp_path / "seed1")["metadata.csv"] != reference["metadata.csv"]


def test_idempotent_rerun_and_regeneration(tmp_path):
    root = tmp_path / "s"
    small = {"n_experiments": 1, "n_plates": 1, "treatment_step": 4}
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
    stale = root / "images" / "HUVEC-01" / "Plate1" / "A01_s1_w1.png"  # outer ring: never imaged
    stale.write_bytes(b"stale")
    make_screen(root, "tiny", seed=4, **small)
    assert not stale.exists() and pd.read_csv(root / "metadata.csv").equals(sites)
    # a screen written by another generator version is rebuilt, not reused
    info["generator"] = GENERATOR_VERSION - 1
    (root / "screen.json").write_text(json.dumps(info))
    stale.write_bytes(b"stale")
    make_screen(root, "tiny", seed=4, **small)
    assert not stale.exists() and json.loads((root / "screen.json").read_text())["generator"] == GENERATOR_VERSION


def test_overrides_are_checked():
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_spec("huge")
    with pytest.raises(ValueError, match="n_platez"):
        resolve_spec("tiny", n_platez=3)
    with pytest.raises(ValueError, match="control_wells"):
        resolve_spec("tiny", control_wells=0)
    with pytest.raises(ValueError, match="doses_per_plate"):
        resolve_spec("tiny", doses_per_plate=5)
    with pytest.raises(ValueError, match="treatment_step"):
        resolve_spec("tiny", treatment_step=0)
    with pytest.raises(ValueError, match="do not fit"):
        resolve_spec("demo", control_wells=1400)
    assert resolve_spec("demo", image_size=512, sites_per_well=3).image_size == 512


def test_plate_layout_design():
    spec = resolve_spec("demo")
    treatments = library(spec)
    assert len(treatments) == len(TREATMENTS)
    groups = plate_groups(spec)
    assert sorted(Counter(groups.values()).values()) == [10, 10, 10, 10]
    for e in range(spec.n_experiments):
        for p in range(1, spec.n_plates + 1):
            plan = plate_layout(spec, 0, e, p)
            wells = [w.well for w in plan]
            assert len(set(wells)) == len(wells) and wells == sorted(wells)
            counts = pd.Series([w.treatment for w in plan]).value_counts()
            assert counts[CONTROL] == spec.control_wells
            for t in treatments:
                on_plate = groups[t.name] == p - 1
                assert counts.get(t.name, 0) == (spec.doses_per_plate if on_plate else 0)
                doses = {w.conc for w in plan if w.treatment == t.name}
                assert doses == (set(t.doses) if on_plate else set())
    # with 2 doses per plate (tiny) the doses rotate over the experiments and each plate holds
    # one of a treatment's two highest
    tiny = resolve_spec("tiny")
    seen: dict[str, set[float]] = {}
    for e in range(tiny.n_experiments):
        for p in range(1, tiny.n_plates + 1):
            for w in plate_layout(tiny, 0, e, p):
                if w.treatment != CONTROL:
                    seen.setdefault(w.treatment, set()).add(w.conc)
    top_two = {t.name: set(t.doses[-2:]) for t in library(tiny)}
    assert all(doses == set(next(t for t in TREATMENTS if t.name == n).doses) for n, doses in seen.items())
    for e in range(tiny.n_experiments):
        for p in range(1, tiny.n_plates + 1):
            plan = pd.DataFrame(plate_layout(tiny, 0, e, p)).query("treatment != @CONTROL")
            assert all(set(g["conc"]) & top_two[t] for t, g in plan.groupby("treatment"))
    # doses rotate: every dose of every treatment is on the same number of plates
    per_dose = pd.DataFrame(screen_layout(spec, 0)).query("treatment != @CONTROL").groupby(["treatment", "conc"]).size()
    assert per_dose.nunique() == 1
    # the tiny preset keeps every other treatment of each MoA, inactive ones included
    tiny = library(PRESETS["tiny"])
    assert {t.moa for t in tiny} == {t.moa for t in TREATMENTS} and any(t.strength == 0 for t in tiny)


def test_dose_response_and_modifiers():
    egf = TREATMENTS[0]
    assert dose_effect(CONTROL, 0.0) == 0.0
    assert dose_effect("EGF", egf.ec50) == pytest.approx(0.5 * egf.strength)
    assert dose_effect("EGF", 3 * egf.ec50) == pytest.approx(0.9 * egf.strength)  # Hill n=2
    with pytest.raises(ValueError, match="unknown treatment"):
        dose_effect("aspirin", 1.0)
    strength = PRESETS["demo"].phenotype_strength
    for t in TREATMENTS:
        effects = [dose_effect(t.name, c, strength) for c in t.doses]
        assert effects == sorted(effects) and len(t.doses) == N_DOSES
        assert effects[0] < EFFECT_THRESHOLD, f"{t.name}: the lowest dose must show no phenotype"
        if t.strength > 0:
            assert effects[-1] > 4 * EFFECT_THRESHOLD and effects[-2] > 2 * EFFECT_THRESHOLD, t.name
        else:
            assert max(effects) == 0
    base = phenotype_modifiers(schema.NEGATIVE_CONTROL_MOA, 0.0)
    gf = phenotype_modifiers("Growth factor", 1.0)
    assert gf["nucleus_area"] == pytest.approx(1.25 * base["nucleus_area"])
    assert gf["density"] > base["density"] and gf["er"] == base["er"]
    assert phenotype_modifiers("Interleukin", 0.0) == base


def _direction(effects: dict[str, float]) -> np.ndarray:
    names = sorted(phenotype_modifiers(schema.NEGATIVE_CONTROL_MOA, 0.0))
    return np.array([effects.get(n, 0.0) for n in names])


def test_treatments_share_their_moa_direction_with_a_deviation():
    """Active treatments of one MoA point the same way (cosine > 0.5 to the MoA direction,
    closer to their own MoA's than to any other's) but no two are identical; inactive
    treatments and the control change nothing."""
    moas = [m for m in MOA_EFFECTS if MOA_EFFECTS[m]]
    directions = {m: _direction(MOA_EFFECTS[m]) for m in moas}
    vectors = {}
    for t in TREATMENTS:
        effects = treatment_effects(t.name, seed=0)
        if t.strength == 0:
            assert effects == {}
            continue
        v = _direction(effects)
        cos = {m: v @ d / np.linalg.norm(v) / np.linalg.norm(d) for m, d in directions.items()}
        assert cos[t.moa] > 0.5 and max(cos, key=cos.get) == t.moa, (t.name, cos)
        vectors[t.name] = v
    assert treatment_effects(CONTROL, seed=0) == {}
    names = list(vectors)
    assert all(not np.allclose(vectors[a], vectors[b]) for i, a in enumerate(names) for b in names[i + 1 :])
    assert treatment_effects("EGF", seed=0) == treatment_effects("EGF", seed=0)
    assert treatment_effects("EGF", seed=0) != treatment_effects("EGF", seed=1)
    no_deviation = treatment_effects("EGF", seed=0, deviation=0.0)
    assert {k: v for k, v in no_deviation.items() if v} == MOA_EFFECTS["Growth factor"]


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
        visible = plate[plate["effect"] >= EFFECT_THRESHOLD]
        gf = visible[visible["moa"] == "Growth factor"]
        il = visible[visible["moa"] == "Interleukin"]
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
    if not real_dir.is_dir():
        pytest.skip(f"real RxRx1 HUVEC sites not found in {real_dir} (../shared/data is absent)")
    reals = [[_read(real_dir / f"Plate{p}" / f"B02_s1_w{c}.png") for c in range(1, 7)] for p in range(1, 5)]
    for c in range(1, 7):
        real = np.median([r[c - 1].mean() for r in reals])
        synth = table[f"mean_w{c}"].median()
        assert real / 2.5 < synth < real * 2.5, (c, real, synth)
    real_area = np.median([np.mean(r[0] > threshold_otsu(r[0])) for r in reals])
    assert 0.5 * real_area < table["hoechst_area"].median() < 2 * real_area
