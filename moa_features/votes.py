"""SQLite store of people's channel votes from the comparison app.

One row per vote: a person saw a site of one mechanism of action (MoA) beside a negative
control from the same plate and ticked the three channels that differ most. The file is
``features/NAME.votes.sqlite`` by default (:func:`moa_features.schema.sidecar_paths`).

Table ``votes(id INTEGER PRIMARY KEY, created_at TEXT, session_id TEXT, moa TEXT,
site_id TEXT, control_site_id TEXT, channels TEXT)``: ``created_at`` is ISO 8601 UTC,
``channels`` the three channel names comma-joined in channel order (``"w1,w3,w5"``).

The database runs in WAL mode with a busy timeout, and every call opens and closes its own
connection, so several app sessions, browser tabs and processes can write at once; a write
that still meets ``database is locked`` is retried with back-off. The wait is bounded: after
``timeout`` seconds per attempt and ``retries`` extra attempts, :class:`VoteStoreBusy` is raised
(the app uses a 5 s budget, then tells the user and keeps the vote for a retry).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pandas as pd

N_CHOSEN = 3  # channels a vote names
VOTE_COLUMNS = ("id", "created_at", "session_id", "moa", "site_id", "control_site_id", "channels")
SUMMARY_COLUMNS = ("moa", "channel", "votes")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    session_id TEXT NOT NULL,
    moa TEXT NOT NULL,
    site_id TEXT NOT NULL,
    control_site_id TEXT NOT NULL,
    channels TEXT NOT NULL
)
"""

T = TypeVar("T")
APP_TIMEOUT = 5.0  # seconds the app waits for a locked store before telling the user


class VoteStoreBusy(sqlite3.OperationalError):
    """The store stayed locked by another connection for the whole bounded wait."""


def channel_sort_key(name: str) -> tuple:
    """Natural order of channel names: ``w2`` before ``w10``; plain names alphabetically."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name) if tok)


def order_channels(channels: Sequence[str], order: Sequence[str] | None = None) -> list[str]:
    """``channels`` sorted by their position in ``order`` (default: natural name order)."""
    if order is None:
        return sorted(channels, key=channel_sort_key)
    position = {c: i for i, c in enumerate(order)}
    unknown = [c for c in channels if c not in position]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; expected some of {list(order)}")
    return sorted(channels, key=position.__getitem__)


def validate_choice(channels: Sequence[str], order: Sequence[str] | None = None) -> list[str]:
    """Check a vote names exactly three distinct channels; return them in channel order.

    Raises ValueError with a message fit to show a user.
    """
    if isinstance(channels, str):
        raise ValueError(f"channels must be a sequence of channel names, got the string {channels!r}")
    names = [str(c).strip() for c in channels]
    if any(not n or "," in n for n in names):
        raise ValueError(f"channel names must be non-empty and contain no comma, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"a channel was chosen twice: {names}")
    if len(names) != N_CHOSEN:
        raise ValueError(f"choose exactly {N_CHOSEN} channels (you chose {len(names)})")
    return order_channels(names, order)


class VoteStore:
    """Votes in the SQLite file ``path`` (created with its schema if absent).

    ``timeout`` (seconds) is SQLite's busy timeout per statement; ``retries`` bounds the
    extra attempts after a ``database is locked`` error.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0, retries: int = 8):
        self.path = Path(path)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._retry(self._create)

    def __repr__(self) -> str:
        return f"VoteStore({str(self.path)!r})"

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise sqlite3.OperationalError(f"{self.path}: cannot open the vote store: {exc}") from exc
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return con

    def _retry(self, fn: Callable[[], T]) -> T:
        delay = 0.05
        t0 = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if "locked" not in msg and "busy" not in msg:
                    raise
                if attempt == self.retries:
                    raise VoteStoreBusy(
                        f"{self.path}: the vote store is locked by another process or connection "
                        f"(waited {time.monotonic() - t0:.0f} s)"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _create(self) -> None:
        with closing(self._connect()) as con:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(
                    f"{self.path}: cannot switch the vote store to WAL mode (got {mode!r}); "
                    "is it on a network file system?"
                )
            con.execute(_SCHEMA)
            columns = [row[1] for row in con.execute("PRAGMA table_info(votes)")]
            if tuple(columns) != VOTE_COLUMNS:
                raise ValueError(f"{self.path}: table 'votes' has columns {columns}, expected {list(VOTE_COLUMNS)}")

    # ------------------------------------------------------------------ API

    def add(
        self,
        session_id: str,
        moa: str,
        site_id: str,
        control_site_id: str,
        channels: Sequence[str],
        order: Sequence[str] | None = None,
    ) -> int:
        """Store one vote; return its row id.

        ``channels``: exactly three distinct channel names (ValueError otherwise), stored
        comma-joined in channel order: their order in ``order`` if given (the dataset's
        channels), else natural name order (``w1, w2, ..., w10``).
        """
        chosen = validate_choice(channels, order)
        fields = {"session_id": session_id, "moa": moa, "site_id": site_id, "control_site_id": control_site_id}
        empty = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if empty:
            raise ValueError(f"a vote needs non-empty text for {', '.join(empty)}")
        created = datetime.now(UTC).isoformat(timespec="microseconds")
        row = (created, session_id, moa, site_id, control_site_id, ",".join(chosen))

        def insert() -> int:
            with closing(self._connect()) as con:
                cur = con.execute(
                    "INSERT INTO votes (created_at, session_id, moa, site_id, control_site_id, channels) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                return int(cur.lastrowid)

        return self._retry(insert)

    def votes(self) -> pd.DataFrame:
        """Every vote, in id order, with the columns of the ``votes`` table."""

        def read() -> pd.DataFrame:
            with closing(self._connect()) as con:
                rows = con.execute(f"SELECT {', '.join(VOTE_COLUMNS)} FROM votes ORDER BY id").fetchall()
            return pd.DataFrame(rows, columns=list(VOTE_COLUMNS))

        df = self._retry(read)
        return df.astype({"id": "int64"})

    def summary(self, channels: Sequence[str] | None = None) -> pd.DataFrame:
        """Votes per channel per MoA: columns ``moa, channel, votes`` (int).

        One row for every (MoA voted on, channel) pair, zero-filled, where the channels are
        every channel seen in a vote plus ``channels`` if given; sorted by MoA, then channel
        order (``channels``' order first, then natural name order).
        """
        df = self.votes()
        exploded = df[["moa"]].assign(channel=df["channels"].str.split(",")).explode("channel")
        extra = list(dict.fromkeys(channels or []))
        order = extra + sorted(set(exploded["channel"]) - set(extra), key=channel_sort_key)
        index = pd.MultiIndex.from_product([sorted(df["moa"].unique()), order], names=["moa", "channel"])
        counts = exploded.groupby(["moa", "channel"]).size()
        return counts.reindex(index, fill_value=0).rename("votes").astype("int64").reset_index()
