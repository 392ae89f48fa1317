"""The channel-comparison app: its pure helpers, the launcher, and the page under AppTest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features import app, schema
from moa_features.columns import Columns
from moa_features.datasets import open_dataset
from moa_features.display import contrast_limits
from moa_features.io import read_table, write_table
from moa_features.synthetic import make_screen
from moa_features.votes import VoteStore

CHANNELS = [f"w{i}" for i in range(1, 7)]


def build_table(root: Path) -> Path:
    """A real feature table of the tiny synthetic screen (PNG files on disk) in ``root``.

    MoAs come from the screen's ground truth; features are per-channel intensity statistics
    and one channel correlation, measured here on the real pixels.
    """
    meta = make_screen(root / "screen", preset="tiny", seed=0)
    truth = pd.read_csv(meta.parent / "ground_truth.csv").set_index("site_id")["moa"]
    rows = []
    for site in open_dataset(meta).sites:
        image = site.load().astype(np.float64)
        features = {}
        for i, ch in enumerate(site.channels):
            features[f"Image_Intensity_Mean_{ch}"] = image[i].mean()
            features[f"Image_Intensity_StdDev_{ch}"] = image[i].std()
            features[f"Image_Intensity_Percentile99_{ch}"] = np.percentile(image[i], 99)
        features["Image_Correlation_Pearson_w1_w2"] = np.corrcoef(image[0].ravel(), image[1].ravel())[0, 1]
        rows.append(site.metadata | {schema.MOA: truth[site.site_id]} | features)
    return write_table(pd.DataFrame(rows).sort_values(schema.SITE_ID), root / "features" / "tiny.parquet")


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return build_table(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def prepared(table) -> pd.DataFrame:
    df, note = app.prepare_table(read_table(table), table)
    assert note is None
    return df


# --------------------------------------------------------------------------- contrast


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_contrast_limits_match_numpy_on_pooled_pixels(dtype):
    rng = np.random.default_rng(0)
    top = {np.uint8: 256, np.uint16: 4096, np.float32: 1000}[dtype]
    a = rng.integers(0, top, size=(6, 37, 41)).astype(dtype)
    b = (rng.integers(0, top // 2, size=(6, 20, 30)) * 2).astype(dtype)
    got = contrast_limits(a, b, low=0.5, high=99.5)
    for c in range(6):
        pooled = np.concatenate([a[c].ravel(), b[c].ravel()])
        want = np.percentile(pooled, [0.5, 99.5], method="inverted_cdf")
        np.testing.assert_array_equal(got[c], want)
    # extreme percentiles are the minimum and maximum
    np.testing.assert_array_equal(contrast_limits(a, low=0, high=100)[:, 1], a.reshape(6, -1).max(axis=1))
    np.testing.assert_array_equal(contrast_limits(a, low=0, high=100)[:, 0], a.reshape(6, -1).min(axis=1))


def test_contrast_limits_reject_mismatched_channels():
    with pytest.raises(ValueError, match="same C"):
        contrast_limits(np.zeros((6, 4, 4), np.uint8), np.zeros((5, 4, 4), np.uint8))


def test_apply_limits_known_values():
    image = np.array([[[0, 10, 15, 20, 30]], [[0, 10, 15, 20, 30]]], dtype=np.uint8)
    out = app.apply_limits(image, np.array([[10.0, 20.0], [0.0, 30.0]]))
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 128, 255, 255]
    assert out[1, 0].tolist() == [0, 85, 128, 170, 255]
    # a constant channel does not divide by zero
    assert app.apply_limits(np.full((1, 2, 2), 7, np.uint8), np.array([[7.0, 7.0]])).max() == 0


def test_same_contrast_for_both_images_of_a_pair():
    rng = np.random.default_rng(1)
    site = rng.integers(0, 100, size=(2, 16, 16)).astype(np.uint8)
    control = rng.integers(100, 200, size=(2, 16, 16)).astype(np.uint8)
    shown_site, shown_control = app.display_pair(site, control)
    # the brighter control stays brighter: one mapping for both images, per channel
    assert shown_site.mean() < 64 and shown_control.mean() > 128
    limits = contrast_limits(site, control, low=app.CONTRAST_PERCENTILES[0], high=app.CONTRAST_PERCENTILES[1])
    np.testing.assert_array_equal(shown_control, app.apply_limits(control, limits))


def test_reduce_for_display_block_means():
    image = np.arange(4 * 6, dtype=np.uint8).reshape(1, 4, 6)
    out = app.reduce_for_display(image, max_size=3)
    assert out.shape == (1, 2, 3)
    assert out[0, 0, 0] == round(np.mean([0, 1, 6, 7]))
    big = np.zeros((6, 1024, 1000), np.uint8)
    assert app.reduce_for_display(big).shape == (6, 512, 500)
    assert app.reduce_for_display(image, max_size=6) is image


# --------------------------------------------------------------------------- the table


def test_prepare_table_fallback_and_controls(prepared, table):
    raw = read_table(table)
    assert list(app.table_channels(raw.columns)) == CHANNELS
    # controls keep their MoA; EMPTY treatments are controls
    empty = prepared[schema.TREATMENT] == "EMPTY"
    assert (prepared.loc[empty, schema.MOA] == schema.NEGATIVE_CONTROL_MOA).all() and empty.sum() == 12
    no_moa = raw.drop(columns=[schema.MOA])
    df, note = app.prepare_table(no_moa, "x.parquet")
    assert "x.parquet has no Metadata_moa column" in note and "Metadata_Treatment" in note
    assert df.loc[~empty.to_numpy(), schema.MOA].tolist() == raw.loc[~empty, schema.TREATMENT].tolist()
    assert (df.loc[empty.to_numpy(), schema.MOA] == schema.NEGATIVE_CONTROL_MOA).all()


def test_prepare_table_names_missing_columns(table):
    raw = read_table(table)
    bad = raw.drop(columns=[schema.PLATE, schema.MOA, schema.TREATMENT])
    with pytest.raises(ValueError, match=r"t.parquet: the app needs column\(s\) Metadata_Plate, Metadata_moa"):
        app.prepare_table(bad, "t.parquet")
    no_paths = raw.drop(columns=[c for c in raw.columns if c.startswith(schema.PATH_PREFIX)])
    with pytest.raises(ValueError, match="Metadata_Path_<channel>"):
        app.prepare_table(no_paths, "t.parquet")
    with pytest.raises(ValueError, match="occurs more than once"):
        app.prepare_table(pd.concat([raw, raw.iloc[:1]]), "t.parquet")


def test_moa_counts_sorted_by_count_then_name(prepared):
    counts = app.moa_counts(prepared)
    assert schema.NEGATIVE_CONTROL_MOA not in counts.index
    assert counts.to_dict() == {
        "Growth factor": 16,
        "Interleukin": 16,
        "GPCR agonist": 12,
        "Interferon": 8,
        "TNF ligand": 8,
        "Tyrosine kinase receptor agonist": 8,
        "Wnt agonist": 8,
        "Wnt antagonist": 8,
    }
    assert list(counts.index)[-2:] == ["Wnt agonist", "Wnt antagonist"]


def test_draw_pair_same_plate_controls(prepared):
    rng = np.random.default_rng(0)
    by_id = prepared.set_index(schema.SITE_ID)
    seen = set()
    for _ in range(40):
        site, control = app.draw_pair(prepared, "Interleukin", rng)
        assert by_id.loc[site, schema.MOA] == "Interleukin"
        assert by_id.loc[control, schema.MOA] == schema.NEGATIVE_CONTROL_MOA
        assert by_id.loc[site, schema.PLATE] == by_id.loc[control, schema.PLATE]
        seen.add(site)
    assert len(seen) > 6  # random sites, not always the first
    assert app.draw_pair(prepared, "TNF ligand", np.random.default_rng(5)) == app.draw_pair(
        prepared, "TNF ligand", np.random.default_rng(5)
    )
    wnt_plates = prepared.loc[prepared[schema.MOA] == "Wnt agonist", schema.PLATE].unique()
    its_controls = (prepared[schema.MOA] == schema.NEGATIVE_CONTROL_MOA) & prepared[schema.PLATE].isin(wnt_plates)
    lonely = prepared[~its_controls]
    with pytest.raises(ValueError, match="no site of 'Wnt agonist' is on a plate with negative-control sites"):
        app.draw_pair(lonely, "Wnt agonist", rng)


def test_load_site_from_stored_paths_and_images_root(prepared, table):
    row = prepared.iloc[0]
    image = app.load_site(row, CHANNELS)
    assert image.shape == (6, 128, 128) and image.dtype == np.uint8
    moved = row.copy()
    for ch in CHANNELS:
        moved[schema.PATH_PREFIX + ch] = "/nonexistent/elsewhere/" + Path(row[schema.PATH_PREFIX + ch]).name
    with pytest.raises(FileNotFoundError, match="pass --images"):
        app.load_site(moved, CHANNELS)
    sites = {s.site_id: s for s in open_dataset(table.parents[1] / "screen").sites}
    np.testing.assert_array_equal(app.load_site(moved, CHANNELS, sites), image)
    np.testing.assert_array_equal(app.load_site(moved, ["w3", "w1"], sites), image[[2, 0]])
    with pytest.raises(KeyError, match="neither at its stored paths nor in the dataset"):
        app.load_site(moved, CHANNELS, {})


# --------------------------------------------------------------------------- what the models say


def test_channel_features_tokens():
    names = [
        "Image_Intensity_Sum_w1",
        "Image_Intensity_Sum_w10",
        "Image_Correlation_Pearson_w1_w5",
        "Image_Texture_Contrast_w3_1_avg_32",
        "Nuclei_Count",
        "Cells_Intensity_Mean_w5_Mean",
    ]
    assert app.channel_features(names, "w1") == ["Image_Intensity_Sum_w1", "Image_Correlation_Pearson_w1_w5"]
    assert app.channel_features(names, "w5") == ["Image_Correlation_Pearson_w1_w5", "Cells_Intensity_Mean_w5_Mean"]
    assert app.channel_features(names, "w3") == ["Image_Texture_Contrast_w3_1_avg_32"]


def test_models_find_the_shifted_channel():
    """A constructed screen where MoA 'Actin' shifts only w3 features: the model table says w3."""
    rng = np.random.default_rng(0)
    n_plates, per_plate = 3, 20
    plate = np.repeat([f"P{i}" for i in range(n_plates)], per_plate)
    moa = np.tile(["Negative control"] * 10 + ["Actin"] * 5 + ["Other"] * 5, n_plates)
    df = pd.DataFrame({schema.PLATE: plate, schema.MOA: moa})
    for ch in CHANNELS:
        offset = np.repeat(rng.normal(0, 5, n_plates), per_plate)  # plate effect, removed by normalisation
        df[f"Image_Intensity_Mean_{ch}"] = rng.normal(100, 1, len(df)) + offset
        df[f"Image_Intensity_StdDev_{ch}"] = rng.normal(10, 1, len(df))
    df.loc[df[schema.MOA] == "Actin", "Image_Intensity_Mean_w3"] += 8.0
    df.loc[df[schema.MOA] == "Actin", "Image_Intensity_StdDev_w3"] -= 4.0
    effects = app.model_effects(df)
    assert list(effects.index) == ["Actin", "Other"]
    table = app.model_channel_table(effects.loc["Actin"], CHANNELS, top=2)
    assert table["channel"].tolist() == [ch for ch in CHANNELS for _ in range(2)]
    w3 = table[table["channel"] == "w3"]
    assert w3["feature"].tolist() == ["Image_Intensity_Mean_w3", "Image_Intensity_StdDev_w3"]
    assert w3["effect"].iat[0] > 5 and w3["effect"].iat[1] < -2
    compared = app.compare_channels(pd.Series({"w3": 4, "w1": 2, "w5": 2}), table, CHANNELS)
    assert compared.set_index("channel").loc["w3", ["votes", "people_rank", "model_rank"]].tolist() == [4, 1, 1]
    assert compared["people_rank"].isna().sum() == 3  # channels nobody chose have no rank
    assert compared["stain"].iat[2] == "Phalloidin (actin)"
    assert app.channel_label("w3") == "w3 · Phalloidin (actin)"
    assert app.channel_label("w3", short=True) == "w3 · Phalloidin" and app.channel_label("DAPI") == "DAPI"


@pytest.mark.slow
def test_models_on_extracted_demo_features_see_the_interleukin_channels(tmp_path):
    """On the real pipeline's table (tiny screen, extract, annotation), the models' strongest
    channels for Interleukin are the ones its phenotype changes: ER (w2) and Golgi (w6)."""
    from moa_features.extract import extract

    meta = make_screen(tmp_path / "screen", preset="tiny", seed=0)
    result = extract(meta, tmp_path / "features" / "tiny.parquet", annotation="auto", progress=False, thumbs=None)
    assert result.n_failed == 0
    df, note = app.prepare_table(read_table(result.table), result.table)
    assert note is None
    effects = app.model_effects(df)
    compared = app.compare_channels(
        pd.Series(dtype="int64"), app.model_channel_table(effects.loc["Interleukin"], CHANNELS), CHANNELS
    )
    assert set(compared.nsmallest(2, "model_rank")["channel"]) == {"w2", "w6"}


def test_model_effects_need_controls(prepared):
    with pytest.raises(ValueError, match="no plate has negative-control sites"):
        app.model_effects(prepared[prepared[schema.MOA] != schema.NEGATIVE_CONTROL_MOA])


# --------------------------------------------------------------------------- launcher


def test_main_rejects_bad_tables(tmp_path, table, capsys):
    assert app.main(["--features", str(tmp_path / "missing.parquet")]) == 2
    assert "missing.parquet: feature table not found" in capsys.readouterr().err
    bad = write_table(read_table(table).drop(columns=[schema.SITE_ID]), tmp_path / "bad.parquet")
    assert app.main(["--features", str(bad)]) == 2
    assert "bad.parquet: the app needs column(s) Metadata_site_id" in capsys.readouterr().err


def test_arguments_from_environment(tmp_path):
    env = {app.ENV_TABLE: "t.parquet", app.ENV_VOTES: "v.sqlite", app.ENV_SEED: "3"}
    args = app._script_args(["pytest", "-x"], env)
    assert (args.features, args.votes, args.seed, args.images) == (Path("t.parquet"), Path("v.sqlite"), 3, None)
    args = app._script_args([app.__file__, "--features", "other.parquet", "--images", "/data"], env)
    assert (args.features, args.images, args.votes) == (Path("other.parquet"), Path("/data"), Path("v.sqlite"))
    assert app.votes_path("features/demo.parquet") == Path("features/demo.votes.sqlite")
    assert app.votes_path("features/demo.parquet", "x.sqlite") == Path("x.sqlite")


# --------------------------------------------------------------------------- the page


def _app_test(monkeypatch, table: Path, votes: Path, images: Path | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(app.ENV_TABLE, str(table))
    monkeypatch.setenv(app.ENV_VOTES, str(votes))
    monkeypatch.setenv(app.ENV_SEED, "0")
    if images is not None:
        monkeypatch.setenv(app.ENV_IMAGES, str(images))
    return AppTest.from_file(app.__file__, default_timeout=60)


def _pick(at, channels):
    for ch in CHANNELS:
        at.checkbox(key=f"pick_{ch}").set_value(ch in channels)
    return at.button(key="submit").click().run()


def test_page_vote_flow(monkeypatch, tmp_path, table, prepared):
    votes = tmp_path / "votes.sqlite"
    at = _app_test(monkeypatch, table, votes).run()
    assert not at.exception, at.exception
    moa_box = at.selectbox(key="moa")
    assert moa_box.options[:3] == ["Growth factor (16 sites)", "Interleukin (16 sites)", "GPCR agonist (12 sites)"]
    at = moa_box.select("Interleukin").run()
    assert len(at.image) == 12  # 2 rows x 6 channels
    captions = [c.value for c in at.markdown]
    assert any(c.startswith("**Interleukin**: site") for c in captions)

    at = _pick(at, ["w1", "w2"])
    assert not at.exception
    assert "Choose exactly 3 channels (you chose 2); nothing was stored." in at.error[0].value
    assert VoteStore(votes).votes().empty

    at = _pick(at, ["w1", "w2", "w5", "w6"])
    assert "(you chose 4)" in at.error[0].value and VoteStore(votes).votes().empty

    shown_pair = next(c.value for c in at.markdown if c.value.startswith("**Interleukin**"))
    at = _pick(at, ["w5", "w1", "w2"])
    assert not at.exception and not at.error
    assert at.success[0].value == "Thank you: your vote (w1, w2, w5) for Interleukin was stored."
    rows = VoteStore(votes).votes()
    assert len(rows) == 1
    vote = rows.iloc[0]
    assert (vote["moa"], vote["channels"]) == ("Interleukin", "w1,w2,w5")
    assert f"`{vote['site_id']}`" in shown_pair  # the pair the user saw is the one stored
    by_id = prepared.set_index(schema.SITE_ID)
    assert by_id.loc[vote["site_id"], schema.MOA] == "Interleukin"
    assert by_id.loc[vote["control_site_id"], schema.MOA] == schema.NEGATIVE_CONTROL_MOA
    assert by_id.loc[vote["site_id"], schema.PLATE] == by_id.loc[vote["control_site_id"], schema.PLATE]
    assert len(vote["session_id"]) == 32
    # ticks are cleared for the next pair; the summary shows the vote
    assert not any(at.checkbox(key=f"pick_{ch}").value for ch in CHANNELS)
    compared = next(d.value for d in at.dataframe if "people_rank" in d.value.columns)
    assert compared["channel"].tolist() == CHANNELS
    assert compared["votes"].tolist() == [1, 1, 0, 0, 1, 0]
    assert compared["model_feature"].notna().all()
    assert any("1 vote for Interleukin" in c.value for c in at.caption)

    # a second session adds its vote to the same store; the summary counts both
    at2 = _app_test(monkeypatch, table, votes).run()
    at2 = _pick(at2.selectbox(key="moa").select("Interleukin").run(), ["w1", "w3", "w4"])
    assert at2.success and len(VoteStore(votes).votes()) == 2
    assert VoteStore(votes).votes()["session_id"].nunique() == 2
    compared = next(d.value for d in at2.dataframe if "people_rank" in d.value.columns)
    assert compared["votes"].tolist() == [2, 1, 1, 1, 1, 0]


def test_page_reads_moved_images_from_root(monkeypatch, tmp_path, table):
    """A table whose stored image paths are gone is served from --images ROOT."""
    screen = tmp_path / "moved"
    shutil.copytree(table.parents[1] / "screen", screen)
    df = read_table(table)
    for ch in CHANNELS:
        column = schema.PATH_PREFIX + ch
        df[column] = df[column].str.replace(str(table.parents[1]), "/gone", regex=False)
    moved = write_table(df, tmp_path / "features" / "moved.parquet")
    at = _app_test(monkeypatch, moved, tmp_path / "v.sqlite").run()
    assert at.error and "pass --images" in at.error[0].value
    at = _app_test(monkeypatch, moved, tmp_path / "v.sqlite", images=screen).run()
    assert not at.exception and not at.error
    assert len(at.image) == 12


def test_columns_and_controls_named_by_the_user(table):
    """Issue 24: a table whose columns and controls have the user's names, given with the shared options."""
    raw = read_table(table).rename(
        columns={
            schema.PLATE: "Metadata_Barcode",
            schema.TREATMENT: "Metadata_Compound",
            schema.MOA: "Metadata_pathway",
        }
    )
    raw["Metadata_Compound"] = raw["Metadata_Compound"].replace({"EMPTY": "vehicle"})
    with pytest.raises(ValueError, match="Metadata_Plate.*--plate"):
        app.prepare_table(raw, "t.parquet")
    args = app.build_parser({}).parse_args(
        ["--features", "t.parquet", "--plate", "Metadata_Barcode", "--treatment", "Metadata_Compound",
         "--label", "Metadata_pathway", "--control", 'Metadata_Compound == "vehicle"']
    )  # fmt: skip
    df, note = app.prepare_table(raw, "t.parquet", Columns.from_args(args))
    vehicle = (raw["Metadata_Compound"] == "vehicle").to_numpy()
    assert note is None and vehicle.sum() == 12
    assert (df.loc[vehicle, schema.MOA] == schema.NEGATIVE_CONTROL_MOA).all()
    assert df.loc[~vehicle, schema.MOA].tolist() == raw.loc[~vehicle, "Metadata_pathway"].astype(str).tolist()
    assert df[schema.PLATE].tolist() == raw["Metadata_Barcode"].tolist()
