"""Per-site aggregates of a per-object table: median, mean and standard deviation over objects."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

AGGREGATES: tuple[str, ...] = ("Median", "Mean", "Std")


def aggregate_objects(objects: dict[str, np.ndarray], statistics: Sequence[str] = AGGREGATES) -> dict[str, float]:
    """Site-level aggregates of a per-object table: ``<column>_<Median|Mean|Std>``.

    objects: as from :func:`measure_objects`; ``ObjectNumber`` and ``Location_*`` are
    skipped. NaN values (e.g. an empty cytoplasm) are ignored; a statistic over no value is
    NaN. Std is the population standard deviation (ddof=0). The names keep the compartment
    first, so pycytominer infers them as features.

    Examples
    --------
    >>> import numpy as np
    >>> aggregate_objects({"Nuclei_AreaShape_Area": np.array([1.0, 3.0, 8.0])})["Nuclei_AreaShape_Area_Median"]
    3.0
    """
    out: dict[str, float] = {}
    columns = [c for c in objects if c != "ObjectNumber" and not c.startswith("Location_")]
    if not columns:
        return out
    table = np.vstack([np.asarray(objects[c], dtype=np.float64) for c in columns])
    finite = np.isfinite(table)
    count = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {}
        if "Median" in statistics:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, as documented
                values["Median"] = (
                    np.nanmedian(np.where(finite, table, np.nan), axis=1)
                    if table.shape[1]
                    else np.full(len(columns), np.nan)
                )
        total = np.where(finite, table, 0).sum(axis=1)
        mean = np.where(count > 0, total / count, np.nan)
        if "Mean" in statistics:
            values["Mean"] = mean
        if "Std" in statistics:
            sq = np.where(finite, (table - mean[:, None]) ** 2, 0).sum(axis=1)
            values["Std"] = np.where(count > 0, np.sqrt(sq / np.maximum(count, 1)), np.nan)
    for i, column in enumerate(columns):
        for stat in statistics:
            out[f"{column}_{stat}"] = float(values[stat][i])
    return out
