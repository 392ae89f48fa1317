"""Phenotypic activity and MoA consistency with copairs (moa_features.activity)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features import activity, schema

from _helpers import bbbc021_raw_wells

pytest.importorskip("copairs")
ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT.parent / "shared" / "data" / "bbbc021" / "BBBC021_feature_selected_mad_robustize.csv"
P = 20


def wells(
    effects: dict[str, np.ndarray | None],
    n_controls: int = 24,
    replicates: int = 4,
    seed: int = 0,
    moa: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per well on 2 plates: controls ~ N(0, 1); a treatment = its effect + noise, or pure noise (None)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_controls):
        rows.append({schema.TREATMENT: "DMSO", **dict(zip(range(P), rng.normal(size=P)))})
    for name, effect in effects.items():
        for _ in range(replicates):
            values = rng.normal(size=P) + (0 if effect is None else effect)
            rows.append({schema.TREATMENT: name, **dict(zip(range(P), values))})
    df = pd.DataFrame(rows).rename(columns={j: f"f{j}" for j in range(P)})
    df[schema.PLATE] = np.where(np.arange(len(df)) % 2, "P1", "P2")
    df[schema.WELL] = [f"W{i:03d}" for i in range(len(df))]
    if moa is not None:
        df[schema.MOA] = df[schema.TREATMENT].map(moa)
    return df


def direction(j: int, size: float = 6.0) -> np.ndarray:
    v = np.zeros(P)
    v[j] = size
    return v


def test_identical_replicates_have_map_one_and_noise_is_not_active():
    df = wells({"strong": direction(0), "noise": None, "single": direction(1)})
    identical = df[schema.TREATMENT] == "strong"
    df.loc[identical, [f"f{j}" for j in range(P)]] = np.linspace(1, 3, P)  # identical replicate wells
    df = df[~((df[schema.TREATMENT] == "single") & (df.index % 4 != 0))]  # one well only
    out = activity.phenotypic_activity(df, null_size=2000)
    assert list(out.columns) == activity.ACTIVITY_COLUMNS
    res = out.set_index("treatment")
    assert res.loc["strong", "mean_average_precision"] == 1.0 and res.loc["strong", "active"]
    assert res.loc["strong", "n_replicates"] == 4
    assert not res.loc["noise", "active"] and res.loc["noise", "corrected_p_value"] > 0.05
    assert res.loc["single", "n_replicates"] == 1 and np.isnan(res.loc["single", "mean_average_precision"])
    assert not res.loc["single", "active"]


def test_sites_are_reduced_to_wells_and_concentration_splits_treatments():
    df = wells({"a": direction(2), "b": direction(3)})
    df[schema.CONCENTRATION] = np.where(df.index % 2 == 0, 1.0, 10.0)
    df.loc[df[schema.TREATMENT] == "DMSO", schema.CONCENTRATION] = 0.0
    sites = pd.concat([df.assign(**{schema.SITE: s}) for s in (1, 2, 3)], ignore_index=True)
    out = activity.phenotypic_activity(sites, null_size=2000)
    assert set(out["treatment"]) == {"a@1.0", "a@10.0", "b@1.0", "b@10.0"}
    assert out["n_replicates"].sum() == 8  # wells, not sites


def test_moa_consistency_retrieves_own_moa():
    effects = {
        "a1": direction(0),
        "a2": direction(0) + direction(5, 1),
        "a3": direction(0) + direction(6, 1),
        "b1": direction(1),
        "b2": direction(1) + direction(7, 1),
        "c1": direction(2),
    }
    moa = {"DMSO": "Negative control", "a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C"}
    out = activity.moa_consistency(wells(effects, moa=moa), null_size=2000)
    assert list(out.columns) == activity.CONSISTENCY_COLUMNS
    res = out.set_index("moa")
    assert res.loc["A", "mean_average_precision"] == 1.0 and res.loc["B", "mean_average_precision"] == 1.0
    assert res.loc["A", "n_treatments"] == 3 and "Negative control" not in res.index
    assert np.isnan(res.loc["C", "mean_average_precision"])  # one treatment: nothing to retrieve


def test_missing_columns_are_named():
    df = wells({"a": direction(0)})
    with pytest.raises(KeyError, match="Metadata_Compound"):
        activity.phenotypic_activity(df, treatment="Metadata_Compound")
    with pytest.raises(KeyError, match="Metadata_moa"):
        activity.moa_consistency(df)
    with pytest.raises(ValueError, match="negative-control wells"):
        activity.phenotypic_activity(df[df[schema.TREATMENT] != "DMSO"])


def test_command_writes_both_tables_and_names_a_missing_column(tmp_path):
    effects = {"a1": direction(0), "a2": direction(0), "b1": direction(1), "b2": direction(1)}
    moa = {"DMSO": "Negative control", "a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    table = tmp_path / "wells.csv"
    wells(effects, moa=moa).to_csv(table, index=False)
    out = tmp_path / "act.csv"
    assert activity.main([str(table), "-o", str(out), "--null-size", "1000"]) == 0
    assert pd.read_csv(out)["active"].all()
    assert set(pd.read_csv(tmp_path / "act-consistency.csv")["moa"]) == {"A", "B"}
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "moa_features.activity", str(table), "-o", str(out), "--treatment", "Metadata_Drug"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "Metadata_Drug" in proc.stderr and "Traceback" not in proc.stderr


def batch_screen(seed: int = 0) -> pd.DataFrame:
    """Eight batches of 3 plates, 8 control wells per plate, an offset per batch, and two real treatments."""
    rng = np.random.default_rng(seed)
    rows = []
    for b, offset in ((f"B{k}", direction(3 + k, 4.0)) for k in range(8)):
        for p in range(3):
            plate_offset = rng.normal(scale=0.3, size=P)
            for w in range(8):
                rows.append({schema.TREATMENT: "DMSO", **dict(enumerate(rng.normal(size=P) + offset + plate_offset)),
                             schema.PLATE: f"{b}_P{p}", schema.WELL: f"C{w:02d}", "Metadata_Batch": b})  # fmt: skip
            for name, effect in (("strong", direction(0, 8.0)), ("weak", direction(1, 6.0))):
                values = rng.normal(size=P) + offset + plate_offset + effect
                rows.append({schema.TREATMENT: f"{name}-{b}", **dict(enumerate(values)), schema.PLATE: f"{b}_P{p}",
                             schema.WELL: f"T{name}", "Metadata_Batch": b})  # fmt: skip
    return pd.DataFrame(rows).rename(columns={j: f"f{j}" for j in range(P)})


def test_batch_similarity_does_not_make_pseudo_treatments_active():
    df = batch_screen()
    control = (df[schema.TREATMENT] == "DMSO").to_numpy()
    pseudo, chosen = activity.pseudo_treatments(df, df["Metadata_Batch"], control, group=3, per_plate=3)
    assert chosen.sum() == 72 and pseudo.loc[chosen, schema.TREATMENT].nunique() == 24
    assert (pseudo.loc[chosen].groupby(schema.TREATMENT)[schema.PLATE].nunique() == 3).all()
    out = activity.phenotypic_activity(pseudo, control=control & ~chosen, null_size=2000).set_index("treatment")
    is_pseudo = out.index.str.startswith("pseudo")
    assert not out.loc[is_pseudo, "active"].any()  # ranked against their own plate's controls only
    assert out.loc[~is_pseudo, "active"].all()  # real phenotypes stay active
    # ranked against every control (one reference group, as before), the batch offset alone makes them "active"
    leaky = activity.phenotypic_activity(
        pseudo.assign(Metadata_All="all"), control=control & ~chosen, batch="Metadata_All", null_size=2000
    ).set_index("treatment")
    assert leaky.loc[leaky.index.str.startswith("pseudo"), "active"].mean() >= 0.25  # 8 of 24


def test_plates_without_controls_are_named_and_not_scored():
    df = batch_screen()
    drop = (df[schema.TREATMENT] == "DMSO") & (df[schema.PLATE] == "B1_P0")
    with pytest.warns(UserWarning, match="B1_P0"):
        out = activity.phenotypic_activity(df[~drop], null_size=500).set_index("treatment")
    assert out.loc["strong-B1", "n_replicates"] == 3 and out.loc["strong-B1", "active"]


@pytest.mark.skipif(not PROFILES.exists(), reason="BBBC021 profiles not in ../shared/data/bbbc021")
def test_bbbc021_activity_and_consistency():
    df = pd.read_csv(PROFILES)
    feats = schema.feature_columns(df.columns)
    act = activity.phenotypic_activity(df, treatment="Metadata_Compound", features=feats)
    assert len(act) == 103 and act["active"].sum() >= 88  # 92: replicates against their plate's DMSO wells
    cons = activity.moa_consistency(df, treatment="Metadata_Compound", features=feats).set_index("moa")
    assert cons.loc["Protein synthesis", "mean_average_precision"] == 1.0
    assert cons.loc["Protein degradation", "mean_average_precision"] == pytest.approx(0.572, abs=0.01)


def _command(table: pd.DataFrame, tmp_path: Path, name: str, *extra: str) -> pd.DataFrame:
    path = tmp_path / f"{name}.csv"
    table.to_csv(path, index=False)
    out = tmp_path / f"{name}-activity.csv"
    assert activity.main([str(path), "-o", str(out), "--treatment", "Metadata_Compound", *extra]) == 0
    return pd.read_csv(out)


def _pseudo(table: pd.DataFrame) -> pd.DataFrame:
    """BBBC021 with DMSO wells regrouped: one well from each of 3 plates of one week, 3 per plate group."""
    week = table["Metadata_Plate"].str.split("_").str[0]
    control = (table["Metadata_Compound"] == "DMSO").to_numpy()
    pseudo, chosen = activity.pseudo_treatments(table, week, control, treatment="Metadata_Compound")
    assert chosen.sum() == 153 and pseudo.loc[chosen, "Metadata_Compound"].nunique() == 51
    return pseudo


@pytest.mark.slow
@pytest.mark.skipif(not PROFILES.exists(), reason="BBBC021 profiles not in ../shared/data/bbbc021")
def test_bbbc021_pseudo_treatments_not_active_with_command_defaults(tmp_path):
    """Issue 19 item 5: <= 5 % of 51 DMSO pseudo-treatments active on both tables; >= 90 % real on raw means."""
    raw = bbbc021_raw_wells()
    for name, table in (("processed", pd.read_csv(PROFILES)), ("raw", raw)):
        act = _command(_pseudo(table), tmp_path, name)
        pseudo = act["treatment"].str.startswith("pseudo")
        assert pseudo.sum() == 51 and act.loc[pseudo, "active"].sum() <= 0.05 * 51, name
    real = _command(raw, tmp_path, "raw-real")
    assert len(real) == 103 and real["active"].mean() >= 0.90


@pytest.mark.skipif(not PROFILES.exists(), reason="BBBC021 profiles not in ../shared/data/bbbc021")
def test_control_named_by_query_gives_the_same_figures(tmp_path):
    """Issue 24: DMSO renamed "vehicle" and named with --control gives the figures of the default rule."""
    df = pd.read_csv(PROFILES)
    dmso = _command(df, tmp_path, "dmso", "--null-size", "2000")
    renamed = df.replace({"Metadata_Compound": {"DMSO": "vehicle"}, "Metadata_moa": {"DMSO": "vehicle"}})
    path = tmp_path / "vehicle.csv"
    renamed.to_csv(path, index=False)
    assert activity.main([str(path), "-o", str(tmp_path / "v.csv"), "--treatment", "Metadata_Compound"]) == 2
    vehicle = _command(
        renamed, tmp_path, "vehicle", "--null-size", "2000", "--control", 'Metadata_Compound == "vehicle"'
    )
    pd.testing.assert_frame_equal(dmso, vehicle)
    cons = [pd.read_csv(tmp_path / f"{n}-activity-consistency.csv") for n in ("dmso", "vehicle")]
    pd.testing.assert_frame_equal(*cons)


def test_output_naming_the_input_is_refused(tmp_path, capsys):
    table = tmp_path / "wells.csv"
    wells({"a": direction(0), "b": direction(1)}).to_csv(table, index=False)
    before = table.read_bytes()
    assert activity.main([str(table), "-o", str(table)]) == 2
    err = capsys.readouterr().err
    assert "would overwrite the input" in err and str(table) in err and "Traceback" not in err
    assert table.read_bytes() == before
    consistency = tmp_path / "out-consistency.csv"
    assert activity.main([str(consistency), "-o", str(tmp_path / "out.csv")]) == 2  # not found: named
