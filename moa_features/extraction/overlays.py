"""Segmentation overlays: a few measured sites per plate drawn with their object outlines.

``extract`` writes ``NAME.overlays/`` beside the table (when the morphology family ran):

- ``<k>.png`` (``0000.png``, ...): an RGB picture of one site at most :data:`MAX_SIDE` pixels
  wide: the nuclear channel in blue and the cell channel in grey-green, both stretched between
  their 0.5th and 99.5th percentiles, nuclei outlined in yellow and cells in magenta, exactly the
  objects measured (after illumination correction, border and diameter filters, or the user's
  own masks);
- ``index.json`` last: ``{"sites": [{"file", "site_id", "plate", "well", "nuclei",
  "nuclear_channel", "cell_channel", "masks", "scale"}], "per_plate", "plates"}`` where
  ``masks`` is ``"segmented"`` or ``"given"`` and ``scale`` the factor the picture was shrunk by.

The folder is written whole into a temporary folder and swapped in, so a report never reads a
half-written one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moa_features import schema
from moa_features.calibration import load_calibration
from moa_features.datasets import Site
from moa_features.features import FeatureParams, segment
from moa_features.illumination import correct
from moa_features.masks import read_user_masks

PER_PLATE = 2  # default sites drawn per plate
MAX_OVERLAYS = 48  # at most this many pictures per run (the first plates in site order)
MAX_SIDE = 512  # pictures are shrunk by a whole factor to at most this many pixels a side


def choose_sites(sites: Sequence[Site], failed: set[str], per_plate: int, plate: str) -> list[Site]:
    """The first ``per_plate`` measured sites of each plate, at most :data:`MAX_OVERLAYS` in all."""
    taken: dict[Any, int] = {}
    chosen = []
    for site in sites:
        key = site.metadata.get(plate)
        if site.site_id in failed or taken.get(key, 0) >= per_plate:
            continue
        taken[key] = taken.get(key, 0) + 1
        chosen.append(site)
        if len(chosen) == MAX_OVERLAYS:
            break
    return chosen


def _stretch(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane, [0.5, 99.5])
    return np.clip((plane.astype(np.float32) - lo) / max(float(hi - lo), 1e-6), 0, 1)


def _outline(labels: np.ndarray) -> np.ndarray:
    """The inner boundary pixels of every object of ``labels``, as bool."""
    from skimage.segmentation import find_boundaries

    return find_boundaries(labels, mode="inner")


def render(image: np.ndarray, nuclei: np.ndarray, cells: np.ndarray, nuclear: int, cell: int) -> tuple[np.ndarray, int]:
    """An ``(h, w, 3)`` uint8 overlay of one site and the factor it was shrunk by.

    image: ``(C, H, W)``; nuclei, cells: ``(H, W)`` labels; nuclear, cell: plane indices.

    Examples
    --------
    >>> image = np.zeros((2, 20, 20), np.uint8)
    >>> image[0, 5:10, 5:10] = 200
    >>> nuclei = np.zeros((20, 20), np.int32)
    >>> nuclei[5:10, 5:10] = 1
    >>> picture, scale = render(image, nuclei, nuclei, 0, 1)
    >>> picture.shape, scale, picture[5, 7].tolist()
    ((20, 20, 3), 1, [255, 255, 0])
    """
    scale = max(1, -(-max(image.shape[1:]) // MAX_SIDE))
    planes = image[:, ::scale, ::scale]
    nuclei, cells = nuclei[::scale, ::scale], cells[::scale, ::scale]
    blue, grey = _stretch(planes[nuclear]), _stretch(planes[cell])
    rgb = np.stack([0.6 * grey, 0.8 * grey, np.maximum(blue, 0.6 * grey)], axis=-1)
    picture = np.round(255 * rgb).astype(np.uint8)
    picture[_outline(cells)] = (255, 0, 255)
    picture[_outline(nuclei)] = (255, 255, 0)
    return picture, scale


def site_overlay(site: Site, params: FeatureParams, shape, dtype, plate: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The overlay of one site, segmented as the run measured it, and its ``index.json`` record."""
    image = site.load(shape, dtype)
    if params.calibration:
        function = load_calibration(params.calibration).illumination(site.metadata)
        image = correct(image, function) if function is not None else image
    nuclear, cell = params.channel_index(site.channels, "nuclear"), params.channel_index(site.channels, "cell")
    given = read_user_masks(site, image.shape[1:])
    if given is None:
        options = {"min_diameter": params.min_diameter, "max_diameter": params.max_diameter}
        options.update(exclude_border=params.exclude_border, threshold=params.threshold)
        options.update(cells=params.cells, regularization=params.regularization)
        masks = segment(image, nuclear, cell, **options)
        nuclei, cells = masks.nuclei, masks.cells
    else:
        nuclei, cells = given[0], given[1] if given[1] is not None else given[0]
    picture, scale = render(image, nuclei, cells, nuclear, cell)
    record = {
        "site_id": site.site_id,
        "plate": site.metadata.get(plate),
        "well": site.metadata.get(schema.WELL),
        "nuclei": int(np.unique(nuclei[nuclei > 0]).size),
        "nuclear_channel": site.channels[nuclear],
        "cell_channel": site.channels[cell],
        "masks": "segmented" if given is None else "given",
        "scale": scale,
    }
    return picture, record


def write_overlays(
    sites: Sequence[Site],
    failed: set[str],
    params: FeatureParams,
    folder: Path,
    *,
    per_plate: int = PER_PLATE,
    plate: str = schema.PLATE,
    shape: tuple[int, int] | None = None,
    dtype: str | None = None,
) -> int:
    """Write ``folder`` (``NAME.overlays/``) for ``per_plate`` measured sites per plate; returns the count.

    failed: ids of the sites that failed (not drawn); a site that cannot be drawn now is left
    out. ``per_plate=0`` removes the folder.
    """
    from PIL import Image

    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    records = []
    if per_plate > 0:
        tmp.mkdir(parents=True)
        for site in choose_sites(sites, failed, per_plate, plate):
            try:
                picture, record = site_overlay(site, params, shape, dtype, plate)
            except Exception:  # a picture that cannot be drawn must not fail a finished run
                continue
            record["file"] = f"{len(records):04d}.png"
            Image.fromarray(picture).save(tmp / record["file"])
            records.append(record)
        plates = len({r["plate"] for r in records})
        index = {"sites": records, "per_plate": per_plate, "plates": plates}
        (tmp / "index.json").write_text(json.dumps(index, indent=1, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    if records:
        tmp.rename(folder)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(records)
