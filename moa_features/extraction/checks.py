"""What is checked before any site is measured: the options, the channels, the image headers.

Each check raises :class:`~moa_features.datasets.DatasetError` naming the option or file, so a
typo stops the run (exit 2) before the first site is read and nothing computed is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moa_features.datasets import DatasetError, Site, SiteReadError, image_header
from moa_features.features import FAMILIES, FeatureParams

PROBE_SITES = 24  # sites whose image headers are read before any work (spread over the dataset)


def validate_options(
    params: FeatureParams, thumbs: int | None, chunk_size: int, image_size: tuple[int, int] | None
) -> None:
    """Check the run's options before anything is read; DatasetError naming the option otherwise."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise DatasetError(f"--chunk-size {chunk_size}: expected a whole number of sites >= 1")
    if thumbs is not None and (not isinstance(thumbs, int) or thumbs < 1):
        raise DatasetError(f"--thumbs {thumbs}: expected a thumbnail size in pixels >= 1 (0 disables thumbnails)")
    if not isinstance(params.texture_levels, int) or not 2 <= params.texture_levels <= 65536:
        raise DatasetError(f"--texture-levels {params.texture_levels}: expected a number of grey levels, 2 to 65536")
    if not params.texture_distances or any(not isinstance(d, int) or d < 1 for d in params.texture_distances):
        raise DatasetError(f"--texture-distances {params.texture_distances}: expected whole pixel distances >= 1")
    unknown = [f for f in params.families if f not in FAMILIES]
    if unknown or not params.families:
        raise DatasetError(f"--features: unknown feature family {unknown}; expected some of {', '.join(FAMILIES)}")
    low, high = params.min_diameter, params.max_diameter
    if low is not None and high is not None and low > high:
        raise DatasetError(
            f"--min-diameter {low:g} is larger than --max-diameter {high:g}: no nucleus could be kept; "
            "expected the smallest diameter first (pixels)"
        )
    if params.objects and "morphology" not in params.families:
        raise DatasetError(
            f"--objects needs the morphology family (objects are the segmented nuclei and cells), but --features "
            f"is {','.join(params.families)}; add morphology (--features {','.join([*params.families, 'morphology'])}) "
            "or leave out --objects"
        )
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise DatasetError(f"--image-size {image_size}: expected HxW in pixels, e.g. 512x512")


def check_channels(params: FeatureParams, channels: Sequence[str], source: str | Path) -> None:
    """The segmentation channels must be channels of the dataset, exactly (case included)."""
    for option, name in (("--nuclear-channel", params.nuclear_channel), ("--cell-channel", params.cell_channel)):
        if name is not None and name not in channels:
            hint = [c for c in channels if c.lower() == str(name).lower()]
            raise DatasetError(
                f"{option} {name}: not a channel of {source}; the channels are {', '.join(channels)}"
                + (f" (names are case-sensitive: did you mean {hint[0]}?)" if hint else "")
            )


def probe_images(
    sites: Sequence[Site], image_size: tuple[int, int] | None
) -> tuple[tuple[int, int] | None, str | None]:
    """Image size and bit depth every site must have, from the headers of a spread of sites.

    Without ``image_size`` the size is the most common among the probed sites (so one odd first
    site cannot fail all the others). With it, DatasetError when no probed site has that size (a
    typo would otherwise fail every site). The bit depth is likewise the most common (for
    one-file-per-site stacks: not probed).
    """
    step = max(1, len(sites) // PROBE_SITES)
    headers: list[tuple[tuple[int, int], str, str]] = []
    for site in sites[::step][:PROBE_SITES]:
        if site.is_stack:
            try:
                shape = site.load().shape[1:]
            except SiteReadError:
                continue
            headers.append((tuple(shape), None, site.paths[0]))
            continue
        try:
            shape, dtype = image_header(site.paths[0])
        except Exception:  # unreadable here: the site's own read records it
            continue
        headers.append((tuple(shape), dtype, site.paths[0]))
    if not headers:
        return image_size, None
    dtype = most_common([h[1] for h in headers])
    if image_size is None:
        return most_common([h[0] for h in headers]), dtype
    if not any(h[0] == tuple(image_size) for h in headers):
        seen = sorted({f"{h[0][0]}x{h[0][1]}" for h in headers})
        raise DatasetError(
            f"--image-size {image_size[0]}x{image_size[1]}: none of {len(headers)} sites probed has that size "
            f"(found {', '.join(seen)}, e.g. {headers[0][2]}); every site would fail"
        )
    return tuple(image_size), dtype


def most_common(values: list) -> Any:
    """The most frequent value; ties go to the one seen first."""
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=counts.__getitem__)
