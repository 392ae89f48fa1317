"""What a run's summary says when sites fail or a plate is not corrected, in words a user can act on.

- :func:`failure_reasons`: the errors table grouped by reason (the message with its file, site
  and counts taken out), most common first, each with a count and one full example;
- :func:`channel_suggestion`: when a whole set of sites lacks the same channels on disk (the
  RxRx1 sample's site 2 has no w5/w6), the ``--channels`` that measures them too;
- :func:`illumination_note`: the plates whose illumination correction was skipped, said once;
- :func:`texture_note`: too few readable control sites for the texture levels, said once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from moa_features import schema
from moa_features.datasets import Site

TOP_REASONS = 5
MAX_SITES_CHECKED = 2000  # failed sites whose files are looked up on disk for a --channels suggestion
MIN_SHARE = 0.1  # a channel set missing on at least this share of the sites (and 2 sites) is worth dropping


def _reason(message: str, path: Any, site_id: Any) -> str:
    """A message without what differs from site to site: its file, the site id, standalone numbers."""
    text = str(message)
    if isinstance(path, str) and path:
        text = text.replace(path, "<file>")
    if isinstance(site_id, str) and site_id:
        text = re.sub(rf"(?<![\w-]){re.escape(site_id)}(?![\w-])", "<site>", text)
    text = re.sub(r"^<file>: ", "", text)
    return re.sub(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", "N", text)


def failure_reasons(errors: pd.DataFrame, top: int = TOP_REASONS) -> list[dict[str, Any]]:
    """The most common reasons sites failed: ``[{"reason", "stage", "count", "example"}]``, most common first.

    errors: the run's errors table (``NAME.errors.parquet``: site id, stage, path, error).

    Examples
    --------
    >>> errors = pd.DataFrame(
    ...     {
    ...         "Metadata_site_id": ["a", "b"],
    ...         "stage": ["read", "read"],
    ...         "path": ["/x/a_w5.png", "/x/b_w5.png"],
    ...         "error": [
    ...             "/x/a_w5.png: file not found (channel w5 of site a)",
    ...             "/x/b_w5.png: file not found (channel w5 of site b)",
    ...         ],
    ...     }
    ... )
    >>> failure_reasons(errors)[0]["reason"], failure_reasons(errors)[0]["count"]
    ('file not found (channel w5 of site <site>)', 2)
    """
    if errors.empty:
        return []
    reasons = [_reason(m, p, s) for m, p, s in zip(errors["error"], errors["path"], errors[schema.SITE_ID])]
    frame = pd.DataFrame({"reason": reasons, "stage": errors["stage"].to_numpy(), "example": errors["error"]})
    groups = frame.groupby(["stage", "reason"], sort=False)
    counted = groups.agg(count=("example", "size"), example=("example", "first")).reset_index()
    counted = counted.sort_values("count", ascending=False, kind="stable").head(top)
    return [
        {"reason": r.reason, "stage": r.stage, "count": int(r.count), "example": str(r.example)}
        for r in counted.itertuples(index=False)
    ]


def channel_suggestion(errors: pd.DataFrame, sites: Sequence[Site], channels: Sequence[str]) -> str | None:
    """The ``--channels`` option that would measure the sites failing for missing channel files, or None.

    A suggestion is made when at least two sites (and :data:`MIN_SHARE` of all) lack exactly
    the same channels on disk, and some channels are left: dropping a channel is a choice for
    the whole run, not a fix for one lost file.
    """
    missing_file = errors[(errors["stage"] == "read") & errors["error"].str.contains("file not found", regex=False)]
    if missing_file.empty or len(channels) < 2:
        return None
    failed = set(missing_file[schema.SITE_ID].astype(str).head(MAX_SITES_CHECKED))
    sets: dict[tuple[str, ...], int] = {}
    for site in sites:
        if site.site_id in failed and not site.is_stack:
            lacking = tuple(ch for ch, p in zip(site.channels, site.paths) if not os.path.exists(p))
            sets[lacking] = sets.get(lacking, 0) + 1
    if not sets:
        return None
    lacking, count = max(sets.items(), key=lambda item: item[1])
    keep = [ch for ch in channels if ch not in lacking]
    if not lacking or not keep or count < max(2, MIN_SHARE * len(sites)):
        return None
    return (
        f"{count} site(s) lack channel(s) {', '.join(lacking)} on disk: `--channels {','.join(keep)}` measures "
        f"them too, on the other {len(keep)} channel(s) (or restore the missing files)"
    )


def illumination_note(calibration: dict[str, Any] | None, min_sites: int) -> str | None:
    """One sentence on the plates whose illumination correction was skipped (None when none was).

    calibration: ``NAME.summary.json``'s ``calibration`` record (per plate: ``sites``,
    ``sampled``, ``corrected``); min_sites: the fewest readable sites a plate needs.
    """
    plates = (calibration or {}).get("illumination") or {}
    skipped = sorted(p for p, record in plates.items() if not record.get("corrected"))
    if not skipped:
        return None
    which = "every plate" if len(skipped) == len(plates) else f"{len(skipped)} of {len(plates)} plates"
    shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return (
        f"illumination correction skipped on {which} ({shown}): a plate needs at least {min_sites} readable sites "
        "to estimate it; intensities there are uncorrected (--illum none turns the pass off)"
    )


def texture_note(calibration: dict[str, Any] | None) -> str | None:
    """One sentence when too few control sites could be read for the texture levels (None otherwise).

    calibration: ``NAME.summary.json``'s ``calibration`` record (its ``texture``: ``controls_read``,
    ``controls_named``, ``other_sites``).
    """
    texture = (calibration or {}).get("texture") or {}
    if not texture.get("other_sites"):
        return None
    return (
        f"texture levels: only {texture['controls_read']} of {texture['controls_named']} control site(s) could be "
        f"read, so {texture['other_sites']} other site(s) completed the sample (the levels then follow the "
        "treated sites too; fix the control images or name others with --control)"
    )
