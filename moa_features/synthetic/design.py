"""The screen's design: presets, plates, wells and the per-treatment answer key.

A plate holds part of the library (:func:`plate_groups`); each experiment is one replicate of the
whole library; a treatment's wells sit on one plate per experiment, so held-out treatments can be
tested on plates that no training treatment was on (the ``nsc-plate`` question).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from moa_features.synthetic._seeds import seeded_rng
from moa_features.synthetic.library import (
    CONTROL,
    EFFECT_THRESHOLD,
    HILL,
    N_DOSES,
    NO_PHENOTYPE,
    PHENOTYPES,
    TREATMENTS,
    Treatment,
    dose_effect,
    treatment_effects,
)

CELL_TYPE = "HUVEC"
TREATMENT_TRUTH_COLUMNS = (
    "treatment", "moa", "active", "strength", "ec50", "hill", "doses", "effect_at_doses",
    "n_active_doses", "n_wells", "phenotype", "effects",
)  # fmt: skip

# 1536-well plate: rows A..Z, AA..AF, columns 01..48. The outer ring is left empty, as in RxRx2.
PLATE_ROWS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("AA", "AB", "AC", "AD", "AE", "AF")
PLATE_COLUMNS = tuple(range(1, 49))
_ROWS = PLATE_ROWS[1:-1]
_COLS = PLATE_COLUMNS[1:-1]


@dataclass(frozen=True)
class ScreenSpec:
    """Design of a synthetic screen.

    n_experiments: experiments (``HUVEC-01``, ...); n_plates: plates per experiment;
    image_size: site width = height in pixels; sites_per_well: imaged sites per well;
    control_wells: ``EMPTY`` wells per plate; doses_per_plate: concentrations of each
    treatment on its plate (1..4, rotating across experiments); nucleus_radius: mean nuclear
    radius in pixels (sets the magnification); treatment_step: keep every k-th treatment of
    each MoA (1 = the whole library; test screens use 2); batch_strength, phenotype_strength:
    multipliers of the batch effects and the MoA phenotypes (0 switches them off);
    treatment_deviation: log-sd of a treatment's deviation from its MoA's direction.
    """

    n_experiments: int
    n_plates: int
    image_size: int
    sites_per_well: int
    control_wells: int
    doses_per_plate: int
    nucleus_radius: float
    treatment_step: int = 1
    batch_strength: float = 1.0
    phenotype_strength: float = 1.0
    treatment_deviation: float = 0.3


PRESETS: dict[str, ScreenSpec] = {
    "tiny": ScreenSpec(
        n_experiments=2, n_plates=2, image_size=128, sites_per_well=1, control_wells=3,
        doses_per_plate=2, nucleus_radius=5.0, treatment_step=2, phenotype_strength=1.6,
    ),
    "demo": ScreenSpec(
        n_experiments=2, n_plates=4, image_size=256, sites_per_well=1, control_wells=16,
        doses_per_plate=4, nucleus_radius=6.0, phenotype_strength=1.6,
    ),
    "full": ScreenSpec(
        n_experiments=2, n_plates=4, image_size=1024, sites_per_well=1, control_wells=16,
        doses_per_plate=4, nucleus_radius=14.0, phenotype_strength=1.6,
    ),
}  # fmt: skip


class WellPlan(NamedTuple):
    """One well of the screen: experiment (``HUVEC-01``), plate (1..), well (``B02``,
    ``AA17``), treatment name and concentration (ng/mL), and its index in the screen's
    experiments."""

    experiment_index: int
    experiment: str
    plate: int
    well: str
    treatment: str
    conc: float


def resolve_spec(preset: str = "demo", **overrides: Any) -> ScreenSpec:
    """The preset's ``ScreenSpec`` with ``overrides`` (field name -> value) applied, checked."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ScreenSpec)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown screen override(s) {unknown}; valid: {sorted(names)}")
    spec = dataclasses.replace(PRESETS[preset], **overrides)
    for name in ("n_experiments", "n_plates", "sites_per_well", "treatment_step"):
        if int(getattr(spec, name)) != getattr(spec, name) or getattr(spec, name) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(spec, name)!r}")
    if spec.control_wells < 1:
        raise ValueError(f"control_wells must be >= 1 (EMPTY wells on every plate), got {spec.control_wells}")
    if spec.doses_per_plate not in range(1, N_DOSES + 1):
        raise ValueError(f"doses_per_plate must be an integer 1..{N_DOSES}, got {spec.doses_per_plate!r}")
    for name in ("batch_strength", "phenotype_strength", "treatment_deviation"):
        if not getattr(spec, name) >= 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(spec, name)!r}")
    if spec.image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {spec.image_size}")
    if not 2.0 <= spec.nucleus_radius <= spec.image_size / 4:
        raise ValueError(f"nucleus_radius must be between 2 and image_size/4 pixels, got {spec.nucleus_radius}")
    n_wells = len(_ROWS) * len(_COLS)
    per_plate = spec.control_wells + max(Counter(plate_groups(spec).values()).values()) * spec.doses_per_plate
    if per_plate > n_wells:
        raise ValueError(f"{per_plate} wells per plate do not fit the {n_wells} inner wells")
    return spec


def library(spec: ScreenSpec) -> tuple[Treatment, ...]:
    """The treatments on the screen's plates: every ``treatment_step``-th of each MoA."""
    seen: dict[str, int] = {}
    chosen = []
    for t in TREATMENTS:
        k = seen.get(t.moa, 0)
        seen[t.moa] = k + 1
        if k % spec.treatment_step == 0:
            chosen.append(t)
    return tuple(chosen)


def plate_groups(spec: ScreenSpec) -> dict[str, int]:
    """Plate group (0-based plate index within an experiment) of each treatment of
    :func:`library`: round-robin over the active treatments MoA by MoA, then over the
    inactive ones, so groups get similar sizes and mixes of classes and of inactive ones."""
    moas = list(dict.fromkeys(t.moa for t in TREATMENTS))
    order = sorted(library(spec), key=lambda t: (t.strength == 0, moas.index(t.moa)))  # stable
    return {t.name: k % spec.n_plates for k, t in enumerate(order)}


def experiment_name(index: int) -> str:
    """Experiment label of the 0-based ``index``: ``HUVEC-01``, ``HUVEC-02``, ..."""
    return f"{CELL_TYPE}-{index + 1:02d}"


def well_name(row: int, column: int) -> str:
    """1536-well name of the 0-based ``row`` (A..AF) and 1-based ``column``: ``B02``, ``AA17``."""
    return f"{PLATE_ROWS[row]}{column:02d}"


def plate_layout(spec: ScreenSpec, seed: int, experiment_index: int, plate: int) -> list[WellPlan]:
    """Wells of one plate (1-based ``plate``), sorted by well name.

    The plate holds the treatments of plate group ``plate - 1`` (:func:`plate_groups`), each in
    ``doses_per_plate`` wells, one per concentration: in experiment ``e`` treatment ``i`` of
    the library gets dose indices ``(i + e + j * 4 // doses_per_plate) % 4``, so across
    experiments the concentrations rotate (with 2 doses per plate, each plate holds one of the
    two highest). Positions are shuffled per plate (no position/treatment confound).
    """
    group = plate_groups(spec)
    step = N_DOSES // spec.doses_per_plate
    content: list[tuple[str, float]] = [(CONTROL, 0.0)] * spec.control_wells
    for i, t in enumerate(library(spec)):
        if group[t.name] != plate - 1:
            continue
        for j in range(spec.doses_per_plate):
            content.append((t.name, t.doses[(i + experiment_index + j * step) % N_DOSES]))
    rng = seeded_rng(seed, 0, experiment_index, plate)
    wells = [well_name(PLATE_ROWS.index(r), c) for r in _ROWS for c in _COLS]
    chosen = rng.choice(len(wells), size=len(content), replace=False)
    exp = experiment_name(experiment_index)
    plans = [WellPlan(experiment_index, exp, plate, wells[k], tr, c) for k, (tr, c) in zip(chosen, content)]
    return sorted(plans, key=lambda w: w.well)


def screen_layout(spec: ScreenSpec, seed: int) -> list[WellPlan]:
    """Every well of the screen, in experiment, plate, well order."""
    return [
        w
        for e in range(spec.n_experiments)
        for p in range(1, spec.n_plates + 1)
        for w in plate_layout(spec, seed, e, p)
    ]


def treatment_truth(spec: ScreenSpec, seed: int) -> pd.DataFrame:
    """The answer key, one row per treatment of :func:`library` (``TREATMENT_TRUTH_COLUMNS``).

    ``active``: the treatment has a phenotype at some dose (effect >= ``EFFECT_THRESHOLD``);
    ``effect_at_doses``: expected effect per concentration (``;``-joined, like ``doses``);
    ``n_wells``: its wells on the screen; ``effects``: its parameter changes as JSON.
    """
    wells = pd.Series([w.treatment for w in screen_layout(spec, seed)]).value_counts()
    rows = []
    for t in library(spec):
        effect = [dose_effect(t.name, c, spec.phenotype_strength) for c in t.doses]
        n_active = sum(e >= EFFECT_THRESHOLD for e in effect)
        rows.append({
            "treatment": t.name, "moa": t.moa, "active": n_active > 0, "strength": t.strength,
            "ec50": round(t.ec50, 6), "hill": HILL, "doses": ";".join(f"{c:g}" for c in t.doses),
            "effect_at_doses": ";".join(f"{e:.3f}" for e in effect), "n_active_doses": n_active,
            "n_wells": int(wells.get(t.name, 0)),
            "phenotype": PHENOTYPES[t.moa] if n_active else NO_PHENOTYPE,
            "effects": json.dumps(
                {k: round(v, 4) for k, v in treatment_effects(t.name, seed, spec.treatment_deviation).items()}
            ),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(TREATMENT_TRUTH_COLUMNS))
