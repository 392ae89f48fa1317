"""A user's own label masks (Cellpose, CellProfiler, ...), read and checked before anything is measured.

A LoadData CSV or manifest names them with CellProfiler's columns ``ObjectsFileName_Nuclei`` /
``ObjectsPathName_Nuclei`` (and ``_Cells``); the reader turns them into
``Metadata_ObjectsPath_<Name>`` (:data:`~moa_features.datasets.OBJECT_MASKS`). Measurements are
only right when the masks are label images of this site's objects, so each site's masks must:

- be label images: a mask whose one value covers many separate regions (a binary 0/1 or 0/255
  mask, a thresholded image) is refused, naming the file; object numbers need not be consecutive
  (absent numbers are skipped: objects are renumbered 1..n in the order of their numbers, the
  same map for nuclei and cells);
- number each cell after its nucleus (cell ``i`` holds nucleus ``i``, as CellProfiler's
  RelateObjects gives them): a cell number without a nucleus, or a nucleus lying mostly outside
  the cell of its number (permuted numbers, a mask of another site, a shifted mask), is refused,
  naming the cell mask.

A refused site becomes an error row naming the mask file (:class:`MaskError`, a
:class:`~moa_features.datasets.SiteReadError`); the other sites are measured.
"""

from __future__ import annotations

import numpy as np

from moa_features import schema
from moa_features.datasets import OBJECT_MASKS, Site, SiteReadError, read_image

HELD_FRACTION = 0.5  # a nucleus lies in the cell of its number when at least this share of its pixels does
SPLIT_VALUES = 0.1  # a mask is refused when more than this share of its values each cover several regions


class MaskError(SiteReadError):
    """A site's mask file is not a usable label image for this site (``path`` names the file)."""


def _regions_per_value(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-zero values of ``labels`` and, for each, its number of separate regions (8-connected)."""
    from skimage.measure import label

    regions = label(labels, background=0, connectivity=2)
    values = np.unique(labels[labels > 0])
    if not values.size:
        return values, values
    first = np.zeros(int(regions.max()) + 1, dtype=labels.dtype)
    first[regions.ravel()] = labels.ravel()  # each region's value
    counts = np.bincount(np.searchsorted(values, first[1:]), minlength=values.size)
    return values, counts


def check_labels(labels: np.ndarray, path: str, site_id: str, name: str) -> np.ndarray:
    """``labels`` as int32 after checking that they are object labels; :class:`MaskError` naming ``path`` if not.

    Refused: a mask where more than :data:`SPLIT_VALUES` of its values each cover several
    separate regions (a binary or thresholded mask rather than one number per object).

    Examples
    --------
    >>> import numpy as np
    >>> binary = np.zeros((8, 8), np.uint8)
    >>> binary[1:3, 1:3] = binary[5:7, 5:7] = 255
    >>> check_labels(binary, "n.png", "s1", "Nuclei")
    Traceback (most recent call last):
    ...
    moa_features.masks.MaskError: n.png: the Nuclei mask of site s1 is not a label image: ...
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        what = f"{labels.dtype} {labels.shape}"
        raise MaskError(f"{path}: the {name} mask must be a 2-D integer label image, got {what}", site_id, path)
    values, regions = _regions_per_value(labels)
    split = regions > 1
    if values.size and split.sum() > SPLIT_VALUES * values.size:
        shown = ", ".join(f"value {int(v)}: {int(r)} regions" for v, r in zip(values[split][:3], regions[split][:3]))
        raise MaskError(
            f"{path}: the {name} mask of site {site_id} is not a label image: {int(split.sum())} of its "
            f"{values.size} value(s) each cover several separate regions ({shown}), as in a binary or thresholded "
            "mask; give every object its own number (e.g. skimage.measure.label), cell i holding nucleus i",
            site_id,
            path,
        )
    return labels.astype(np.int32, copy=False)


def renumber(nuclei: np.ndarray, cells: np.ndarray | None, cells_path: str, site_id: str):
    """Nuclei numbered 1..n in the order of their numbers, cells by the same map.

    Raises :class:`MaskError` naming ``cells_path`` for cell numbers that no nucleus has.

    Examples
    --------
    >>> import numpy as np
    >>> nuclei = np.array([[0, 4], [9, 9]])
    >>> renumber(nuclei, None, "", "s1")[0].tolist()
    [[0, 1], [2, 2]]
    """
    values = np.unique(nuclei[nuclei > 0])
    lookup = np.zeros(int(max(nuclei.max(initial=0), 0 if cells is None else cells.max(initial=0))) + 1, np.int32)
    lookup[values] = np.arange(1, values.size + 1, dtype=np.int32)
    if cells is None:
        return lookup[nuclei], None
    orphans = np.setdiff1d(np.unique(cells[cells > 0]), values)
    if orphans.size:
        raise MaskError(
            f"{cells_path}: {orphans.size} cell number(s) of site {site_id} have no nucleus of the same number "
            f"(e.g. {', '.join(map(str, orphans[:5].tolist()))}): cell i must hold nucleus i (number each cell after "
            "its nucleus, e.g. CellProfiler's RelateObjects)",
            site_id,
            cells_path,
        )
    return lookup[nuclei], lookup[cells]


def check_cells_hold_nuclei(nuclei: np.ndarray, cells: np.ndarray, cells_path: str, site_id: str) -> None:
    """Every nucleus must lie in the cell of its number; :class:`MaskError` naming ``cells_path`` otherwise.

    Nucleus ``i`` lies in cell ``i`` when at least :data:`HELD_FRACTION` of its pixels do; a
    nucleus whose cell number is absent from the cell mask (a cell not segmented) must not lie
    mostly inside other cells. Labels are consecutive (after :func:`renumber`).

    Examples
    --------
    >>> import numpy as np
    >>> nuclei = np.zeros((10, 10), np.int32)
    >>> nuclei[1:3, 1:3], nuclei[6:8, 6:8] = 1, 2
    >>> cells = np.zeros_like(nuclei)
    >>> cells[0:5, 0:5], cells[5:10, 5:10] = 2, 1  # numbers swapped
    >>> check_cells_hold_nuclei(nuclei, cells, "c.png", "s1")
    Traceback (most recent call last):
    ...
    moa_features.masks.MaskError: c.png: 2 of 2 nuclei of site s1 do not lie in the cell of their number ...
    """
    n = int(nuclei.max(initial=0))
    if n == 0:
        return
    inside = nuclei > 0
    size = np.bincount(nuclei[inside], minlength=n + 1)
    own = np.bincount(nuclei[inside & (cells == nuclei)], minlength=n + 1)
    other = np.bincount(nuclei[inside & (cells > 0) & (cells != nuclei)], minlength=n + 1)
    has_cell = np.bincount(cells.ravel(), minlength=n + 1)[: n + 1] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        wrong = np.where(has_cell, own < HELD_FRACTION * size, other > HELD_FRACTION * size)
    wrong[0] = False
    if not wrong.any():
        return
    i = int(np.flatnonzero(wrong)[0])
    share = 100 * own[i] / max(size[i], 1)
    raise MaskError(
        f"{cells_path}: {int(wrong.sum())} of {n} nuclei of site {site_id} do not lie in the cell of their number "
        f"(e.g. nucleus {i}: {share:.0f} % of it in cell {i}); cell i must hold nucleus i (number each cell after its "
        "nucleus, e.g. CellProfiler's RelateObjects), and both masks must be of this site, unshifted",
        site_id,
        cells_path,
    )


def read_user_masks(site: Site, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The site's own ``(nuclei, cells)`` labels, checked and renumbered; None when it names no masks.

    site: a :class:`~moa_features.datasets.Site` whose metadata may hold
    ``Metadata_ObjectsPath_Nuclei`` (and ``_Cells``); shape: the site's image size ``(H, W)``.
    Raises :class:`MaskError` (naming the file) for a mask that is missing, unreadable, of
    another size, not a label image, or whose cells do not hold their nuclei.
    """
    paths = {name: site.keys.get(f"{schema.METADATA_PREFIX}ObjectsPath_{name}") for name in OBJECT_MASKS}
    if not paths["Nuclei"]:
        return None
    labels: dict[str, np.ndarray] = {}
    for name, path in paths.items():
        if not path:
            continue
        try:
            mask = read_image(path, site.site_id, f"{name} mask")
        except SiteReadError as exc:
            raise MaskError(str(exc), site.site_id, path) from None
        if mask.shape != tuple(shape):
            raise MaskError(
                f"{path}: the {name} mask is {mask.shape[0]}x{mask.shape[1]}, the site's images {shape[0]}x{shape[1]}",
                site.site_id,
                path,
            )
        labels[name] = check_labels(mask, path, site.site_id, name)
    nuclei, cells = renumber(labels["Nuclei"], labels.get("Cells"), str(paths["Cells"]), site.site_id)
    if cells is not None:
        check_cells_hold_nuclei(nuclei, cells, str(paths["Cells"]), site.site_id)
    return nuclei, cells


__all__ = ["HELD_FRACTION", "MaskError", "check_cells_hold_nuclei", "check_labels", "read_user_masks", "renumber"]
