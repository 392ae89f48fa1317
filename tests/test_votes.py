"""The SQLite vote store: schema, validation, summary and multi-process writes."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from datetime import UTC, datetime

import pandas as pd
import pytest

from moa_features import schema
from moa_features.votes import VOTE_COLUMNS, VoteStore, channel_sort_key, validate_choice

CHANNELS = ["w1", "w2", "w3", "w4", "w5", "w6"]


def test_schema_and_wal_mode(tmp_path):
    path = schema.sidecar_paths(tmp_path / "features" / "demo.parquet")["votes"]
    store = VoteStore(path)
    assert path == tmp_path / "features" / "demo.votes.sqlite" and path.is_file()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        info = con.execute("PRAGMA table_info(votes)").fetchall()
    finally:
        con.close()
    assert [row[1] for row in info] == list(VOTE_COLUMNS)
    assert {row[1]: row[2] for row in info}["id"] == "INTEGER" and info[0][5] == 1  # primary key
    assert store.votes().empty and list(store.votes().columns) == list(VOTE_COLUMNS)
    assert store.summary().empty and list(store.summary().columns) == ["moa", "channel", "votes"]


def test_add_stores_channels_in_channel_order(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    before = datetime.now(UTC)
    first = store.add("session-a", "Actin disruptor", "P1_B03_1", "P1_B02_1", ["w5", "w1", "w3"])
    second = store.add("session-b", "Actin disruptor", "P1_B03_2", "P1_B02_2", ("w10", "w2", "w9"))
    assert second == first + 1
    rows = store.votes()
    assert rows["channels"].tolist() == ["w1,w3,w5", "w2,w9,w10"]
    assert rows.loc[0, ["session_id", "moa", "site_id", "control_site_id"]].tolist() == [
        "session-a",
        "Actin disruptor",
        "P1_B03_1",
        "P1_B02_1",
    ]
    stamp = datetime.fromisoformat(rows.loc[0, "created_at"])
    assert stamp.utcoffset().total_seconds() == 0 and before <= stamp <= datetime.now(UTC)
    # an explicit channel order (e.g. a dataset's DAPI/Tubulin/Actin) wins over name order
    store.add("s", "Tubulin", "x", "c", ["Actin", "DAPI", "Tubulin"], order=["DAPI", "Tubulin", "Actin"])
    assert store.votes()["channels"].iloc[-1] == "DAPI,Tubulin,Actin"


@pytest.mark.parametrize(
    "channels, message",
    [
        (["w1", "w2"], "exactly 3 channels (you chose 2)"),
        (["w1", "w2", "w3", "w4"], "exactly 3 channels (you chose 4)"),
        ([], "exactly 3 channels (you chose 0)"),
        (["w1", "w1", "w2"], "chosen twice"),
        ("w1w2w3", "sequence of channel names"),
        (["w1", "w2,w3", "w4"], "no comma"),
    ],
)
def test_invalid_choices_store_nothing(tmp_path, channels, message):
    store = VoteStore(tmp_path / "v.sqlite")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.add("s", "MoA", "site", "control", channels)
    assert store.votes().empty


def test_unknown_channel_and_empty_fields_rejected(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    with pytest.raises(ValueError, match=r"unknown channel\(s\) \['w7'\]"):
        store.add("s", "MoA", "site", "control", ["w1", "w2", "w7"], order=CHANNELS)
    with pytest.raises(ValueError, match="non-empty text for moa, control_site_id"):
        store.add("s", " ", "site", "", ["w1", "w2", "w3"])
    assert store.votes().empty


def test_summary_counts_and_zero_fills(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    store.add("s1", "B", "b1", "c1", ["w1", "w2", "w3"])
    store.add("s2", "B", "b2", "c2", ["w1", "w3", "w5"])
    store.add("s1", "A", "a1", "c1", ["w4", "w5", "w6"])
    seen = store.summary()
    assert seen["moa"].tolist() == ["A"] * 6 + ["B"] * 6
    assert seen["channel"].tolist() == CHANNELS * 2
    assert seen["votes"].tolist() == [0, 0, 0, 1, 1, 1, 2, 1, 2, 0, 1, 0]
    assert seen["votes"].dtype == "int64"
    # every vote contributes three channels
    assert seen.groupby("moa")["votes"].sum().to_dict() == {"A": 3, "B": 6}
    # channels never voted for are filled in when named, in the given order
    full = store.summary(["w6", "w5", "w4", "w3", "w2", "w1", "w7"])
    assert full.loc[full["moa"] == "A", "channel"].tolist() == ["w6", "w5", "w4", "w3", "w2", "w1", "w7"]
    assert full.loc[full["moa"] == "A", "votes"].tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_channel_sort_key_is_natural():
    assert sorted(["w10", "w2", "w1", "DAPI"], key=channel_sort_key) == ["DAPI", "w1", "w2", "w10"]
    assert validate_choice(["w3", " w1", "w2 "]) == ["w1", "w2", "w3"]


def test_existing_table_with_other_schema_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE votes (id INTEGER PRIMARY KEY, who TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match=r"other.sqlite: table 'votes' has columns \['id', 'who'\]"):
        VoteStore(path)


def _vote_many(path: str, worker: int, n: int, barrier) -> None:
    store = VoteStore(path)
    barrier.wait()
    for i in range(n):
        chosen = [CHANNELS[(worker + i + k) % 6] for k in range(3)]
        store.add(f"session-{worker}", f"MoA {i % 3}", f"site-{worker}-{i}", f"control-{worker}", chosen)


def test_concurrent_processes_lose_no_vote(tmp_path):
    path = str(tmp_path / "v.sqlite")
    VoteStore(path)
    n_workers, n_votes = 4, 25
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n_workers)
    procs = [ctx.Process(target=_vote_many, args=(path, w, n_votes, barrier)) for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n_workers
    rows = VoteStore(path).votes()
    assert len(rows) == n_workers * n_votes
    assert rows["id"].is_unique
    assert set(rows["site_id"]) == {f"site-{w}-{i}" for w in range(n_workers) for i in range(n_votes)}
    summary = VoteStore(path).summary()
    assert summary["votes"].sum() == 3 * n_workers * n_votes
    expected = (
        rows.assign(channel=rows["channels"].str.split(",")).explode("channel").groupby(["moa", "channel"]).size()
    )
    got = summary.set_index(["moa", "channel"])["votes"]
    pd.testing.assert_series_equal(got[got > 0], expected, check_names=False)
