"""The run's first pass: what must be fixed for the whole run before any site is measured.

``extract`` calls :func:`calibrate` once, before the chunks. It reads a seeded sample of
sites and writes, into ``NAME.calibration/`` beside the table:

- ``illum-<k>.npy``: per plate with at least :data:`~moa_features.illumination.MIN_SITES`
  sites, its ``(C, H, W)`` float32 illumination function (:mod:`moa_features.illumination`)
  from up to ``ILLUM_SAMPLE`` of its sites (``--illum none`` switches this off);
- ``texture.npz``: per channel, the pooled grey-value histogram of up to ``TEXTURE_SAMPLE``
  negative-control sites (all sites when the screen names no controls), illumination
  corrected, and the **run** texture scheme's quantisation table learned from it
  (:func:`~moa_features.features.texture.run_lut`);
- ``calibration.json`` last (it marks the pass complete): the fingerprint of the inputs, the
  plates corrected and the sample sizes, and each channel's level edges (grey-value
  percentiles), which ``extract`` copies into ``NAME.summary.json``.

A resumed run with the same inputs reuses the folder; the chunks reference it by path
(``FeatureParams.calibration``), so Dask workers load the same files (they need the shared
filesystem that they already need for the images). :func:`measure_site` is the per-site
hook that ``extract``'s workers call: correct, measure, and build the per-object rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features import schema
from moa_features.columns import control_mask
from moa_features.datasets import DatasetError
from moa_features.features import FeatureParams, masks_from_labels
from moa_features.features import measure_site as measure_features
from moa_features.features.segmentation import CELL_METHODS
from moa_features.features.texture import robust_range, run_lut
from moa_features.features.units import UNITS
from moa_features.illumination import MIN_SITES, block_means, correct, illumination_function
from moa_features.io import atomic_path
from moa_features.masks import read_user_masks

VERSION = 1
ILLUM_SAMPLE = 32
TEXTURE_SAMPLE = 64


@dataclass(frozen=True)
class Calibration:
    """A loaded first pass: texture tables per channel (or None) and illumination functions by plate."""

    folder: Path
    texture_luts: tuple[np.ndarray, ...] | None
    illum_files: dict[str, str]
    info: dict[str, Any]

    def illumination(self, metadata: dict[str, Any]) -> np.ndarray | None:
        """The ``(C, H, W)`` function of the plate of a site (its ``metadata``), or None when not corrected."""
        name = self.illum_files.get(str(metadata.get(self.info.get("plate_column", schema.PLATE))))
        return None if name is None else _load_array(str(self.folder / name))


def calibration_folder(table: str | Path) -> Path:
    """``NAME.calibration/`` beside the feature table ``NAME.parquet``."""
    return schema.sidecar_paths(table)["parts"].with_suffix(".calibration")


def check_params(params: FeatureParams) -> None:
    """Refuse options the run cannot use, before any site is read (``DatasetError`` naming the option)."""
    from moa_features.features.texture import SCHEMES

    if params.illum not in ("auto", "none"):
        raise DatasetError(f"--illum must be 'auto' or 'none', got {params.illum!r}")
    if params.texture_scheme not in SCHEMES:
        raise DatasetError(f"--texture-scheme must be one of {', '.join(SCHEMES)}, got {params.texture_scheme!r}")
    top = 256 if params.texture_scheme == "run" else 65536
    if not 2 <= params.texture_levels <= top:
        raise DatasetError(
            f"--texture-levels must be between 2 and {top} for the {params.texture_scheme} scheme, "
            f"got {params.texture_levels}"
        )
    if any(d < 1 for d in params.texture_distances):
        raise DatasetError(f"--texture-distances must be positive pixel counts, got {list(params.texture_distances)}")
    for name in ("min_diameter", "max_diameter"):
        value = getattr(params, name)
        if value is not None and not value > 0:
            raise DatasetError(f"--{name.replace('_', '-')} must be a positive number of pixels, got {value}")
    if params.cells not in CELL_METHODS:
        raise DatasetError(f"--cells must be one of {', '.join(CELL_METHODS)}, got {params.cells!r}")
    if not params.regularization >= 0:
        raise DatasetError(f"--regularization must be a number >= 0, got {params.regularization}")
    if params.intensity_units not in UNITS:
        raise DatasetError(f"intensity units must be one of {', '.join(UNITS)}, got {params.intensity_units!r}")


def _fingerprint(sites: Sequence, params: FeatureParams, shape, controls: np.ndarray, plate: str) -> str:
    h = hashlib.sha256()
    settings = [VERSION, params.texture_levels, params.texture_scheme, params.illum, shape, plate]
    h.update(json.dumps([*settings, ILLUM_SAMPLE, TEXTURE_SAMPLE, MIN_SITES]).encode())
    h.update(np.packbits(controls).tobytes())
    for s in sites:
        h.update(json.dumps([s.site_id, s.paths, s.channels]).encode())
    return h.hexdigest()


def _sample(items: list, k: int, seed: int) -> list:
    if len(items) <= k:
        return list(items)
    rng = np.random.default_rng(seed)
    return [items[i] for i in sorted(rng.choice(len(items), size=k, replace=False))]


def _load(site, shape):
    from moa_features.datasets import SiteReadError

    try:
        return site.load(shape)
    except SiteReadError:
        return None  # the measuring pass records the error


def calibrate(
    sites: Sequence,
    table: str | Path,
    params: FeatureParams,
    shape: tuple[int, int] | None = None,
    seed: int = 0,
    *,
    controls: np.ndarray | None = None,
    plate: str = schema.PLATE,
) -> FeatureParams:
    """Run (or reuse) the first pass for ``sites`` and return ``params`` pointing at it.

    sites: the run's :class:`~moa_features.datasets.Site` list; table: the output table
    (the pass goes to ``NAME.calibration/``); shape: the image size every site must have;
    controls: (n,) bool, the negative-control sites (``extract --control``; None: the default
    rule, :func:`~moa_features.columns.control_mask`); plate: the metadata key of the plate
    (``--plate``), whose sites share an illumination function.
    Options are checked first (:func:`check_params`).
    Without anything to learn (``texture_scheme="full"`` and ``illum="none"``) the folder
    is removed and ``params`` returned with ``calibration=None``. Raises ``ValueError`` when
    no sampled control site can be read for the run texture scheme.
    """
    check_params(params)
    folder = calibration_folder(table)
    wants_texture = params.texture_scheme == "run" and "texture" in params.families
    if not wants_texture and params.illum == "none":
        return replace(params, calibration=None)
    if controls is None:
        controls = control_mask(pd.DataFrame.from_records([s.metadata for s in sites]))
    controls = np.asarray(controls, dtype=bool)
    fingerprint = _fingerprint(sites, params, shape, controls, plate)
    done = folder / "calibration.json"
    if done.exists():
        try:
            if json.loads(done.read_text()).get("fingerprint") == fingerprint:
                return replace(params, calibration=str(folder))
        except json.JSONDecodeError:
            pass  # a broken record: compute afresh
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"fingerprint": fingerprint, "version": VERSION, "plate_column": plate}
    info.update(illumination={}, texture=None)
    illum_files: dict[str, str] = {}
    if params.illum == "auto":
        illum_files = _illumination_pass(sites, folder, shape, seed, info, plate)
    if wants_texture:
        chosen = [s for s, c in zip(sites, controls) if c]
        _texture_pass(sites, chosen, folder, shape, seed, params.texture_levels, illum_files, info, plate)
    info["illumination_files"] = illum_files
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps(info, indent=1, default=str))
    return replace(params, calibration=str(folder))


def _illumination_pass(sites, folder: Path, shape, seed: int, info: dict, plate_key: str) -> dict[str, str]:
    by_plate: dict[str, list] = {}
    for s in sites:
        by_plate.setdefault(str(s.metadata.get(plate_key)), []).append(s)
    files: dict[str, str] = {}
    for k, (plate, members) in enumerate(sorted(by_plate.items())):
        record: dict[str, Any] = {"sites": len(members)}
        if len(members) >= MIN_SITES:
            blocks, full_shape = [], None
            for site in _sample(members, ILLUM_SAMPLE, seed + k):
                image = _load(site, shape)
                if image is not None:
                    blocks.append(block_means(image))
                    full_shape = image.shape[1:]
            record["sampled"] = len(blocks)
            if len(blocks) >= MIN_SITES:
                name = f"illum-{k:04d}.npy"
                function = illumination_function(blocks, full_shape)
                with atomic_path(folder / name) as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, function)
                files[plate] = name
                record["max_over_min"] = [float(f.max()) for f in function]
        record["corrected"] = plate in files
        info["illumination"][plate] = record
    return files


def _texture_pass(
    sites, controls, folder: Path, shape, seed: int, levels: int, illum_files: dict, info: dict, plate_key: str
) -> None:
    pool = list(controls) or list(sites)
    hist = None
    used = 0
    sample = _sample(pool, TEXTURE_SAMPLE, seed)
    chosen = {id(s) for s in sample}
    for site in sample + [s for s in pool if id(s) not in chosen]:  # unreadable sampled sites: read on
        if used == TEXTURE_SAMPLE:
            break
        image = _load(site, shape)
        if image is None:
            continue
        plate = str(site.metadata.get(plate_key))
        if plate in illum_files:
            image = correct(image, _load_array(str(folder / illum_files[plate])))
        bins = int(np.iinfo(image.dtype).max) + 1
        counts = np.stack([np.bincount(p.ravel(), minlength=bins) for p in image])
        if hist is not None and hist.shape != counts.shape:
            raise DatasetError(
                f"site {site.site_id}: {image.dtype} / {image.shape[0]} channels differ from the sample's"
            )
        hist = counts if hist is None else hist + counts
        used += 1
    if hist is None:  # no site can be read: every site fails in the measuring pass, which records why
        return
    luts = np.stack([run_lut(h, levels) for h in hist])
    with atomic_path(folder / "texture.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, luts=luts, histograms=hist)
    edges = [[int(np.searchsorted(lut, k)) for k in range(1, levels)] for lut in luts]
    info["texture"] = {
        "scheme": "run",
        "levels": levels,
        "sample": "negative controls" if controls else "all sites (no negative controls named)",
        "sites": used,
        "robust_range": [list(robust_range(h)) for h in hist],  # per channel: 0.1 and 99.9th percentiles
        "level_edges": edges,  # per channel: the smallest grey value of levels 1..levels-1
    }


@lru_cache(maxsize=8)
def _load_array(path: str) -> np.ndarray:
    return np.load(path)


@lru_cache(maxsize=4)
def load_calibration(folder: str) -> Calibration:
    """Read ``NAME.calibration/`` (cached per process: workers load it once)."""
    root = Path(folder)
    done = root / "calibration.json"
    if not done.exists():
        raise FileNotFoundError(f"{done}: calibration pass missing or incomplete; rerun extract")
    info = json.loads(done.read_text())
    luts = None
    if info.get("texture"):
        with np.load(root / "texture.npz") as data:
            luts = tuple(data["luts"])
    return Calibration(root, luts, dict(info.get("illumination_files", {})), info)


def calibration_summary(params: FeatureParams) -> dict[str, Any] | None:
    """What the run learned (for ``NAME.summary.json``): illumination per plate, texture levels."""
    if params.calibration is None:
        return None
    info = load_calibration(params.calibration).info
    return {"folder": params.calibration, "illumination": info["illumination"], "texture": info["texture"]}


def measure_site(image: np.ndarray, site, params: FeatureParams) -> tuple[dict[str, float], pd.DataFrame | None]:
    """The per-site work of ``extract``: illumination-correct, measure, per-object rows.

    image: the site's ``(C, H, W)`` pixels; site: its :class:`~moa_features.datasets.Site`;
    params: the run's parameters (``params.calibration`` names the first pass). Returns the
    site's features and, with ``params.objects``, a DataFrame with one row per object: the
    site's ``Metadata_`` keys (not the image paths), ``ObjectNumber``,
    ``Location_Center_X/Y`` and the per-object measurements.
    """
    calibration = load_calibration(params.calibration) if params.calibration else None
    luts = None
    if calibration is not None:
        function = calibration.illumination(site.metadata)
        if function is not None:
            image = correct(image, function)
        luts = calibration.texture_luts
    given = read_user_masks(site, image.shape[1:])
    masks = None if given is None else masks_from_labels(*given)
    features, objects = measure_features(image, site.channels, params, texture_luts=luts, masks=masks)
    if objects is None:
        return features, None
    n = len(objects["ObjectNumber"])
    keys = {k: v for k, v in site.metadata.items() if not k.startswith(schema.PATH_PREFIX)}
    frame = pd.DataFrame({k: [v] * n for k, v in keys.items()})
    body = pd.DataFrame(objects)
    body["ObjectNumber"] = body["ObjectNumber"].astype("int64")
    return features, pd.concat([frame, body], axis=1)


def objects_path(table: str | Path) -> Path:
    """``NAME.objects.parquet`` beside the feature table."""
    return schema.sidecar_paths(table)["parts"].with_suffix(".objects.parquet")


def write_objects_table(parts: Path, n_chunks: int, out: Path) -> int:
    """Stream the chunks' ``chunk-NNNNN.objects.parquet`` into one table; returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [parts / f"chunk-{i:05d}.objects.parquet" for i in range(n_chunks)]
    files = [f for f in files if f.exists()]
    schemas = [pq.read_schema(f).remove_metadata() for f in files]
    schemas = [s for s, f in zip(schemas, files) if pq.read_metadata(f).num_rows]
    unified = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    rows = 0
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, unified) as writer:
            for f in files:
                df = pd.read_parquet(f)
                if len(df):
                    writer.write_table(
                        pa.Table.from_pandas(df.reindex(columns=unified.names), schema=unified, preserve_index=False)
                    )
                    rows += len(df)
    return rows
