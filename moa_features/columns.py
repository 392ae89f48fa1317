"""What the columns of a user's table mean, and which rows are negative controls.

Every command that reads a table (``extract``, ``activity``, ``train``, ``predict``, ``report``,
``app``) takes the same metadata options with the same defaults (:func:`metadata_parent`):

==============  =====================  ===================================================
option          default                meaning
==============  =====================  ===================================================
``--control``   :data:`CONTROL_RULE`   a pandas query selecting the negative-control rows
                                       (as pycytominer's ``samples=``)
``--treatment`` ``Metadata_Treatment`` the treatment column (the unit held out by ``nsc``)
``--plate``     ``Metadata_Plate``     the plate column (normalisation, plate splits)
``--label``     ``Metadata_moa``       the class column (MoA, pathway, ...)
``--batch``     none                   the batch column (``--split nscb``)
==============  =====================  ===================================================

and ``--n-jobs`` (:func:`add_n_jobs_option`) means the CPU cores a command may use, everywhere.

A :class:`Columns` carries these choices from the command line to every stage; a run records
:meth:`Columns.as_config` in ``metrics.json`` so ``predict`` and ``report`` read the same rows
as controls.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame(
...     {"Metadata_Treatment": ["DMSO", "taxol", "vehicle"], "Metadata_pert_type": ["trt", "trt", "negcon"]}
... )
>>> control_mask(df).tolist()
[True, False, True]
>>> control_mask(df, 'Metadata_Treatment == "vehicle"').tolist()
[False, False, True]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from moa_features import schema

PERT_TYPE = "Metadata_pert_type"  # pycytominer / JUMP: "trt", "negcon", "poscon"
WELL_TYPE = "Metadata_well_type"  # RxRx: "treatment", "negative_control", ...
CONTROL_RULE = (
    f'{PERT_TYPE} == "negcon", {WELL_TYPE} == "negative_control", a treatment named '
    f"{' / '.join(schema.NEGATIVE_CONTROL_TREATMENTS)} (any case), or the label {schema.NEGATIVE_CONTROL_MOA!r}"
)
N_JOBS_HELP = "CPU cores to use (worker processes or threads; -1: all cores; default %(default)s)"


class ControlQueryError(ValueError):
    """A ``--control`` query that cannot be evaluated on the table, or gives no boolean per row."""


def _default_controls(df: pd.DataFrame, treatment: str | None, label: str | None) -> np.ndarray:
    """:data:`CONTROL_RULE` on the columns ``df`` has (a missing column selects nothing)."""
    mask = np.zeros(len(df), dtype=bool)
    if PERT_TYPE in df.columns:
        mask |= (df[PERT_TYPE].astype(str).str.lower() == "negcon").to_numpy()
    if WELL_TYPE in df.columns:
        mask |= (df[WELL_TYPE].astype(str).str.lower() == "negative_control").to_numpy()
    names = {t.upper() for t in schema.NEGATIVE_CONTROL_TREATMENTS}
    for col in dict.fromkeys(c for c in (treatment, schema.TREATMENT) if c):
        if col in df.columns:
            mask |= df[col].astype(str).str.upper().isin(names).to_numpy()
    for col in dict.fromkeys(c for c in (label, schema.MOA) if c):
        if col in df.columns:
            mask |= (df[col].astype(str) == schema.NEGATIVE_CONTROL_MOA).to_numpy()
    return mask


def control_mask(
    df: pd.DataFrame,
    query: str | None = None,
    *,
    treatment: str | None = schema.TREATMENT,
    label: str | None = schema.MOA,
) -> np.ndarray:
    """Boolean mask (n,) of the negative-control rows of ``df``.

    Parameters
    ----------
    df : DataFrame
        Any table with ``Metadata_`` columns (sites, wells, per-site metadata).
    query : str or None
        A pandas query (``DataFrame.eval``, python engine) that is true on control rows, e.g.
        ``'Metadata_Compound == "vehicle"'``; ``None`` applies :data:`CONTROL_RULE`.
    treatment, label : str or None
        The treatment and label columns the default rule reads (besides the standard names).

    Returns
    -------
    ndarray of bool, shape (n,)
        Missing values of the query count as not control.

    Raises
    ------
    ControlQueryError
        The query names a column the table lacks, is not valid, or is not one boolean per row.
    """
    if query is None or not str(query).strip():
        return _default_controls(df, treatment, label)
    try:
        result = df.eval(query, engine="python")
    except Exception as exc:  # pandas raises UndefinedVariableError, SyntaxError, TypeError...
        raise ControlQueryError(
            f"--control {query!r} cannot be evaluated on the table ({type(exc).__name__}: {exc}); "
            f"its metadata columns are {schema.metadata_columns(df.columns)}"
        ) from None
    if np.isscalar(result) or getattr(result, "shape", None) != (len(df),):
        raise ControlQueryError(
            f"--control {query!r} must give one true/false value per row, got {type(result).__name__}"
        )
    values = pd.Series(result, index=df.index)
    if not (pd.api.types.is_bool_dtype(values) or values.isna().all()):
        try:
            values = values.astype("boolean")
        except (TypeError, ValueError):
            raise ControlQueryError(
                f"--control {query!r} must be a condition (true/false per row), got values such as "
                f"{values.dropna().unique()[:3].tolist()}"
            ) from None
    return values.fillna(False).to_numpy(dtype=bool)


@dataclass(frozen=True)
class Columns:
    """The metadata columns a command reads and the rows it treats as negative controls.

    Parameters
    ----------
    plate, treatment, label : str
        Plate, treatment and class columns (CellProfiler/pycytominer names by default).
    batch : str or None
        Batch column (``--split nscb``); ``None``: no batch.
    experiment : str
        Experiment column (``--split experiment``).
    control : str or None
        Pandas query selecting negative-control rows; ``None``: :data:`CONTROL_RULE`.
    """

    plate: str = schema.PLATE
    treatment: str = schema.TREATMENT
    label: str = schema.MOA
    batch: str | None = None
    experiment: str = schema.EXPERIMENT
    control: str | None = None

    def controls(self, df: pd.DataFrame) -> np.ndarray:
        """(n,) bool: the negative-control rows of ``df`` (:func:`control_mask`)."""
        return control_mask(df, self.control, treatment=self.treatment, label=self.label)

    def describe_control(self) -> str:
        """The control definition in words, for logs and reports."""
        return CONTROL_RULE if self.control is None else f"rows where {self.control}"

    def with_(self, **changes: Any) -> Columns:
        """A copy with some columns changed."""
        return replace(self, **changes)

    def as_config(self) -> dict[str, str | None]:
        """The columns as recorded in a run's ``metrics.json`` ``config.columns``."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Columns:
        """The columns a run recorded (``config.columns``; older runs: ``group``/``treatment``/``label``)."""
        recorded = config.get("columns")
        if isinstance(recorded, dict):
            return cls(**{k: v for k, v in recorded.items() if k in cls.__dataclass_fields__})
        old = {"plate": config.get("group"), "treatment": config.get("treatment"), "label": config.get("label")}
        return cls(**{k: v for k, v in old.items() if isinstance(v, str)})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Columns:
        """The columns of parsed :func:`metadata_parent` options (absent options keep their defaults)."""
        given = {k: getattr(args, k) for k in cls.__dataclass_fields__ if getattr(args, k, None) is not None}
        return cls(**given)


def metadata_parent(
    which: Sequence[str] = ("control", "treatment", "plate", "label", "batch"),
) -> argparse.ArgumentParser:
    """An argparse parent parser with the shared metadata options ``which`` (module docstring).

    Use as ``argparse.ArgumentParser(parents=[metadata_parent()])``; read the values back with
    :meth:`Columns.from_args`.
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("metadata columns (the same options and defaults on every command)")
    helps = {
        "control": ("QUERY", f"pandas query selecting the negative-control rows (default: {CONTROL_RULE})"),
        "treatment": ("COLUMN", f"treatment column (default {schema.TREATMENT})"),
        "plate": ("COLUMN", f"plate column (default {schema.PLATE})"),
        "label": ("COLUMN", f"class column: the MoA or another annotation level (default {schema.MOA})"),
        "batch": ("COLUMN", "batch column, for --split nscb and batch-aware activity (default: none)"),
    }
    unknown = sorted(set(which) - set(helps))
    if unknown:
        raise ValueError(f"unknown metadata option(s) {unknown}; choose from {sorted(helps)}")
    for name in which:
        metavar, text = helps[name]
        group.add_argument(f"--{name}", metavar=metavar, default=None, help=text)
    return parent


def add_n_jobs_option(parser: argparse.ArgumentParser, default: int = 1) -> None:
    """``--n-jobs``: the CPU cores the command may use (the same meaning on every command)."""
    parser.add_argument("--n-jobs", type=int, default=default, metavar="N", help=N_JOBS_HELP)


def resolve_n_jobs(n_jobs: int) -> int:
    """``-1`` (or any value < 1 from joblib's convention: -2 = all but one) -> a positive core count."""
    cores = os.cpu_count() or 1
    if n_jobs == 0:
        raise ValueError("--n-jobs must not be 0: give a number of cores, or -1 for all")
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
