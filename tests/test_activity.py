"""Phenotypic activity and MoA consistency with copairs (moa_features.activity)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features import activity, schema

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


@pytest.mark.skipif(not PROFILES.exists(), reason="BBBC021 profiles not in ../shared/data/bbbc021")
def test_bbbc021_reference_activity_and_consistency():
    df = pd.read_csv(PROFILES)
    feats = schema.feature_columns(df.columns)
    act = activity.phenotypic_activity(df, treatment="Metadata_Compound", features=feats)
    assert len(act) == 103 and act["active"].sum() >= 98  # copairs reference: 102 of 103
    cons = activity.moa_consistency(df, treatment="Metadata_Compound", features=feats).set_index("moa")
    assert cons.loc["Protein synthesis", "mean_average_precision"] == 1.0
    assert cons.loc["Protein degradation", "mean_average_precision"] == pytest.approx(0.572, abs=0.01)
