"""Dataset readers: a dataset on disk -> a list of :class:`Site` records.

A site is metadata (``Metadata_``-prefixed, CellProfiler-style keys) plus the paths of its
channel images, read lazily by :meth:`Site.load` into a ``(C, H, W)`` array. Three layouts:

``rxrx``
    Recursion's layout: ``metadata.csv`` (RxRx schema: site_id, well_id, cell_type,
    experiment, plate, well, site, and treatment/treatment_conc (RxRx2) or sirna/well_type
    (RxRx1)) beside ``images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png``.
``loaddata``
    A CellProfiler LoadData CSV: ``FileName_<Channel>``/``PathName_<Channel>`` columns,
    optionally prefixed ``Image_``; relative path names are resolved against ``root`` (default:
    the CSV's folder). Other columns are kept as metadata. Every row is an image set: rows that
    share plate/well/site (single-cell crops, time points, z-planes) get distinct site ids
    (:func:`image_set_ids`).
``manifest``
    A plain CSV with a ``path_<channel>`` column per channel, or one ``path`` column naming a
    multi-page TIFF / ``.npy`` holding all channels of a site (``(C, H, W)``, or ``(H, W, C)``
    with C <= 16).

Images may be 8- or 16-bit PNG or TIFF; palette and RGB PNGs are read as their grey values when
they are grey, and refused (naming the file) when they hold colour. The channel set of an RxRx
dataset comes from the files of every plate. Nothing here computes features.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moa_features import schema

LAYOUTS = ("rxrx", "loaddata", "manifest")
RXRX_REQUIRED = ("experiment", "plate", "well", "site")

# Source column (lower-cased, prefixes/channel suffixes stripped) -> standard metadata key.
_STANDARD_KEYS = {
    "plate": schema.PLATE,
    "well": schema.WELL,
    "site": schema.SITE,
    "experiment": schema.EXPERIMENT,
    "treatment": schema.TREATMENT,
    "compound": schema.TREATMENT,
    "treatment_conc": schema.CONCENTRATION,
    "concentration": schema.CONCENTRATION,
    "moa": schema.MOA,
    "site_id": schema.SITE_ID,
    "well_id": schema.WELL_ID,
}


# Standard keys come first in every table, in this order.
_KEY_ORDER = (
    schema.PLATE,
    schema.WELL,
    schema.SITE,
    schema.EXPERIMENT,
    schema.TREATMENT,
    schema.CONCENTRATION,
    schema.MOA,
    schema.SITE_ID,
    schema.WELL_ID,
)


class DatasetError(ValueError):
    """The dataset itself is unusable (bad index file, missing column): stops a run."""


class SiteReadError(OSError):
    """One site cannot be read; the run records it and goes on.

    ``path`` names the offending file (or None), ``site_id`` the site.
    """

    def __init__(self, message: str, site_id: str, path: str | None = None):
        super().__init__(message)
        self.site_id = site_id
        self.path = path


@dataclass(frozen=True, slots=True)
class Site:
    """One field of view: metadata plus lazily read channel images.

    ``keys``: the site's ``Metadata_`` values (plate, well, site, treatment, ...) without its
    image paths; :attr:`metadata` adds ``Metadata_Path_<channel>`` (the table row's metadata).
    :attr:`paths` holds one file per channel, or a single file with every channel; for such a
    stack, ``planes`` (when not None) are the indices of the planes kept, one per channel.
    A run keeps the index of every site, so a site holds nothing twice: its files are
    ``files`` in ``folder`` (one folder object shared by the sites of a plate; ``""`` when the
    files are in several folders and ``files`` are whole paths). Build one with :meth:`at`.
    """

    site_id: str
    keys: dict[str, Any]
    files: tuple[str, ...]
    channels: tuple[str, ...]
    planes: tuple[int, ...] | None = None
    folder: str = ""

    @classmethod
    def at(
        cls,
        site_id: str,
        keys: dict[str, Any],
        paths: Sequence[str],
        channels: Sequence[str],
        planes: tuple[int, ...] | None = None,
        shared: dict | None = None,
    ) -> Site:
        """The site of these files (made absolute); ``shared``: a dict that hands out one object per folder."""
        paths = [os.path.abspath(p) for p in paths]
        folders = {os.path.dirname(p) for p in paths}
        if len(folders) != 1:
            return cls(site_id, keys, tuple(paths), tuple(channels), planes)
        folder = folders.pop()
        folder = folder if shared is None else shared.setdefault(folder, folder)
        return cls(site_id, keys, tuple(os.path.basename(p) for p in paths), tuple(channels), planes, folder)

    @property
    def paths(self) -> tuple[str, ...]:
        """The absolute path of each channel's file (of the one multi-channel file)."""
        return tuple(os.path.join(self.folder, f) for f in self.files) if self.folder else self.files

    @property
    def metadata(self) -> dict[str, Any]:
        """``keys`` and one ``Metadata_Path_<channel>: path`` per channel (a new dict)."""
        paths = self.paths * len(self.channels) if len(self.paths) == 1 else self.paths
        return {**self.keys, **{schema.PATH_PREFIX + ch: p for ch, p in zip(self.channels, paths)}}

    def load(self, expected_shape: tuple[int, int] | None = None, expected_dtype: str | None = None) -> np.ndarray:
        """Read the site as a ``(C, H, W)`` uint8/uint16 array.

        Raises :class:`SiteReadError` naming the file for a missing, corrupt or
        wrongly-sized image, or (with ``expected_dtype``, ``"uint8"`` or ``"uint16"``) one
        whose bit depth differs from the dataset's.
        """
        if self.is_stack:
            image = read_stack(self.paths[0], self.site_id)
            needed = len(self.channels) if self.planes is None else max(self.planes) + 1
            if image.shape[0] != len(self.channels) and (self.planes is None or image.shape[0] < needed):
                raise SiteReadError(
                    f"{self.paths[0]}: holds {image.shape[0]} channels, expected {needed}",
                    self.site_id,
                    self.paths[0],
                )
            planes = list(image if self.planes is None else image[list(self.planes)])
        else:
            planes = [read_image(p, self.site_id, ch) for p, ch in zip(self.paths, self.channels)]
        shape = expected_shape or planes[0].shape
        for plane, ch, p in zip(planes, self.channels, self.paths * len(self.channels)):
            if plane.shape != tuple(shape):
                raise SiteReadError(
                    f"{p}: channel {ch} has size {plane.shape[0]}x{plane.shape[1]}, expected {shape[0]}x{shape[1]}",
                    self.site_id,
                    p,
                )
        dtypes = {plane.dtype for plane in planes}
        if expected_dtype is not None:
            for plane, p in zip(planes, self.paths * len(self.channels)):
                if plane.dtype != np.dtype(expected_dtype):
                    raise SiteReadError(
                        f"{p}: {_bits(plane.dtype)}-bit image, but the dataset's images are "
                        f"{_bits(np.dtype(expected_dtype))}-bit (intensities would not be comparable)",
                        self.site_id,
                        p,
                    )
        if len(dtypes) > 1:
            raise SiteReadError(
                f"site {self.site_id}: channels mix bit depths {sorted(map(str, dtypes))}",
                self.site_id,
                self.paths[0],
            )
        return np.stack(planes)

    @property
    def is_stack(self) -> bool:
        """Whether every channel comes from one multi-channel file (multi-page TIFF, ``.npy``)."""
        return len(self.files) == 1 and (len(self.channels) > 1 or self.planes is not None)


@dataclass
class Dataset:
    """The sites of a dataset, in ``site_id`` order, and how they were found.

    ``notes``: what the reader recognised and left out, in words (e.g. a LoadData overlay
    column that is not an image channel), for the command to print.
    """

    sites: list[Site]
    channels: tuple[str, ...]
    layout: str
    source: Path
    metadata: pd.DataFrame = field(repr=False)  # the index file's rows, less its image file and folder columns
    notes: tuple[str, ...] = ()


def _bits(dtype: np.dtype) -> int:
    return np.dtype(dtype).itemsize * 8


def _grey_from_pil(im: Any, path: str, site_id: str, what: str) -> np.ndarray:
    """Grey values of a PIL image: palette and RGB(A) images only when they are grey.

    A palette image is looked up in its palette; an RGB(A) image whose three colour planes are
    equal gives that plane. Colour images raise :class:`SiteReadError` naming the file.
    """
    if im.mode in ("L", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im)
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if im.mode == "LA":
        return np.asarray(im.getchannel("L"))
    if im.mode in ("P", "PA"):
        index = np.asarray(im.getchannel("P") if im.mode == "PA" else im)
        palette = np.asarray(im.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
        used = np.unique(index)
        if used.size and used.max() >= len(palette):
            raise SiteReadError(f"{path}: palette image uses colours missing from its palette{what}", site_id, path)
        rgb = palette[used]
        if not (rgb == rgb[:, :1]).all():
            raise SiteReadError(
                f"{path}: a colour palette image; expected grey values (one channel per file){what}", site_id, path
            )
        return palette[:, 0][index]
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im)[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()):
            raise SiteReadError(
                f"{path}: a colour ({im.mode}) image; expected one grey channel per file{what}", site_id, path
            )
        return np.ascontiguousarray(rgb[..., 0])
    raise SiteReadError(f"{path}: expected a single-channel grayscale image, got mode {im.mode}{what}", site_id, path)


def image_header(path: str | Path) -> tuple[tuple[int, int], str]:
    """``((H, W), dtype)`` of an image file from its header only (``"uint8"`` or ``"uint16"``).

    Raises OSError (or a decoder's error) for an unreadable file.
    """
    path = str(path)
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return tuple(page.shape[:2]), str(np.dtype(page.dtype))
    from PIL import Image

    with Image.open(path) as im:
        dtype = "uint16" if im.mode.startswith("I") else "uint8"
        return (im.height, im.width), dtype


def _as_image_array(arr: np.ndarray, path: str, site_id: str) -> np.ndarray:
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return arr
    if np.issubdtype(arr.dtype, np.integer) and arr.size and 0 <= arr.min() and arr.max() <= 65535:
        return arr.astype(np.uint16)
    raise SiteReadError(
        f"{path}: unsupported pixel type {arr.dtype} (expected 8- or 16-bit unsigned integers)",
        site_id,
        path,
    )


def read_image(path: str | Path, site_id: str = "", channel: str = "") -> np.ndarray:
    """Read one single-channel 8/16-bit PNG or TIFF as a 2-D array."""
    path = str(path)
    what = f" (channel {channel} of site {site_id})" if channel else ""
    if not Path(path).is_file():
        raise SiteReadError(f"{path}: file not found{what}", site_id, path)
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = _grey_from_pil(im, path, site_id, what)
    except SiteReadError:
        raise
    except Exception as exc:  # PIL/tifffile raise many types for corrupt files
        raise SiteReadError(f"{path}: cannot decode image{what}: {exc}", site_id, path) from exc
    if arr.ndim != 2:
        raise SiteReadError(f"{path}: expected a 2-D single-channel image, got shape {arr.shape}{what}", site_id, path)
    return _as_image_array(arr, path, site_id)


def read_stack(path: str | Path, site_id: str = "") -> np.ndarray:
    """Read a multi-channel file (multi-page TIFF or ``.npy``) as ``(C, H, W)``."""
    path = str(path)
    if not Path(path).is_file():
        raise SiteReadError(f"{path}: file not found" + (f" (site {site_id})" if site_id else ""), site_id, path)
    try:
        if path.lower().endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            import tifffile

            arr = tifffile.imread(path)
    except Exception as exc:
        raise SiteReadError(f"{path}: cannot read multi-channel image: {exc}", site_id, path) from exc
    if arr.ndim != 3:
        raise SiteReadError(f"{path}: expected a 3-D (C, H, W) stack, got shape {arr.shape}", site_id, path)
    if arr.shape[-1] <= 16 and arr.shape[0] > 16:  # (H, W, C) -> (C, H, W)
        arr = np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(_as_image_array(arr, path, site_id))


# --------------------------------------------------------------------------- index files


INDEX_ROWS = 8192  # rows of an index CSV parsed at a time (the parser's buffers stay small)


def _read_index(path: Path) -> pd.DataFrame:
    """The rows of an index CSV, parsed :data:`INDEX_ROWS` at a time.

    A column whose blocks parse to different types (numbers in one, text in another) is text,
    as when the whole file is parsed at once.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: metadata file not found")
    try:
        with pd.read_csv(path, chunksize=INDEX_ROWS) as reader:
            blocks = list(reader)
        df = pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0]
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read metadata CSV: {exc}") from exc
    mixed = [c for c in df.columns if pd.api.types.is_object_dtype(df[c])] if len(blocks) > 1 else []
    for column in mixed:
        if df[column].map(lambda v: isinstance(v, str)).any():  # text in some block: text throughout
            df[column] = df[column].map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v)).astype("str")
    if df.empty:
        raise DatasetError(f"{path}: metadata CSV has no rows")
    return df


def _require(df: pd.DataFrame, columns: Sequence[str], path: Path, layout: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing required column(s) {', '.join(missing)} for the {layout} layout "
            f"(found: {', '.join(map(str, df.columns))})"
        )


def _metadata_key(column: str, channels: Sequence[str] = ()) -> str:
    """Map a source column name to its ``Metadata_`` key (standard keys capitalised)."""
    name = re.sub(r"^(Image_)?(Metadata_)?", "", str(column))
    for ch in channels:
        if name.endswith(f"_{ch}"):
            name = name[: -len(ch) - 1]
    return _STANDARD_KEYS.get(name.lower(), schema.METADATA_PREFIX + name)


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def read_rxrx(path: str | Path) -> Dataset:
    """Read an RxRx-layout dataset (folder holding ``metadata.csv``, or the CSV itself)."""
    path = Path(path)
    csv = path / "metadata.csv" if path.is_dir() else path
    root = csv.parent
    df = _read_index(csv)
    _require(df, RXRX_REQUIRED, csv, "rxrx")
    treatment_col = "treatment" if "treatment" in df.columns else ("sirna" if "sirna" in df.columns else None)
    plates, site_numbers = integer_column(df, "plate", csv), integer_column(df, "site", csv)
    channels = _rxrx_channels(root, df["experiment"].astype(str), plates)
    sites = []
    shared: dict[str, str] = {}  # one object per folder
    for i, row in enumerate(df.itertuples(index=False)):
        rec = row._asdict()
        exp, plate, well, site = rec["experiment"], int(plates[i]), str(rec["well"]), int(site_numbers[i])
        site_id = str(rec.get("site_id") or f"{exp}_{plate}_{well}_{site}")
        meta = {_metadata_key(col): _clean(v) for col, v in rec.items() if col != "plate"}
        if treatment_col == "sirna":
            meta[schema.TREATMENT] = _clean(rec["sirna"])
        meta[schema.PLATE] = f"{exp}_{plate}"
        meta[schema.SITE] = site
        meta[schema.SITE_ID] = site_id
        meta.setdefault(schema.WELL_ID, f"{exp}_{plate}_{well}")
        folder = root / "images" / str(exp) / f"Plate{plate}"
        paths = tuple(str(folder / f"{well}_s{site}_{ch}.png") for ch in channels)
        sites.append(Site.at(site_id, meta, paths, channels, shared=shared))
    return _dataset(sites, channels, "rxrx", csv, df)


def integer_column(df: pd.DataFrame, column: str, source: Path) -> np.ndarray:
    """``df[column]`` as int64; DatasetError naming the file, column and first bad row otherwise.

    Rows are counted from 1 after the header line (row 1 is line 2 of the file).
    """
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{source}: column {column!r} row {i + 1} (line {i + 2}) is {df[column].iloc[i]!r}; "
            f"expected a whole number in every row ({int(bad.sum())} row(s) are not)"
        )
    return values.to_numpy().astype(np.int64)


def _rxrx_channels(root: Path, experiments: pd.Series, plates: np.ndarray) -> list[str]:
    """Channel names from the image files of every plate folder of the dataset.

    A plate whose sites miss a channel never drops that channel for the others: the
    missing files become per-site read errors.
    """
    folders = [root / "images" / e / f"Plate{p}" for e, p in dict.fromkeys(zip(experiments, plates))]
    existing = [f for f in folders if f.is_dir()]
    if not existing:
        raise DatasetError(
            f"{folders[0]}: image folder not found (RxRx layout expects "
            "images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png)"
        )
    numbers = {int(m.group(1)) for f in existing for p in f.iterdir() if (m := re.search(r"_w(\d+)\.png$", p.name))}
    if not numbers:
        raise DatasetError(f"{existing[0].parent}: no *_w<channel>.png images found in any plate folder")
    return schema.channel_names(max(numbers))


def read_loaddata(path: str | Path, root: str | Path | None = None) -> Dataset:
    """Read a CellProfiler LoadData CSV (``FileName_<Ch>``/``PathName_<Ch>`` columns)."""
    csv = Path(path)
    if root is not None and not Path(root).is_dir():
        raise DatasetError(
            f"--root {root}: folder not found (it is where the relative PathName_ columns of {csv} start)"
        )
    df = _read_index(csv)
    pattern = re.compile(r"^(?:Image_)?FileName_(.+)$")
    named = [m.group(1) for c in df.columns if (m := pattern.match(str(c)))]
    if not named:
        raise DatasetError(f"{csv}: no FileName_<Channel> columns (CellProfiler LoadData layout)")
    prefix = "Image_" if f"Image_FileName_{named[0]}" in df.columns else ""
    skipped = {ch: why for ch in named if (why := _not_a_channel(ch, df[f"{prefix}FileName_{ch}"]))}
    channels = [ch for ch in named if ch not in skipped]
    if not channels:
        raise DatasetError(f"{csv}: no image channel among the FileName_ columns ({', '.join(named)})")
    _require(df, [f"{prefix}PathName_{ch}" for ch in channels], csv, "loaddata")
    _check_key_columns(df, csv, named)
    _check_object_masks(df, csv)
    base = Path(root) if root is not None else csv.parent
    file_cols = {f"{prefix}{kind}Name_{ch}" for ch in named for kind in ("File", "Path")}
    metas, all_paths = [], []
    for i, row in enumerate(_records(df)):
        meta = {_metadata_key(c, channels): _clean(v) for c, v in row.items() if c not in file_cols}
        folders = (str(row[f"{prefix}PathName_{ch}"]) for ch in channels)
        all_paths.append(tuple(str(base / d / str(row[f"{prefix}FileName_{ch}"])) for d, ch in zip(folders, channels)))
        first_name = str(row[f"{prefix}FileName_{channels[0]}"])
        if schema.SITE not in meta:
            m = re.search(r"_s(\d+)", first_name)
            meta[schema.SITE] = int(m.group(1)) if m else i + 1
        plate, well = meta.get(schema.PLATE), meta.get(schema.WELL)
        if plate is not None and well is not None:
            meta.setdefault(schema.WELL_ID, f"{plate}_{well}")
        _object_mask_paths(meta, base)
        metas.append(meta)
    explicit = any(schema.SITE_ID in m and m[schema.SITE_ID] is not None for m in metas)
    ids = [
        str(
            m.get(schema.SITE_ID)
            or (
                f"{m.get(schema.PLATE)}_{m.get(schema.WELL)}_{m[schema.SITE]}"
                if m.get(schema.PLATE)
                else f"site{i:06d}"
            )
        )
        for i, m in enumerate(metas)
    ]
    if not explicit:
        ids = image_set_ids(
            ids, metas, [str(c) for c in df.columns if str(c).startswith(schema.METADATA_PREFIX)], channels
        )
    sites = []
    shared: dict[str, str] = {}  # one object per folder
    for site_id, meta, paths in zip(ids, metas, all_paths):
        meta[schema.SITE_ID] = site_id
        sites.append(Site.at(site_id, meta, paths, channels, shared=shared))
    notes = tuple(
        f"{csv}: {prefix}FileName_{ch} is {why}, not an image channel: not measured" for ch, why in skipped.items()
    )
    return _dataset(sites, channels, "loaddata", csv, df, notes)


# LoadData image columns that are not channels of the cells: CellProfiler's Image.csv lists the
# overlays and outlines it saved, and pipelines load illumination functions (.npy / .mat).
_NOT_CHANNEL_NAMES = (
    (re.compile(r"overlay", re.IGNORECASE), "a segmentation overlay"),
    (re.compile(r"outline", re.IGNORECASE), "an outline image"),
    (re.compile(r"^illum", re.IGNORECASE), "an illumination function"),
)


def _not_a_channel(name: str, files: pd.Series) -> str | None:
    """Why the LoadData image column ``FileName_<name>`` is not an image channel, or None when it is one."""
    for pattern, what in _NOT_CHANNEL_NAMES:
        if pattern.search(name):
            return what
    suffixes = {Path(str(f)).suffix.lower() for f in files.dropna()}
    if suffixes and suffixes <= {".npy", ".mat"}:
        return "an illumination function (.npy / .mat files)"
    return None


def _check_key_columns(df: pd.DataFrame, source: Path, channels: Sequence[str] = ()) -> None:
    """Plate and well values must be given in every row, and site numbers be whole numbers.

    DatasetError naming the file, the column and the first bad row (rows counted from 1 after
    the header line) otherwise.
    """
    for column in df.columns:
        key = _metadata_key(column, channels)
        if key == schema.SITE:
            integer_column(df, column, source)
        elif key in (schema.PLATE, schema.WELL):
            empty = df[column].isna() | (df[column].astype(str).str.strip() == "")
            if empty.any():
                i = int(np.flatnonzero(empty.to_numpy())[0])
                raise DatasetError(
                    f"{source}: column {column!r} row {i + 1} (line {i + 2}) is empty; every row needs its "
                    f"{key.removeprefix(schema.METADATA_PREFIX).lower()} ({int(empty.sum())} row(s) lack it)"
                )


_SITE_KEYS = {schema.PLATE, schema.WELL, schema.SITE, schema.SITE_ID, schema.WELL_ID}


def image_set_ids(
    ids: Sequence[str], metas: Sequence[dict[str, Any]], source_columns: Sequence[str], channels: Sequence[str] = ()
) -> list[str]:
    """Unique ids for LoadData rows (image sets) whose plate/well/site repeat.

    Every LoadData row is an image set (CellProfiler's convention): single-cell crops, time
    points or z-planes share a field. A repeated id gets the ``Metadata_`` columns whose values
    differ within its group appended as ``_<Name>-<value>`` (``P1_B02_1_Crop-3``), or, when no
    such column tells the rows apart, ``_row<N>`` (its 1-based row in the CSV).
    """
    groups: dict[str, list[int]] = {}
    for i, site_id in enumerate(ids):
        groups.setdefault(site_id, []).append(i)
    keys = [k for k in dict.fromkeys(_metadata_key(c, channels) for c in source_columns) if k not in _SITE_KEYS]
    out = list(ids)
    for site_id, rows in groups.items():
        if len(rows) == 1:
            continue
        varying = [k for k in keys if len({repr(metas[i].get(k)) for i in rows}) > 1]
        labels = {i: "_".join(f"{k[len(schema.METADATA_PREFIX) :]}-{metas[i].get(k)}" for k in varying) for i in rows}
        unique = varying and len(set(labels.values())) == len(rows)
        for i in rows:
            out[i] = f"{site_id}_{labels[i]}" if unique else f"{site_id}_row{i + 1}"
    return out


OBJECT_MASKS = ("Nuclei", "Cells")  # user masks: ObjectsFileName_<name> -> Metadata_ObjectsPath_<name>


def _check_object_masks(df: pd.DataFrame, source: Path) -> None:
    """Masks named ``ObjectsFileName_<Name>`` must be Nuclei (and Cells): a Cells mask needs its Nuclei mask.

    Raises DatasetError naming the column (or the first row) otherwise: a mask that would be
    ignored, or cells measured around nuclei that are not theirs, is unusable input.
    """
    pattern = re.compile(r"^(?:Image_)?(?:Metadata_)?ObjectsFileName_(.+)$")
    names = {m.group(1): str(c) for c in df.columns if (m := pattern.match(str(c)))}
    unknown = [c for name, c in names.items() if name not in OBJECT_MASKS]
    if unknown:
        raise DatasetError(
            f"{source}: mask column(s) {', '.join(unknown)} not understood; the masks used are "
            "ObjectsFileName_Nuclei (required with masks) and ObjectsFileName_Cells (cell i holding nucleus i)"
        )
    if "Cells" not in names:
        return
    has = {name: df[c].notna() & (df[c].astype(str).str.strip() != "") for name, c in names.items()}
    lacking = has["Cells"] & ~has["Nuclei"] if "Nuclei" in has else has["Cells"]
    if lacking.any():
        i = int(np.flatnonzero(lacking.to_numpy())[0])
        raise DatasetError(
            f"{source}: row {i + 1} (line {i + 2}) names a Cells mask ({names['Cells']}) but no Nuclei mask "
            f"(ObjectsFileName_Nuclei{'' if 'Nuclei' in has else ' column missing'}; {int(lacking.sum())} row(s)); "
            "cells are measured around their nuclei (cell i holds nucleus i): add the nuclei masks, or drop the "
            "Cells column to segment both from the images"
        )


def _object_mask_paths(meta: dict[str, Any], base: Path) -> None:
    """User masks: ``ObjectsFileName_<Name>`` (+ ``ObjectsPathName_<Name>``) -> ``Metadata_ObjectsPath_<Name>``.

    CellProfiler's LoadData names label images this way (e.g. ``ObjectsFileName_Nuclei``,
    ``ObjectsFileName_Cells``); the absolute path is what measurement reads.
    """
    for key in [k for k in meta if k.startswith(f"{schema.METADATA_PREFIX}ObjectsFileName_")]:
        name = key[len(f"{schema.METADATA_PREFIX}ObjectsFileName_") :]
        folder = meta.get(f"{schema.METADATA_PREFIX}ObjectsPathName_{name}") or ""
        if meta[key]:
            meta[f"{schema.METADATA_PREFIX}ObjectsPath_{name}"] = os.path.abspath(base / str(folder) / str(meta[key]))


def read_manifest(path: str | Path) -> Dataset:
    """Read a manifest CSV: ``path_<channel>`` columns, or one multi-channel ``path``.

    The channels of multi-channel files are named ``w1..wC`` after the first file's planes.
    """
    csv = Path(path)
    df = _read_index(csv)
    per_channel = [c[len("path_") :] for c in df.columns if str(c).startswith("path_")]
    if per_channel:
        names = per_channel
    elif "path" in df.columns:
        names = schema.channel_names(_stack_depth(csv, df["path"]))
    else:
        raise DatasetError(f"{csv}: a manifest needs path_<channel> columns or a 'path' column")
    _check_key_columns(df, csv)
    _check_object_masks(df, csv)
    path_cols = {f"path_{ch}" for ch in per_channel} | {"path"}
    sites = []
    shared: dict[str, str] = {}  # one object per folder
    for i, row in enumerate(_records(df)):
        meta = {_metadata_key(c): _clean(v) for c, v in row.items() if c not in path_cols}
        site_id = str(meta.get(schema.SITE_ID) or f"site{i:06d}")
        meta[schema.SITE_ID] = site_id
        _object_mask_paths(meta, csv.parent)
        if per_channel:
            paths = tuple(_resolve(csv.parent, row[f"path_{ch}"]) for ch in names)
        else:
            paths = (_resolve(csv.parent, row["path"]),)
        sites.append(Site.at(site_id, meta, paths, names, shared=shared))
    return _dataset(sites, names, "manifest", csv, df)


STACK_PROBE_ROWS = 24  # rows of a stack manifest tried for the number of channels


def _stack_depth(csv: Path, paths: pd.Series) -> int:
    """The number of planes of a stack manifest's files: the first readable of its first rows.

    A missing or unreadable file among them becomes that site's error row later; DatasetError
    naming the files when none of the first :data:`STACK_PROBE_ROWS` can be read.
    """
    failures = []
    for i, p in enumerate(paths.iloc[:STACK_PROBE_ROWS]):
        try:
            return read_stack(_resolve(csv.parent, p)).shape[0]
        except SiteReadError as exc:
            failures.append(f"row {i + 1}: {exc}")
    raise DatasetError(
        f"{csv}: none of the first {len(failures)} 'path' files can be read, so the number of channels is "
        f"unknown ({'; '.join(failures[:3])}{'; ...' if len(failures) > 3 else ''})"
    )


def _records(df: pd.DataFrame, rows: int = 4096) -> Iterator[dict[str, Any]]:
    """The rows of ``df`` as dicts, ``rows`` at a time (never all of an index's rows as dicts at once)."""
    for start in range(0, len(df), rows):
        yield from df.iloc[start : start + rows].to_dict("records")


def _resolve(base: Path, p: Any) -> str:
    p = Path(str(p))
    return str(p if p.is_absolute() else base / p)


_IMAGE_COLUMN = re.compile(r"^(?:Image_)?(?:FileName|PathName|URL)_|^path(?:_|$)")


def _dataset(
    sites: list[Site], channels: Sequence[str], layout: str, source: Path, df: pd.DataFrame, notes: tuple[str, ...] = ()
) -> Dataset:
    ids = [s.site_id for s in sites]
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise DatasetError(
            f"{source}: site id {dup!r} occurs more than once; every row must be its own site "
            "(give each row a distinct site_id, or for a LoadData CSV omit Metadata_site_id so that rows "
            "sharing plate/well/site are told apart by their other Metadata_ columns)"
        )
    shared: dict[Any, Any] = {}  # one object per repeated value (plate, well, treatment, ...): a flat index
    for i, s in enumerate(sites):  # replaced in place: the index is never held twice
        meta = {k: s.keys[k] for k in _KEY_ORDER if k in s.keys}
        meta.update((k, v) for k, v in s.keys.items() if k not in meta)
        for k, v in meta.items():
            if isinstance(v, str) and k != schema.SITE_ID:
                meta[k] = shared.setdefault(v, v)
        sites[i] = Site(s.site_id, meta, s.files, s.channels, None, s.folder)
    sites.sort(key=lambda s: s.site_id)
    df = df.drop(columns=[c for c in df.columns if _IMAGE_COLUMN.match(str(c))])  # the sites hold the paths
    return Dataset(sites=sites, channels=tuple(channels), layout=layout, source=source, metadata=df, notes=notes)


def detect_layout(path: str | Path) -> str:
    """Guess the layout of ``path`` (a folder or a CSV file)."""
    path = Path(path)
    if path.is_dir():
        if (path / "metadata.csv").is_file() and (path / "images").is_dir():
            return "rxrx"
        raise DatasetError(f"{path}: folder is not an RxRx dataset (expected metadata.csv and images/)")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or folder")
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read CSV header: {exc}") from exc
    if any(re.match(r"^(Image_)?FileName_", c) for c in columns):
        return "loaddata"
    if "path" in columns or any(c.startswith("path_") for c in columns):
        return "manifest"
    if all(c in columns for c in RXRX_REQUIRED) and (path.parent / "images").is_dir():
        return "rxrx"
    raise DatasetError(
        f"{path}: cannot tell the layout from its columns ({', '.join(columns)}); "
        "expected RxRx metadata, LoadData FileName_/PathName_ columns, or manifest path columns"
    )


def open_dataset(
    path: str | Path,
    layout: str = "auto",
    root: str | Path | None = None,
    channels: Sequence[str] | None = None,
    channel_names: str | dict[str, str] | None = None,
) -> Dataset:
    """Open a dataset of any supported layout (``auto`` detects it).

    root: where relative LoadData ``PathName_`` columns start (must exist); channels: the
    channels to keep, in order (``--channels``); channel_names: new names for them
    (``--channel-names``, :func:`parse_channel_names`). Raises DatasetError for unusable input.
    """
    if layout == "auto":
        layout = detect_layout(path)
    if layout == "rxrx":
        ds = read_rxrx(path)
    elif layout == "loaddata":
        ds = read_loaddata(path, root=root)
    elif layout == "manifest":
        ds = read_manifest(path)
    else:
        raise DatasetError(f"unknown layout {layout!r}; expected one of auto, {', '.join(LAYOUTS)}")
    if channels is not None:
        ds = select_channels(ds, channels)
    if channel_names is not None:
        ds = rename_channels(ds, channel_names)
    return ds


def select_channels(ds: Dataset, channels: Sequence[str]) -> Dataset:
    """Keep only ``channels`` (in the given order) of every site (``--channels``).

    Raises DatasetError naming the unknown channels and the dataset's own.
    """
    unknown = [c for c in channels if c not in ds.channels]
    if unknown or not channels:
        raise DatasetError(
            f"--channels {','.join(channels)}: unknown channel(s) {unknown} of {ds.source}; "
            f"the channels are {', '.join(ds.channels)}"
        )
    idx = [ds.channels.index(c) for c in channels]
    sites = []
    for s in ds.sites:
        planes = tuple((s.planes or range(len(s.channels)))[i] for i in idx) if s.is_stack else None
        files = s.files if s.is_stack else tuple(s.files[i] for i in idx)
        sites.append(replace(s, files=files, channels=tuple(channels), planes=planes))
    return replace(ds, sites=sites, channels=tuple(channels))


def parse_channel_names(text: str, channels: Sequence[str]) -> dict[str, str]:
    """``--channel-names`` as ``{channel: new name}``: ``DNA,ER,RNA`` (in channel order) or ``w1=DNA,w3=RNA``.

    Raises DatasetError naming the option for a wrong count, an unknown channel, a repeated or
    empty name, or a name that is not a plain word (feature names are built from it).

    Examples
    --------
    >>> parse_channel_names("DNA,ER", ["w1", "w2"])
    {'w1': 'DNA', 'w2': 'ER'}
    >>> parse_channel_names("w2=Actin", ["w1", "w2"])
    {'w2': 'Actin'}
    """
    items = [t.strip() for t in str(text).split(",")]
    if all("=" in t for t in items):
        mapping = dict(tuple(x.strip() for x in t.split("=", 1)) for t in items)
        unknown = [c for c in mapping if c not in channels]
        if unknown:
            raise DatasetError(
                f"--channel-names {text}: {', '.join(unknown)} not among the channels ({', '.join(channels)})"
            )
    elif any("=" in t for t in items):
        raise DatasetError(f"--channel-names {text}: give either every name in order or OLD=NEW pairs, not both")
    elif len(items) != len(channels):
        raise DatasetError(
            f"--channel-names {text}: {len(items)} name(s) for {len(channels)} channel(s) ({', '.join(channels)}); "
            "give one name per channel in order, or OLD=NEW pairs"
        )
    else:
        mapping = dict(zip(channels, items))
    final = [mapping.get(c, c) for c in channels]
    bad = [n for n in final if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", n)]
    if bad or len(set(final)) != len(final):
        problem = f"names must be letters and digits, starting with a letter (not {bad})" if bad else "names repeat"
        raise DatasetError(f"--channel-names {text}: {problem}; the channels would be {', '.join(final)}")
    return {c: mapping[c] for c in channels if c in mapping}


def rename_channels(ds: Dataset, names: str | dict[str, str]) -> Dataset:
    """The dataset with its channels renamed (``--channel-names``; see :func:`parse_channel_names`).

    Feature names then carry the new names (``Image_Intensity_Mean_DNA``), and so do the
    ``Metadata_Path_<channel>`` columns.
    """
    mapping = parse_channel_names(names, ds.channels) if isinstance(names, str) else dict(names)
    new = tuple(mapping.get(c, c) for c in ds.channels)
    return replace(ds, sites=[replace(s, channels=new) for s in ds.sites], channels=new)
