"""The channel-comparison app: people tick the channels where a treatment differs from control.

A user picks a mechanism of action (MoA); the app shows the channels of one random site of that
MoA above a negative-control site from the same plate (so plate effects do not mislead), each
channel with the same contrast in both images, and asks for the three channels that differ most.
Votes go to a SQLite :class:`~moa_features.votes.VoteStore`; a panel compares the votes per
channel with what the models see (the features of each channel that differ most from control).

Run it with ``moa-features app --features features/NAME.parquet [--images ROOT]
[--votes PATH] [--port N]``; :func:`main` launches ``streamlit run`` on this file. When
Streamlit executes this file it reads its settings from the arguments after ``--`` and, for
whatever those leave out, from the environment variables ``MOA_FEATURES_TABLE``,
``MOA_FEATURES_IMAGES``, ``MOA_FEATURES_VOTES`` and ``MOA_FEATURES_SEED`` (how tests point
``streamlit.testing.v1.AppTest`` at a table).

The functions above :class:`Page` are pure and work without Streamlit; :func:`render` draws the
page as a sequence of panels (MoA chooser, image pair, vote, comparison).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.columns import Columns, metadata_parent
from moa_features.display import contrast_limits, downsample

ENV_TABLE = "MOA_FEATURES_TABLE"
ENV_IMAGES = "MOA_FEATURES_IMAGES"
ENV_VOTES = "MOA_FEATURES_VOTES"
ENV_SEED = "MOA_FEATURES_SEED"
DEFAULT_PORT = 8501
CONTRAST_PERCENTILES = (0.5, 99.5)  # per channel, over both images of a pair
DISPLAY_SIZE = 512  # longest side of a displayed channel, pixels
TOP_FEATURES = 3  # model features listed per channel


# --------------------------------------------------------------------------- arguments


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Arguments of ``moa-features app``; ``environ`` supplies defaults (``MOA_FEATURES_*``)."""
    env = os.environ if environ is None else environ
    seed = env.get(ENV_SEED)
    p = argparse.ArgumentParser(
        prog="moa-features app",
        description="Show an MoA's channels beside a same-plate negative control and collect "
        "people's votes for the three channels that differ most.",
        parents=[metadata_parent(("control", "treatment", "plate", "label"))],
    )
    p.add_argument(
        "--features",
        type=Path,
        default=env.get(ENV_TABLE),
        required=not env.get(ENV_TABLE),
        help="feature table features/NAME.parquet (with Metadata_moa, Metadata_Plate, "
        "Metadata_site_id and Metadata_Path_<channel> columns)",
    )
    p.add_argument(
        "--images",
        type=Path,
        default=env.get(ENV_IMAGES),
        help="dataset root to read images from when the table's stored image paths do not "
        "exist (table moved to another machine); sites are matched by site id",
    )
    p.add_argument(
        "--votes",
        type=Path,
        default=env.get(ENV_VOTES),
        help="SQLite vote store (default: features/NAME.votes.sqlite next to the table)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    p.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1, this machine only; 0.0.0.0 for everyone)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=int(seed) if seed else None,
        help="seed for choosing sites (default: different pairs every session)",
    )
    return p


def votes_path(features: str | Path, votes: str | Path | None = None) -> Path:
    """The vote store to use: ``votes`` if given, else ``features/NAME.votes.sqlite``."""
    return Path(votes) if votes is not None else schema.sidecar_paths(features)["votes"]


# --------------------------------------------------------------------------- the table


def table_channels(columns: Sequence[str]) -> list[str]:
    """Channel names from the ``Metadata_Path_<channel>`` columns, in table order."""
    return [c[len(schema.PATH_PREFIX) :] for c in columns if str(c).startswith(schema.PATH_PREFIX)]


def check_columns(columns: Sequence[str], source: str | Path, names: Columns | None = None) -> str | None:
    """Check a table has what the app needs; return the note to show, if any.

    ``names``: the user's metadata columns (:class:`~moa_features.columns.Columns`, from
    ``--plate``, ``--treatment``, ``--label``). Raises ValueError naming ``source`` and the
    missing columns.
    """
    names = names or Columns()
    columns = [str(c) for c in columns]
    missing = [c for c in (names.plate, schema.SITE_ID) if c not in columns]
    if not table_channels(columns):
        missing.append(f"{schema.PATH_PREFIX}<channel> (one per channel)")
    if names.label not in columns and names.treatment not in columns:
        missing.append(f"{names.label} (or {names.treatment})")
    if missing:
        raise ValueError(
            f"{source}: the app needs column(s) {', '.join(missing)}, which the table lacks "
            "(name your columns with --plate, --treatment, --label)"
        )
    if names.label not in columns:
        return (
            f"{source} has no {names.label} column, so treatments ({names.treatment}) are shown "
            "instead of mechanisms of action; annotate the table (moa-features annotate) to group them."
        )
    return None


def prepare_table(
    df: pd.DataFrame, source: str | Path = "table", names: Columns | None = None
) -> tuple[pd.DataFrame, str | None]:
    """The table with the app's columns filled in, and the note to show (or None).

    The app reads ``Metadata_Plate``, ``Metadata_Treatment`` and ``Metadata_moa``: they are
    copied from the user's columns (``names``). The class falls back to the treatment; negative
    controls (:meth:`Columns.controls <moa_features.columns.Columns.controls>`, i.e.
    ``--control``) get the class ``Negative control``; rows without a label get NaN.
    """
    names = names or Columns()
    note = check_columns(df.columns, source, names)
    if df[schema.SITE_ID].duplicated().any():
        dup = df.loc[df[schema.SITE_ID].duplicated(), schema.SITE_ID].iloc[0]
        raise ValueError(f"{source}: {schema.SITE_ID} {dup!r} occurs more than once; expected one row per site")
    out = df.copy()
    control = names.controls(df)
    label = out[names.label] if names.label in out.columns else out[names.treatment]
    label = label.where(label.notna() & (label.astype(str).str.strip() != ""))
    out[schema.PLATE] = out[names.plate]
    if names.treatment in out.columns:
        out[schema.TREATMENT] = out[names.treatment]
    out[schema.MOA] = label.astype(object).where(label.isna(), label.astype(str))
    out.loc[control, schema.MOA] = schema.NEGATIVE_CONTROL_MOA
    out[schema.SITE_ID] = out[schema.SITE_ID].astype(str)
    return out.reset_index(drop=True), note


def moa_counts(df: pd.DataFrame) -> pd.Series:
    """Sites per MoA, negative controls and unlabelled rows excluded; most sites first, ties by name."""
    moa = df[schema.MOA].dropna()
    counts = moa[moa != schema.NEGATIVE_CONTROL_MOA].value_counts()
    order = sorted(counts.index, key=lambda m: (-counts[m], str(m)))
    return counts.reindex(order).rename("sites")


def draw_pair(df: pd.DataFrame, moa: str, rng: np.random.Generator) -> tuple[str, str]:
    """Site ids of one random site of ``moa`` and a random negative control on the same plate.

    Only sites on plates that have negative controls are eligible; ValueError if there is none.
    """
    control = (df[schema.MOA] == schema.NEGATIVE_CONTROL_MOA).to_numpy()
    plates = df[schema.PLATE].to_numpy()
    candidates = np.flatnonzero((df[schema.MOA] == moa).to_numpy() & np.isin(plates, plates[control]))
    if len(candidates) == 0:
        raise ValueError(
            f"no site of {moa!r} is on a plate with negative-control sites, so there is no fair control to show"
        )
    i = int(rng.choice(candidates))
    j = int(rng.choice(np.flatnonzero(control & (plates == plates[i]))))
    return str(df[schema.SITE_ID].iat[i]), str(df[schema.SITE_ID].iat[j])


def site_row(df: pd.DataFrame, site_id: str) -> pd.Series:
    """The table row of ``site_id`` (KeyError if absent)."""
    hit = np.flatnonzero(df[schema.SITE_ID].to_numpy() == site_id)
    if len(hit) == 0:
        raise KeyError(f"site {site_id!r} is not in the feature table")
    return df.iloc[int(hit[0])]


# --------------------------------------------------------------------------- images


def load_site(row: pd.Series, channels: Sequence[str], sites: Mapping[str, Any] | None = None) -> np.ndarray:
    """Read a site's ``channels`` as a ``(C, H, W)`` uint8/uint16 array.

    Reads the table's ``Metadata_Path_<channel>`` files; where any is missing and ``sites``
    (site id -> :class:`moa_features.datasets.Site` of the dataset re-opened at ``--images``)
    is given, reads the site from there instead.
    """
    from moa_features.datasets import read_image

    site_id = str(row[schema.SITE_ID])
    paths = [str(row[schema.PATH_PREFIX + ch]) for ch in channels]
    missing = [p for p in paths if not Path(p).is_file()]
    if not missing:
        return np.stack([read_image(p, site_id, ch) for p, ch in zip(paths, channels)])
    if sites is None:
        raise FileNotFoundError(
            f"{missing[0]}: image of site {site_id} not found (and {len(missing) - 1} more); if the "
            "table was made on another machine, pass --images with the dataset's folder"
        )
    if site_id not in sites:
        raise KeyError(f"site {site_id!r} is neither at its stored paths nor in the dataset given by --images")
    site = sites[site_id]
    unknown = [ch for ch in channels if ch not in site.channels]
    if unknown:
        raise KeyError(f"site {site_id!r} in the --images dataset lacks channel(s) {unknown}")
    image = site.load()
    return image[[site.channels.index(ch) for ch in channels]]


def apply_limits(image: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Map each channel of ``image`` (C, H, W) linearly from ``limits[c]`` to 0..255 uint8, clipped."""
    lo = limits[:, 0].reshape(-1, 1, 1)
    span = np.maximum(limits[:, 1] - limits[:, 0], 1e-12).reshape(-1, 1, 1)
    scaled = (image.astype(np.float32) - lo) / span
    return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def reduce_for_display(image: np.ndarray, max_size: int = DISPLAY_SIZE) -> np.ndarray:
    """Block-mean downsample a (C, H, W) uint8 image so its longest side is at most ``max_size``."""
    if max(image.shape[1:]) <= max_size:
        return image
    return np.round(downsample(image, max_size)).astype(np.uint8)


def display_pair(site: np.ndarray, control: np.ndarray, max_size: int = DISPLAY_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair as uint8 with the same per-channel contrast (``CONTRAST_PERCENTILES``)."""
    limits = contrast_limits(site, control, low=CONTRAST_PERCENTILES[0], high=CONTRAST_PERCENTILES[1])
    return (
        reduce_for_display(apply_limits(site, limits), max_size),
        reduce_for_display(apply_limits(control, limits), max_size),
    )


# --------------------------------------------------------------------------- what the models say


def channel_features(features: Sequence[str], channel: str) -> list[str]:
    """The features that measure ``channel``: its name is a ``_``-separated token of theirs.

    ``Image_Intensity_Sum_w1`` and ``Image_Correlation_Pearson_w1_w5`` measure w1;
    ``Image_Intensity_Sum_w10`` does not.
    """
    token = re.compile(rf"(?:^|_){re.escape(channel)}(?:_|$)")
    return [f for f in features if token.search(str(f))]


def model_effects(df: pd.DataFrame) -> pd.DataFrame:
    """Effect size of every MoA against the controls, per feature: (MoAs x features).

    Plates are normalised against their own negative controls first
    (:func:`moa_features.profiling.normalize`); plates without controls are left out.
    """
    from moa_features.profiling import AlreadyNormalizedWarning, effect_sizes, normalize

    control = df[schema.MOA] == schema.NEGATIVE_CONTROL_MOA
    usable = df[df[schema.PLATE].isin(df.loc[control, schema.PLATE])]
    if usable.empty:
        raise ValueError("no plate has negative-control sites, so no effect sizes can be computed")
    features = [c for c in schema.feature_columns(usable.columns) if pd.api.types.is_numeric_dtype(usable[c])]
    control = usable[schema.MOA] == schema.NEGATIVE_CONTROL_MOA
    with warnings.catch_warnings():  # an already-normalised table: the app has no --normalize to offer
        warnings.simplefilter("ignore", AlreadyNormalizedWarning)
        normalised = normalize(usable, "controls", control=control, features=features)
    return effect_sizes(normalised, features=features)


def model_channel_table(effects: pd.Series, channels: Sequence[str], top: int = TOP_FEATURES) -> pd.DataFrame:
    """The ``top`` features of each channel that differ most from control, for one MoA.

    ``effects``: one MoA's row of :func:`model_effects` (feature -> robust z). Returns columns
    ``channel, rank, feature, effect`` (rank 1 = largest ``|effect|`` within the channel),
    channels in the given order; channels without finite effects are left out.
    """
    rows = []
    for ch in channels:
        values = effects[channel_features(effects.index, ch)].astype(float)
        values = values[np.isfinite(values)]
        ranked = values.reindex(values.abs().sort_values(ascending=False, kind="stable").index)[:top]
        rows += [(ch, r, f, float(v)) for r, (f, v) in enumerate(ranked.items(), start=1)]
    return pd.DataFrame(rows, columns=["channel", "rank", "feature", "effect"]).astype({"rank": "int64"})


def compare_channels(votes: pd.Series, models: pd.DataFrame, channels: Sequence[str]) -> pd.DataFrame:
    """People's and models' view of each channel, side by side, one row per channel.

    ``votes``: votes per channel for one MoA; ``models``: :func:`model_channel_table` of that
    MoA. Columns ``channel, stain, votes, people_rank, model_feature, model_effect,
    model_rank`` (ranks 1 = most different; ties share the best rank; NaN without data).
    """
    votes = votes.reindex(channels).fillna(0).astype("int64")
    best = models[models["rank"] == 1].set_index("channel").reindex(channels)
    strength = best["effect"].abs()
    return pd.DataFrame(
        {
            "channel": list(channels),
            "stain": [schema.RXRX_STAINS.get(ch, "") for ch in channels],
            "votes": votes.to_numpy(),
            "people_rank": votes.rank(ascending=False, method="min").where(votes > 0).to_numpy(),
            "model_feature": best["feature"].to_numpy(),
            "model_effect": best["effect"].to_numpy(),
            "model_rank": strength.rank(ascending=False, method="min").to_numpy(),
        }
    )


def channel_label(channel: str, short: bool = False) -> str:
    """``w1 · Hoechst (nuclei)`` (``short``: ``w1 · Hoechst``) for RxRx channels, else the bare name."""
    stain = schema.RXRX_STAINS.get(channel)
    if stain and short:
        stain = stain.split(" (")[0]
    return f"{channel} · {stain}" if stain else channel


# --------------------------------------------------------------------------- the Streamlit page


@dataclass
class Page:
    """What every panel of the page needs: the table, its channels and MoAs, the vote store."""

    table: str  # absolute path of the feature table
    mtime: float  # its modification time (cache key)
    df: pd.DataFrame
    channels: list[str]
    counts: pd.Series  # sites per MoA (:func:`moa_counts`)
    store: Any  # moa_features.votes.VoteStore
    root: str | None  # --images dataset root
    image: Callable[[str], np.ndarray]  # site id -> (C, H, W) image, cached


def render(args: argparse.Namespace) -> None:
    """Draw the page (called by Streamlit on every interaction), one panel after another."""
    import streamlit as st

    st.set_page_config(page_title="moa-features: which channels differ?", layout="wide")
    st.title("Which channels differ from the control?")
    page = _open_page(args)
    state = st.session_state
    state.setdefault("session_id", uuid.uuid4().hex)
    if "rng" not in state:
        state["rng"] = np.random.default_rng(args.seed)
    moa = _moa_panel(page, state)
    _pair_panel(page, state, moa)
    _vote_panel(page, state, moa)
    _comparison_panel(page, state, moa)


def _open_page(args: argparse.Namespace) -> Page:
    """Read the table (cached) and open the vote store; stops the page with a message on failure."""
    import streamlit as st

    from moa_features.datasets import open_dataset
    from moa_features.io import read_table
    from moa_features.votes import APP_TIMEOUT, VoteStore

    @st.cache_resource(show_spinner="Reading the feature table ...")
    def cached_table(path: str, mtime: float) -> tuple[pd.DataFrame, str | None]:
        return prepare_table(read_table(path), path, Columns.from_args(args))

    @st.cache_resource(show_spinner="Opening the image folder ...")
    def cached_sites(root: str) -> dict[str, Any]:
        return {s.site_id: s for s in open_dataset(root).sites}

    @st.cache_data(max_entries=64, show_spinner=False)
    def cached_image(path: str, mtime: float, site_id: str, channels: tuple[str, ...], root: str | None) -> np.ndarray:
        df, _ = cached_table(path, mtime)
        row = site_row(df, site_id)
        stored = all(Path(str(row[schema.PATH_PREFIX + ch])).is_file() for ch in channels)
        return load_site(row, channels, None if stored or root is None else cached_sites(root))

    table = str(Path(args.features).resolve())
    try:
        mtime = os.path.getmtime(table)
        df, note = cached_table(table, mtime)
    except (OSError, ValueError) as exc:
        st.error(f"Cannot open the feature table: {exc}")
        st.stop()
    if note:
        st.info(note)
    counts = moa_counts(df)
    if counts.empty:
        st.error(f"{table}: no site has an MoA other than {schema.NEGATIVE_CONTROL_MOA!r}; nothing to compare.")
        st.stop()
    try:
        store = VoteStore(votes_path(table, args.votes), timeout=APP_TIMEOUT, retries=0)
    except (sqlite3.Error, OSError, ValueError) as exc:
        st.error(f"Cannot open the vote store: {exc}")
        st.stop()
    root = str(Path(args.images).resolve()) if args.images else None
    channels = table_channels(df.columns)
    return Page(
        table,
        mtime,
        df,
        channels,
        counts,
        store,
        root,
        lambda site_id: cached_image(table, mtime, site_id, tuple(channels), root),
    )


def _new_pair(page: Page, state: Any, moa: str) -> None:
    try:
        state["pair"] = (moa, *draw_pair(page.df, moa, state["rng"]))
    except ValueError as exc:
        state["pair"] = (moa, None, str(exc))


def _store_vote(page: Page, state: Any, vote: tuple[str, str, str, list[str]]) -> bool:
    """Store ``vote`` (moa, site, control, channels); True when stored.

    On a locked store (after the bounded wait) the vote joins ``state["pending_votes"]``, shown
    with a retry button: a vote is never lost.
    """
    from moa_features.votes import VoteStoreBusy

    moa, site_id, control_id, chosen = vote
    try:
        page.store.add(state["session_id"], moa, site_id, control_id, chosen, order=page.channels)
    except VoteStoreBusy as exc:
        pending = state.setdefault("pending_votes", [])
        if vote not in pending:
            pending.append(vote)
        text = (
            f"Your vote ({', '.join(chosen)}) for {moa} could not be stored yet: {exc}. "
            "It is kept: press “Retry saving vote” in a moment."
        )
        state["message"] = ("error", text)
        return False
    except ValueError as exc:
        state["message"] = ("error", f"{str(exc)[0].upper()}{str(exc)[1:]}; nothing was stored.")
        return False
    state["message"] = ("success", f"Thank you: your vote ({', '.join(chosen)}) for {moa} was stored.")
    return True


def _submit(page: Page, state: Any) -> None:
    moa, site_id, control_id = state["pair"]
    chosen = [ch for ch in page.channels if state.get(f"pick_{ch}")]
    if _store_vote(page, state, (moa, site_id, control_id, chosen)):
        _next_pair(page, state, moa)
    elif state.get("pending_votes") and state["pending_votes"][-1][1] == site_id:
        _next_pair(page, state, moa)  # kept for a retry: the user can go on voting


def _next_pair(page: Page, state: Any, moa: str) -> None:
    for ch in page.channels:
        state[f"pick_{ch}"] = False
    _new_pair(page, state, moa)


def _retry_pending(page: Page, state: Any) -> None:
    """Store the kept votes in order; stop at the first that the store still refuses."""
    pending = state.get("pending_votes", [])
    while pending and _store_vote(page, state, pending[0]):
        pending.pop(0)
    if not pending:
        state.pop("pending_votes", None)


def _moa_panel(page: Page, state: Any) -> str:
    """The instructions and the MoA chooser; returns the chosen MoA."""
    import streamlit as st

    st.markdown(
        "Pick a mechanism of action. The top row shows one site treated with it, the bottom row a "
        "negative control from the **same plate**; each channel has the same contrast in both. "
        "Tick the **three channels** that look most different, then submit."
    )
    counts = page.counts
    moa = st.selectbox(
        "Mechanism of action", list(counts.index), key="moa", format_func=lambda m: f"{m} ({counts[m]} sites)"
    )
    if state.get("pair", (None,))[0] != moa:
        _new_pair(page, state, moa)
    return moa


def _pair_panel(page: Page, state: Any, moa: str) -> None:
    """The site and its same-plate control, channel by channel, with one contrast per channel."""
    import streamlit as st

    _, site_id, control_id = state["pair"]
    if site_id is None:
        st.error(control_id)
        st.stop()
    try:
        site = site_row(page.df, site_id)
        site_row(page.df, control_id)
        shown = display_pair(page.image(site_id), page.image(control_id))
    except (OSError, KeyError, ValueError) as exc:
        st.error(f"Cannot read the images of this pair: {exc}")
        st.button("New pair", key="new_pair", on_click=_new_pair, args=(page, state, moa))
        st.stop()
    captions = (
        f"**{moa}**: site `{site_id}`, plate `{site[schema.PLATE]}`",
        f"**{schema.NEGATIVE_CONTROL_MOA}**: site `{control_id}`, same plate",
    )
    for caption, image in zip(captions, shown):
        st.markdown(caption)
        for col, ch, plane in zip(st.columns(len(page.channels)), page.channels, image):
            col.image(plane, caption=channel_label(ch), width="stretch")


def _vote_panel(page: Page, state: Any, moa: str) -> None:
    """The channel ticks, Submit / New pair, a retry for a vote the locked store did not take, messages."""
    import streamlit as st

    st.markdown("**The three channels that differ most:**")
    for col, ch in zip(st.columns(len(page.channels)), page.channels):
        col.checkbox(channel_label(ch), key=f"pick_{ch}")
    left, middle, right, _ = st.columns([1, 1, 1, 3])
    left.button("Submit vote", key="submit", type="primary", on_click=_submit, args=(page, state))
    middle.button("New pair", key="new_pair", on_click=_new_pair, args=(page, state, moa))
    if state.get("pending_votes"):
        right.button(
            f"Retry saving vote ({len(state['pending_votes'])} kept)",
            key="retry_vote",
            on_click=_retry_pending,
            args=(page, state),
        )
    kind, text = state.pop("message", (None, None))
    if kind == "error":
        st.error(text)
    elif kind == "success":
        st.success(text)


def _comparison_panel(page: Page, state: Any, moa: str) -> None:
    """People's votes per channel beside the channels the models find most different."""
    import streamlit as st

    from moa_features.votes import VoteStoreBusy

    @st.cache_data(show_spinner="Comparing every MoA with the controls ...", max_entries=4)
    def cached_effects(path: str, mtime: float, _df: pd.DataFrame) -> pd.DataFrame:
        return model_effects(_df)

    channels = page.channels
    st.header("What others saw")
    try:
        summary = page.store.summary(channels)
    except VoteStoreBusy as exc:
        st.warning(f"Cannot show the votes right now: {exc}.")
        summary = pd.DataFrame(
            {"moa": pd.Series(dtype=object), "channel": pd.Series(dtype=object), "votes": pd.Series(dtype="int64")}
        )
    mine = summary[summary["moa"] == moa].set_index("channel")["votes"]
    n_votes = int(mine.sum()) // 3
    try:
        effects = cached_effects(page.table, page.mtime, page.df)
        models = model_channel_table(effects.loc[moa], channels) if moa in effects.index else None
    except ValueError as exc:
        st.warning(f"No model comparison: {exc}")
        models = None
    if models is None:
        models = pd.DataFrame(columns=["channel", "rank", "feature", "effect"])
    compared = compare_channels(mine, models, channels)
    labelled = compared.assign(
        channel=[channel_label(c, short=True) for c in channels], **{"|effect|": compared["model_effect"].abs()}
    )
    people, machines = st.columns(2)
    with people:
        st.subheader("People: votes per channel")
        st.caption(f"{n_votes} vote{'s' if n_votes != 1 else ''} for {moa}")
        st.bar_chart(labelled, x="channel", y="votes", sort=False, horizontal=True)
    with machines:
        st.subheader("Models: largest difference from control")
        st.caption("Largest |robust z| of the channel's features, plates normalised to their controls")
        st.bar_chart(labelled, x="channel", y="|effect|", sort=False, horizontal=True)
    if n_votes and compared["model_rank"].notna().any():
        people_top = set(compared.nsmallest(3, "people_rank")["channel"])
        model_top = set(compared.nsmallest(3, "model_rank")["channel"])
        st.markdown(
            f"People's top channels: **{', '.join(sorted(people_top))}**; the models' top three: "
            f"**{', '.join(sorted(model_top))}**; shared: {len(people_top & model_top)} of 3."
        )
    st.dataframe(compared, hide_index=True, key="comparison")
    with st.expander(f"Features of each channel that differ most for {moa}"):
        st.dataframe(models, hide_index=True)
    with st.expander("All votes per channel and MoA"):
        table_view = summary.pivot(index="moa", columns="channel", values="votes")
        st.dataframe(table_view[list(dict.fromkeys(summary["channel"]))])
    st.caption(f"Votes are stored in `{page.store.path}`; your anonymous session id is `{state['session_id'][:8]}`.")


def _in_streamlit() -> bool:
    if "streamlit" not in sys.modules:
        return False
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx(suppress_warning=True) is not None


def _script_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """Settings of the page: ``argv[1:]`` when Streamlit ran this file with arguments, else the environment."""
    own = len(argv) > 0 and Path(argv[0]).resolve() == Path(__file__).resolve()
    return build_parser(environ).parse_args(list(argv[1:]) if own else [])


# --------------------------------------------------------------------------- launcher


def _table_columns(path: Path) -> list[str]:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0, sep="\t" if name.endswith((".tsv", ".tsv.gz", ".txt")) else ",").columns)


def main(argv: Sequence[str] | None = None) -> int:
    """``moa-features app``: check the table, then run ``streamlit run`` on this file, headless.

    Returns Streamlit's exit status (2 for a bad table or a missing Streamlit).
    """
    args = build_parser().parse_args(argv)
    features = Path(args.features).resolve()
    try:
        if not features.is_file():
            raise FileNotFoundError(f"{features}: feature table not found")
        check_columns(_table_columns(features), features, Columns.from_args(args))
    except (OSError, ValueError) as exc:
        print(f"moa-features app: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("streamlit") is None:
        print("moa-features app: needs Streamlit; install it with pip install 'moa-features[app]'", file=sys.stderr)
        return 2
    script_args = ["--features", str(features), "--votes", str(votes_path(features, args.votes).resolve())]
    if args.images is not None:
        script_args += ["--images", str(Path(args.images).resolve())]
    if args.seed is not None:
        script_args += ["--seed", str(args.seed)]
    for name in ("control", "treatment", "plate", "label"):
        if getattr(args, name) is not None:
            script_args += [f"--{name}", getattr(args, name)]
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(Path(__file__).resolve()),
        "--server.headless=true",
        f"--server.port={args.port}",
        f"--server.address={args.address}",
        "--server.fileWatcherType=none",
        "--client.toolbarMode=viewer",
        "--browser.gatherUsageStats=false",
        "--", *script_args,
    ]  # fmt: skip
    print(f"moa-features app: serving {features.name} on http://{args.address}:{args.port}", file=sys.stderr)
    server = subprocess.Popen(cmd)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: server.terminate())
    try:
        return server.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches Streamlit too; wait for it to shut down
        return server.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    if _in_streamlit():
        render(_script_args(sys.argv, os.environ))
    else:
        raise SystemExit(main())
