"""Issue 15 #6: a vote store locked by another process: a bounded wait, a clear message, no lost vote.

The lock is real: a second Python process holds an exclusive SQLite write transaction.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_app import CHANNELS, _app_test, build_table

from moa_features import votes as votes_module
from moa_features.votes import VoteStore, VoteStoreBusy

HOLD = """
import select, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO votes (created_at, session_id, moa, site_id, control_site_id, channels) "
            "VALUES ('t', 'other', 'm', 's', 'c', 'w1,w2,w3')")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))  # hold the write lock until told, or at most argv[2] s
con.execute("ROLLBACK")
"""
HOLD_S = 20.0  # the holder lets go on its own after this: a writer that waits longer gets the lock


class Holder:
    """A second process holding an exclusive write lock on a vote store until :meth:`release`."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path), str(HOLD_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return build_table(tmp_path_factory.mktemp("locked"))


def test_a_locked_store_raises_busy_after_the_bounded_wait(tmp_path):
    path = tmp_path / "v.sqlite"
    VoteStore(path)
    holder = Holder(path)
    try:
        store = VoteStore(path, timeout=1.0, retries=0)
        t0 = time.monotonic()
        with pytest.raises(VoteStoreBusy, match=r"v.sqlite: the vote store is locked by another process"):
            store.add("s", "MoA", "site", "control", ["w1", "w2", "w3"])
        assert time.monotonic() - t0 < 5
        assert store.votes().empty  # reading still works (WAL) and shows no half-written vote
    finally:
        holder.release()
    assert store.add("s", "MoA", "site", "control", ["w1", "w2", "w3"]) == 1


def test_the_page_keeps_a_vote_the_locked_store_refused_and_stores_it_on_retry(monkeypatch, tmp_path, table):
    votes = tmp_path / "votes.sqlite"
    VoteStore(votes)
    monkeypatch.setattr(votes_module, "APP_TIMEOUT", 1.0)  # the app's bounded wait, shortened for the test
    at = _app_test(monkeypatch, table, votes).run()
    at = at.selectbox(key="moa").select("Interleukin").run()
    shown = next(c.value for c in at.markdown if c.value.startswith("**Interleukin**"))
    holder = Holder(votes)
    try:
        for ch in CHANNELS:
            at.checkbox(key=f"pick_{ch}").set_value(ch in ("w1", "w2", "w5"))
        t0 = time.monotonic()
        at = at.button(key="submit").click().run()
        waited = time.monotonic() - t0
        assert not at.exception, at.exception
        # SQLite sleeps its whole busy timeout before giving up, so this lower bound holds on any machine; an
        # app that waited past its bound (not the 1 s of APP_TIMEOUT) would outlast the holder and store the vote.
        assert waited >= 1.0
        assert "Your vote (w1, w2, w5) for Interleukin could not be stored yet" in at.error[0].value
        assert "locked by another process" in at.error[0].value and "It is kept" in at.error[0].value
        assert at.button(key="retry_vote").label == "Retry saving vote (1 kept)"
    finally:
        holder.release()
    assert VoteStore(votes).votes().empty  # the other process rolled back: nothing stored yet
    at = at.button(key="retry_vote").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value == "Thank you: your vote (w1, w2, w5) for Interleukin was stored."
    rows = VoteStore(votes).votes()
    assert len(rows) == 1 and rows.iloc[0]["channels"] == "w1,w2,w5"
    assert f"`{rows.iloc[0]['site_id']}`" in shown  # the pair the user saw when voting
    assert not [b for b in at.button if b.key == "retry_vote"]
