"""What a worker does with one chunk of sites: read, measure, thumbnail.

Workers read their own images (paths travel, not pixels) and return features, thumbnails and
error records; a site that cannot be read or measured becomes an error record, never an
exception, so one bad site never loses the rest of the chunk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.calibration import measure_site
from moa_features.datasets import Site, SiteReadError
from moa_features.features import FeatureParams

ERROR_COLUMNS = [schema.SITE_ID, schema.PLATE, schema.WELL, "stage", "path", "error"]


@dataclass
class ChunkResult:
    """What a worker returns for one chunk of sites."""

    index: int
    rows: list[dict[str, Any]]
    thumbs: np.ndarray | None  # (n_ok, S, S, C) uint8
    errors: list[dict[str, Any]]
    cpu_seconds: float  # process CPU time spent on the chunk (one core)
    objects: pd.DataFrame | None = None  # one row per object (extract --objects)


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """Area-averaged ``(size, size, C)`` uint8 thumbnail of a ``(C, H, W)`` image.

    8-bit images keep their values; 16-bit images are mapped by ``v / 257`` (full range).
    """
    from PIL import Image

    planes = []
    for plane in image:
        if plane.dtype == np.uint8:
            small = Image.fromarray(plane).resize((size, size), Image.Resampling.BOX)
            planes.append(np.asarray(small))
        else:
            small = Image.fromarray(plane.astype(np.float32)).resize((size, size), Image.Resampling.BOX)
            planes.append(np.clip(np.rint(np.asarray(small) / 257.0), 0, 255).astype(np.uint8))
    return np.stack(planes, axis=-1)


def process_chunk(
    index: int,
    sites: Sequence[Site],
    params: FeatureParams,
    thumb_size: int | None,
    expected_shape: tuple[int, int] | None,
    expected_dtype: str | None = None,
) -> ChunkResult:
    """Read and measure ``sites``; failures become error records, never exceptions."""
    t0 = time.process_time()
    rows, thumbs, errors, objects = [], [], [], []
    for site in sites:
        try:
            image = site.load(expected_shape, expected_dtype)
        except SiteReadError as exc:
            errors.append(error_record(site, "read", str(exc), exc.path))
            continue
        try:
            features, site_objects = measure_site(image, site, params)
        except SiteReadError as exc:  # the site's own masks: missing, not labels, or not holding the nuclei
            errors.append(error_record(site, "mask", str(exc), exc.path))
            continue
        except Exception as exc:  # a measurement bug must not lose the rest of the run
            errors.append(error_record(site, "measure", f"{type(exc).__name__}: {exc}", None))
            continue
        rows.append({**site.metadata, **features})
        if site_objects is not None:
            objects.append(site_objects)
        if thumb_size:
            thumbs.append(thumbnail(image, thumb_size))
    arr = np.stack(thumbs) if thumbs else None
    table = pd.concat(objects, ignore_index=True) if objects else (pd.DataFrame() if params.objects else None)
    return ChunkResult(index, rows, arr, errors, time.process_time() - t0, table)


def error_record(site: Site, stage: str, message: str, path: str | None) -> dict[str, Any]:
    """One row of the errors table: the site, the ``stage`` (read, mask, measure) and why."""
    return {
        schema.SITE_ID: site.site_id,
        schema.PLATE: site.keys.get(schema.PLATE),
        schema.WELL: site.keys.get(schema.WELL),
        "stage": stage,
        "path": path,
        "error": message,
    }
