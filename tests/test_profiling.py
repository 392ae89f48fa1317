"""Plate normalisation, already-normalised detection and consensus profiles (moa_features.profiling)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features import profiling, schema
from moa_features.columns import control_mask

BBBC021 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bbbc021"


def screen(n_plates: int = 4, n_controls: int = 6, n_treated: int = 12, p: int = 8, seed: int = 0) -> pd.DataFrame:
    """Raw-scale wells: per-plate offsets and per-feature scales far from (0, 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_plates):
        offset = rng.normal(scale=5, size=p)
        for i in range(n_controls + n_treated):
            ctrl = i < n_controls
            rows.append(
                {
                    schema.PLATE: f"P{k}",
                    schema.WELL: f"W{i:02d}",
                    schema.TREATMENT: "DMSO" if ctrl else f"T{i % 3}",
                    **{
                        f"f{j}": 100 + 10 * j + offset[j] + 3 * rng.normal() + (0 if ctrl else 20 * (i % 3 == j))
                        for j in range(p)
                    },
                }
            )
    return pd.DataFrame(rows)


def test_controls_are_centred_per_plate_and_pooled_spread_is_shrunk():
    df = screen()
    control = profiling.is_control(df)
    own = profiling.normalize(df, "controls", control=control)
    pooled = profiling.normalize(df, "pooled", control=control)
    feats = schema.feature_columns(df.columns)
    for out in (own, pooled):
        med = out[control].groupby(schema.PLATE)[feats].median()
        np.testing.assert_allclose(med.to_numpy(), 0, atol=1e-12)
    # controls: each plate's controls have unit robust spread exactly.
    _, spread = profiling.robust_scale(own.loc[control & (df[schema.PLATE] == "P0"), feats].to_numpy())
    np.testing.assert_allclose(spread, 1)
    # pooled: the spread lies between the plate's own and the pooled spread.
    x = df[feats].to_numpy(float)
    plates = df[schema.PLATE].to_numpy()
    _, s_own = profiling.plate_statistics(x, plates, control.to_numpy())
    _, s_pool = profiling.plate_statistics(x, plates, control.to_numpy(), shrinkage=1e12)
    _, s_mid = profiling.plate_statistics(x, plates, control.to_numpy(), shrinkage=profiling.SPREAD_SHRINKAGE)
    lo, hi = np.minimum(s_own, s_pool), np.maximum(s_own, s_pool)
    assert np.all(s_mid >= lo - 1e-9) and np.all(s_mid <= hi + 1e-9)
    np.testing.assert_allclose(
        s_pool, np.broadcast_to(profiling.pooled_control_spread(x, plates, control.to_numpy()), s_pool.shape), rtol=1e-5
    )


def test_controls_is_per_plate_and_pooled_can_be_fitted_on_training_plates():
    df = screen()
    feats = schema.feature_columns(df.columns)
    bad = df.copy()
    test = bad[schema.PLATE] == "P3"
    bad.loc[test, feats] = np.random.default_rng(5).normal(1e3, 1e3, size=(int(test.sum()), len(feats)))
    train = ~test.to_numpy()
    a = profiling.normalize(df, "controls")[feats].to_numpy()[train]
    b = profiling.normalize(bad, "controls")[feats].to_numpy()[train]
    np.testing.assert_array_equal(a, b)
    # pooled shares the control spread across plates ...
    c = profiling.normalize(bad, "pooled")[feats].to_numpy()[train]
    assert not np.allclose(profiling.normalize(df, "pooled")[feats].to_numpy()[train], c)
    # ... unless it is fitted on the training plates' controls only.
    x, plates, ctrl = df[feats].to_numpy(float), df[schema.PLATE].to_numpy(), profiling.is_control(df).to_numpy()
    spread = profiling.pooled_control_spread(x[train], plates[train], ctrl[train])
    d = profiling.normalize(df, "pooled", pooled_spread=spread)[feats].to_numpy()[train]
    e = profiling.normalize(bad, "pooled", pooled_spread=spread)[feats].to_numpy()[train]
    np.testing.assert_array_equal(d, e)


def test_a_plate_with_one_control_gets_a_finite_spread():
    df = screen(n_controls=6)
    drop = (df[schema.PLATE] == "P1") & (df[schema.TREATMENT] == "DMSO") & (df[schema.WELL] != "W00")
    df = df[~drop].reset_index(drop=True)
    out = profiling.normalize(df, "pooled")
    feats = schema.feature_columns(df.columns)
    assert np.isfinite(out[feats].to_numpy()).all()
    # Own spread of one control would be 0 (then sd 0, then 1); shrinkage uses the pooled one.
    assert out.loc[df[schema.PLATE] == "P1", feats].abs().max().max() < 50


def test_plate_without_controls():
    df = screen()
    df.loc[df[schema.PLATE] == "P2", schema.TREATMENT] = "T9"
    with pytest.raises(ValueError, match="plate 'P2' has no negative-control rows"):
        profiling.normalize(df, "controls")
    with pytest.warns(UserWarning, match="chose plate"):
        done = profiling.normalize_table(df, "auto")
    assert done.method == "plate"


def test_already_normalised_table_warns_and_auto_skips():
    df = screen()
    normalised = profiling.normalize(df, "controls")
    assert profiling.looks_normalized(df, profiling.is_control(df)) is None
    assert profiling.looks_normalized(normalised, profiling.is_control(df)) == "each plate's negative controls"
    with pytest.warns(profiling.AlreadyNormalizedWarning, match="--normalize none"):
        profiling.normalize(normalised, "controls")
    with pytest.warns(profiling.AlreadyNormalizedWarning, match="chose none"):
        done = profiling.normalize_table(normalised)
    assert done.method == "none"
    pd.testing.assert_frame_equal(done.table, normalised)


def test_raw_table_resolves_to_controls_without_warning():
    df = screen()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = profiling.normalize_table(df)
    assert done.method == "pooled" and done.control.sum() == 4 * 6 and "negative-control" in done.note
    assert done.pooled_spread is not None and done.pooled_spread.shape == (8,)
    again = profiling.normalize_table(df, "pooled", pooled_spread=done.pooled_spread)
    pd.testing.assert_frame_equal(again.table, done.table)
    assert list(done.table.columns) == list(df.columns)


def test_normalize_none_and_bad_method():
    df = screen()
    pd.testing.assert_frame_equal(profiling.normalize(df, "none"), df)
    with pytest.raises(ValueError, match="unknown normalization 'z'"):
        profiling.normalize(df, "z")
    with pytest.raises(KeyError, match="Metadata_Batch"):
        profiling.normalize_table(df, "controls", plate="Metadata_Batch")


def test_robust_scale_matches_normal_mad_and_falls_back():
    x = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 2.0], [3.0, 5.0, 2.0], [10.0, 6.0, 2.0], [np.nan, 5.0, 2.0]])
    center, spread = profiling.robust_scale(x)
    np.testing.assert_allclose(center, [2.5, 5.0, 2.0])
    # column 0: |x - 2.5| = 1.5, .5, .5, 7.5 -> MAD 1.0 -> 1.4826 (normal scale)
    assert spread[0] == pytest.approx(1.482602218, rel=1e-8)
    assert spread[1] == pytest.approx(np.std([5, 5, 5, 6, 5]))  # MAD 0 -> standard deviation
    assert spread[2] == 1.0  # constant -> 1


@pytest.mark.parametrize("n_rows", [1, 2, 7, 40])
def test_robust_scale_equals_numpy_and_scipy_to_the_last_bit(n_rows):
    """The vectorised medians give exactly np.nanmedian and scipy's nan-omitting MAD (odd and even
    counts of non-NaN values per column, columns all NaN, none NaN)."""
    import warnings

    from scipy.stats import median_abs_deviation

    rng = np.random.default_rng(n_rows)
    x = rng.lognormal(size=(n_rows, 60)) * rng.choice([1e-3, 1.0, 1e4], size=60)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 0] = np.nan
    x[:, 1] = 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        center = np.nanmedian(x, axis=0)
        mad = np.asarray(median_abs_deviation(x, axis=0, scale="normal", nan_policy="omit"))
        got_center, got_spread = profiling.robust_scale(x)
    np.testing.assert_array_equal(got_center, center)
    finite = np.isfinite(mad) & (mad > 0)
    np.testing.assert_array_equal(got_spread[finite], mad[finite])
    assert profiling.robust_scale(np.empty((0, 3)))[1].tolist() == [1.0, 1.0, 1.0]


def test_consensus_profiles_are_medians_of_well_medians():
    df = pd.DataFrame(
        {
            schema.PLATE: ["P"] * 7,
            schema.WELL: ["A", "A", "A", "B", "C", "C", "D"],
            schema.TREATMENT: ["x", "x", "x", "x", "x", "x", "y"],
            "f": [1.0, 2.0, 100.0, 4.0, 10.0, 20.0, 7.0],
        }
    )
    cons = profiling.consensus_profiles(df, [schema.TREATMENT])
    # wells: A median 2, B 4, C 15 -> x median 4; y 7
    assert cons.set_index(schema.TREATMENT)["f"].to_dict() == {"x": 4.0, "y": 7.0}
    assert cons.set_index(schema.TREATMENT)["Metadata_n_wells"].to_dict() == {"x": 3, "y": 1}
    wells = profiling.well_profiles(df)
    assert len(wells) == 4 and wells["Metadata_n_sites"].tolist() == [3, 1, 2, 1]


@pytest.mark.skipif(
    not (BBBC021 / "BBBC021_feature_selected_mad_robustize.csv").exists(),
    reason="BBBC021 profiles not in ../shared/data/bbbc021",
)
def test_pycytominer_profiles_are_detected_as_normalised():
    df = pd.read_csv(BBBC021 / "BBBC021_feature_selected_mad_robustize.csv")
    with pytest.warns(profiling.AlreadyNormalizedWarning, match="all wells"):
        done = profiling.normalize_table(df, control=control_mask(df, treatment="Metadata_Compound"))
    assert done.method == "none"
    with pytest.warns(profiling.AlreadyNormalizedWarning, match="pass --normalize none"):
        profiling.normalize_table(df, "controls", control=control_mask(df, treatment="Metadata_Compound"))


def test_sphering_whitens_the_controls_only():
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(4, 4))
    ctrl = rng.normal(size=(400, 4)) @ mix  # correlated control variation
    treated = rng.normal(size=(50, 4)) @ mix + np.array([5.0, 0, 0, 0])
    df = pd.DataFrame(np.vstack([ctrl, treated]), columns=[f"f{j}" for j in range(4)])
    df[schema.TREATMENT] = ["DMSO"] * 400 + ["T"] * 50
    control = profiling.is_control(df).to_numpy()
    out = profiling.sphere(df, control, epsilon=1e-9)
    white = out.loc[control, [f"f{j}" for j in range(4)]].to_numpy()
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(white.mean(axis=0), 0, atol=1e-9)
    assert out[schema.TREATMENT].tolist() == df[schema.TREATMENT].tolist()
    with pytest.raises(ValueError, match="at least 2 negative-control rows"):
        profiling.sphere(df, np.zeros(len(df), dtype=bool))
