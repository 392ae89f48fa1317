"""Built-in demo screen: a mini RxRx2 of realistic synthetic six-channel cell images.

``make_screen(root, preset="demo", seed=0)`` writes a small soluble-factor screen of
HUVEC-like endothelial cells, laid out like Recursion's RxRx2 release (1536-well plates, rows
A..AF, ``EMPTY`` negative-control wells on every plate), so every downstream stage (reader,
extraction, annotation, activity, training, report) runs on it unchanged::

    root/metadata.csv        site_id, well_id, cell_type, dataset, experiment, plate, well,
                             site, well_type, treatment, treatment_conc (ng/mL; 0 for EMPTY)
    root/images/{experiment}/Plate{plate}/{well}_s{site}_w{c}.png   8-bit grayscale, c=1..6
    root/screen.json         preset, seed, overrides, the resolved spec, the treatment table
    root/ground_truth.csv    per site: site_id, treatment, treatment_conc, moa, active,
                             phenotype, effect (realised phenotype strength), n_cells
    root/ground_truth_treatments.csv   per treatment (the answer key of the benchmarks):
                             treatment, moa, active, strength, ec50, hill, doses,
                             effect_at_doses, n_active_doses, n_wells, phenotype, effects

``metadata.csv`` carries no MoA: the annotation step maps treatment names to MoAs. The ground
truth files are for tests and benchmarks only.

The library (``TREATMENTS``): 40 soluble factors with real RxRx2-style names that resolve
through ``moa-features annotate``, in 8 of RxRx2's MoA classes with unequal sizes (Growth
factor 8, Interleukin 7, GPCR agonist 6, four classes of 4, Wnt antagonist 3), each at 4
concentrations (4-fold dilutions). 10 of the 40 (25 %) have no phenotype at any dose (their
receptor is absent or silent in HUVEC, e.g. FGF-7 needs the epithelial FGFR2b, IFN-lambda
needs IFNLR1, IL-2 needs IL-2R); every class keeps at least 3 active treatments.

Dose response: effect = ``phenotype_strength`` x strength x Hill(conc; EC50, n=2) x a per-well
log-normal factor (sd 0.15). The top dose is ``potency`` x EC50 (16 for most treatments, 12
for the less potent): at potency 16 the doses sit at 16, 4, 1 and 0.25 x EC50 (Hill factor
0.996, 0.94, 0.5 and 0.06), so the lowest dose falls below ``EFFECT_THRESHOLD`` (no visible
phenotype) for every treatment and the second lowest gives a moderate one. The presets use
``phenotype_strength=1.6``: the changes listed below are at effect 1, a top dose of a
strength-1 treatment gives 1.6 times them.

Phenotypes: each MoA has a direction in the cell model (``MOA_EFFECTS``); each active
treatment follows it with its own deviation (``treatment_effects``): every direction
component scaled by a log-normal factor (sd ``treatment_deviation``) plus two off-direction
side effects, so treatments of one MoA are similar, not identical:

- Growth factor: proliferation, up to +30 % cell density, +25 % nuclear area, more G2 and
  mitotic cells;
- Interleukin: secretory activation, up to +35 % ER (w2) intensity, Golgi (w6) 50 % larger
  and 30 % brighter;
- TNF ligand: elongated cells (aspect ratio x1.6), 50 % more stress fibres (w3), apoptotic
  nuclei, -10 % density;
- GPCR agonist: actin remodelling, cortical actin x1.8, stress fibres x0.55, rounder cells;
- Wnt agonist: mitochondrial mass (w5) +40 %, more tubular (less punctate);
- Wnt antagonist: nucleoli (w4) 40 % larger and 30 % brighter, -25 % cytoplasmic RNA;
- Interferon: antiproliferative antiviral state, +60 % cytoplasmic RNA (w4), fewer cells,
  smaller nuclei, fewer G2 cells;
- Tyrosine kinase receptor agonist: junction stabilisation, fragmented mitochondria (w5 -35 %,
  less tubular), elongated cells, compact Golgi (w6);
- Negative control (EMPTY): none.

Layout: as in RxRx2, a plate holds part of the library. The library is split into
``n_plates`` plate groups (``plate_groups``: round-robin within each MoA, inactive ones
last, so every group holds a similar mix of classes and of inactive treatments); plate ``p`` of every experiment
holds group ``p`` (each experiment is one replicate of the whole library), each treatment
at ``doses_per_plate`` of its concentrations (rotating across experiments), plus
``control_wells`` EMPTY wells, at random inner positions (rows B..AE, columns 02..47) of a
1536-well plate. A treatment's wells therefore sit on one plate per experiment, so held-out
treatments can be tested on plates that no training treatment was on: holding out a plate
group holds out both (the ``nsc-plate`` question).

Image model (lengths scale with ``nucleus_radius``, the mean nuclear radius in pixels):

- cells are seeded by random sequential addition (minimum spacing), their territories are
  a multiplicatively weighted Voronoi tessellation of elliptical, irregular (angular Fourier
  wobble), locally co-aligned cell shapes; most cells touch, sparse areas leave gaps;
  cells are interphase (G1/G2, G2 nuclei larger and twice as bright), mitotic (round cell,
  condensed elongated chromatin) or apoptotic (small, very bright nucleus);
- w1 Hoechst: domed nuclei with chromatin texture (two noise scales);
- w2 concanavalin A: perinuclear-weighted reticular ER (ridges of a band-pass random field),
  bright nuclear envelope, dark nucleus;
- w3 phalloidin: stress fibres (anti-aliased streaks along each cell's axis), cortical actin
  on cell borders, faint diffuse cytoplasm;
- w4 SYTO14: 1-4 nucleoli per nucleus, nucleoplasm, faint perinuclear cytoplasmic RNA;
- w5 MitoTracker: tubular network and puncta in the cytoplasm, densest near the nucleus;
- w6 WGA: Golgi ribbon (cluster of puncta at the nucleus on the leading side), plasma
  membrane outline, faint nuclei;
- acquisition: Gaussian PSF (per-site focus), smooth off-centre vignetting, background
  offset, per-channel gain, Poisson shot noise, 8-bit quantisation.

Batch effects (``batch_strength`` scales them): every experiment and plate draws its own
per-channel gain (log-sd 0.25 experiment, 0.2 plate), background offset, vignetting
strength and centre, and a biological drift in cell density and nuclear size; every well
draws a small gain jitter. Raw per-image intensities therefore drift more between plates
than between most MoAs; per-plate normalisation against the EMPTY wells removes it.

Every random draw comes from ``numpy.random.default_rng`` seeded by ``seed`` and the
identity of the experiment/plate/well/site (or treatment) it belongs to, so the files are
bit-identical for the same seed whatever ``n_jobs`` is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image
from scipy import ndimage as ndi
from skimage.draw import line_aa

from moa_features import schema
from moa_features.io import atomic_path, write_json, write_table

CELL_TYPE = "HUVEC"
N_CHANNELS = 6
CONTROL = "EMPTY"
METADATA_COLUMNS = (
    "site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
    "well_type", "treatment", "treatment_conc",
)  # fmt: skip
GROUND_TRUTH_COLUMNS = (
    "site_id", "treatment", "treatment_conc", "moa", "active", "phenotype", "effect", "n_cells",
)  # fmt: skip
TREATMENT_TRUTH_COLUMNS = (
    "treatment", "moa", "active", "strength", "ec50", "hill", "doses", "effect_at_doses",
    "n_active_doses", "n_wells", "phenotype", "effects",
)  # fmt: skip
GENERATOR_VERSION = 2  # bump when the same preset and seed give other images: cached screens are rebuilt
HILL = 2.0  # Hill coefficient of every dose response
EFFECT_THRESHOLD = 0.15  # phenotype strength below which a well is indistinguishable from controls
N_DOSES = 4
DILUTION = 4.0  # fold dilution between consecutive concentrations


class Treatment(NamedTuple):
    """One soluble factor of the library: name (as RxRx2 spells it), MoA class, response
    strength (0-1, scales its MoA's phenotype; 0 = no phenotype in HUVEC), top
    concentration (ng/mL) and potency (top concentration / EC50)."""

    name: str
    moa: str
    strength: float
    top: float
    potency: float = 16.0

    @property
    def ec50(self) -> float:
        """Half-effect concentration (ng/mL)."""
        return self.top / self.potency

    @property
    def doses(self) -> tuple[float, ...]:
        """The ``N_DOSES`` concentrations (ng/mL), ascending, ``DILUTION``-fold apart."""
        return tuple(round(self.top / DILUTION**k, 6) for k in range(N_DOSES - 1, -1, -1))


_GF, _IL, _GPCR, _TNF = "Growth factor", "Interleukin", "GPCR agonist", "TNF ligand"
_IFN, _WA, _WI = "Interferon", "Wnt agonist", "Wnt antagonist"
_TKR = "Tyrosine kinase receptor agonist"
# Within each MoA the order interleaves inactive treatments, so every-k-th subsets keep some.
TREATMENTS: tuple[Treatment, ...] = (
    Treatment("EGF", _GF, 1.0, 50.0),
    Treatment("FGF-2", _GF, 0.9, 100.0),
    Treatment("VEGF-A", _GF, 0.85, 100.0, 12.0),
    Treatment("FGF-7", _GF, 0.0, 100.0),  # KGF: FGFR2b is epithelial
    Treatment("HGF", _GF, 0.8, 200.0),
    Treatment("Betacellulin", _GF, 0.0, 100.0),
    Treatment("PDGF-BB", _GF, 0.8, 100.0),
    Treatment("Amphiregulin", _GF, 0.75, 200.0),
    Treatment("IL-1B", _IL, 1.0, 10.0),
    Treatment("IL-6", _IL, 0.8, 200.0, 12.0),
    Treatment("IL-17A", _IL, 0.85, 200.0),
    Treatment("IL-2", _IL, 0.0, 100.0),  # no IL-2 receptor on HUVEC
    Treatment("IL-33", _IL, 0.8, 100.0),
    Treatment("IL-10", _IL, 0.0, 100.0),
    Treatment("IL-4", _IL, 0.8, 100.0),
    Treatment("CXCL12", _GPCR, 0.9, 300.0),
    Treatment("CXCL8", _GPCR, 0.85, 200.0),
    Treatment("CCL2", _GPCR, 0.0, 200.0),
    Treatment("Endothelin-1", _GPCR, 0.85, 100.0),
    Treatment("CCL5", _GPCR, 0.0, 200.0),
    Treatment("Apelin", _GPCR, 0.8, 1000.0),
    Treatment("TNF-alpha", _TNF, 1.0, 20.0),
    Treatment("TRAIL", _TNF, 0.8, 500.0),
    Treatment("LIGHT", _TNF, 0.0, 200.0),
    Treatment("TWEAK", _TNF, 0.85, 500.0),
    Treatment("IFN-beta", _IFN, 0.9, 100.0),
    Treatment("IFN-gamma", _IFN, 1.0, 100.0),
    Treatment("IFN-lambda1", _IFN, 0.0, 200.0),  # IFNLR1 is epithelial
    Treatment("IFN-alpha2", _IFN, 0.75, 100.0, 12.0),
    Treatment("Wnt-3a", _WA, 1.0, 500.0),
    Treatment("R-spondin-1", _WA, 0.8, 500.0),
    Treatment("Norrin", _WA, 0.0, 500.0),
    Treatment("Wnt-1", _WA, 0.75, 500.0),
    Treatment("DKK-1", _WI, 0.9, 500.0),
    Treatment("sFRP-1", _WI, 0.8, 1000.0, 12.0),
    Treatment("WIF-1", _WI, 0.75, 1000.0),
    Treatment("Ephrin-A1", _TKR, 0.9, 1000.0),
    Treatment("Angiopoietin-1", _TKR, 0.85, 500.0),
    Treatment("GAS6", _TKR, 0.0, 1000.0),
    Treatment("Ephrin-B2", _TKR, 0.75, 1000.0),
)
TREATMENT_MOA: dict[str, str] = {t.name: t.moa for t in TREATMENTS} | {CONTROL: schema.NEGATIVE_CONTROL_MOA}
_TREATMENT_INDEX = {t.name: i for i, t in enumerate(TREATMENTS)}

PHENOTYPES: dict[str, str] = {
    _GF: "proliferation: more cells, larger nuclei, more G2 and mitotic cells",
    _IL: "secretory activation: brighter ER (w2), larger brighter Golgi (w6)",
    _TNF: "elongated cells, more stress fibres (w3), apoptotic nuclei, fewer cells",
    _GPCR: "actin remodelling: brighter cortical actin, fewer stress fibres, rounder",
    _WA: "more mitochondria (w5), more tubular and less punctate",
    _WI: "larger, brighter nucleoli (w4), less cytoplasmic RNA",
    _IFN: "antiviral state: more cytoplasmic RNA (w4), fewer cells, smaller nuclei",
    _TKR: "junction stabilisation: fragmented mitochondria (w5), elongated cells, compact Golgi (w6)",
    schema.NEGATIVE_CONTROL_MOA: "none (untreated)",
}
NO_PHENOTYPE = "none in HUVEC at any dose (inactive)"

# Cell-model parameters with no treatment; multiplicative unless listed in _ADDITIVE.
BASELINE: dict[str, float] = {
    "density": 1.0, "nucleus_area": 1.0, "aspect": 1.0, "g2_fraction": 0.25,
    "mitotic": 0.03, "apoptotic": 0.01, "fibres": 1.0, "cortical": 1.0, "er": 1.0,
    "golgi_size": 1.0, "golgi": 1.0, "mito": 1.0, "tubular": 0.35, "nucleolus_size": 1.0,
    "nucleolus": 1.0, "rna": 1.0,
}  # fmt: skip
_ADDITIVE = frozenset({"g2_fraction", "mitotic", "apoptotic", "tubular"})
# Typical size of an off-direction side effect per parameter (before treatment_deviation).
_SIDE_UNIT = {name: 0.3 for name in BASELINE} | {
    "g2_fraction": 0.1, "mitotic": 0.02, "apoptotic": 0.02, "tubular": 0.3,
}  # fmt: skip
N_SIDE_EFFECTS = 2
# Change of each parameter at full effect (1.0): relative for multiplicative parameters.
MOA_EFFECTS: dict[str, dict[str, float]] = {
    _GF: {"density": 0.30, "nucleus_area": 0.25, "g2_fraction": 0.15, "mitotic": 0.05},
    _IL: {"er": 0.35, "golgi_size": 0.5, "golgi": 0.3},
    _TNF: {"aspect": 0.6, "fibres": 0.5, "apoptotic": 0.08, "density": -0.10},
    _GPCR: {"cortical": 0.8, "fibres": -0.45, "aspect": -0.25},
    _WA: {"mito": 0.4, "tubular": 0.4},
    _WI: {"nucleolus_size": 0.4, "nucleolus": 0.3, "rna": -0.25},
    _IFN: {"rna": 0.6, "density": -0.15, "nucleus_area": -0.12, "g2_fraction": -0.1},
    _TKR: {"mito": -0.35, "tubular": -0.3, "aspect": 0.25, "golgi_size": -0.3},
    schema.NEGATIVE_CONTROL_MOA: {},
}

# Per-channel signal scale (DN at unit gain), background offset (DN) and photons per DN.
_SCALE = np.array([36.0, 38.0, 16.0, 20.0, 7.0, 18.0], dtype=np.float32)
_BACKGROUND = np.array([1.5, 7.0, 5.0, 4.0, 1.2, 6.0], dtype=np.float32)
_PHOTONS_PER_DN = np.array([4.0, 2.0, 2.0, 2.0, 3.0, 2.0], dtype=np.float32)
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


@dataclass(frozen=True)
class BatchParams:
    """Acquisition and biology of one plate: per-channel ``gain`` and ``offset`` (DN),
    ``vignette`` (relative fall-off at the corners), ``centre`` of the illumination
    (fraction of the image, (row, col)), cell ``density`` and ``nucleus_scale`` factors."""

    gain: np.ndarray
    offset: np.ndarray
    vignette: np.ndarray
    centre: tuple[float, float]
    density: float
    nucleus_scale: float


# ----------------------------------------------------------------------------- design


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
    rng = _rng(seed, 0, experiment_index, plate)
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


def batch_params(spec: ScreenSpec, seed: int, experiment_index: int, plate: int) -> BatchParams:
    """Batch effects of one plate: the experiment's draws combined with the plate's."""
    b = spec.batch_strength
    re = _rng(seed, 1, experiment_index)
    rp = _rng(seed, 2, experiment_index, plate)
    gain = np.exp(re.normal(0, 0.25 * b, N_CHANNELS) + rp.normal(0, 0.2 * b, N_CHANNELS))
    offset = _BACKGROUND * np.exp(re.normal(0, 0.3 * b, N_CHANNELS) + rp.normal(0, 0.15 * b, N_CHANNELS))
    vig_exp = re.uniform(0.15, 0.45) * b
    vignette = np.clip(vig_exp * rp.uniform(0.8, 1.25) * np.exp(rp.normal(0, 0.15, N_CHANNELS)), 0, 0.8)
    centre = tuple(0.5 + rp.normal(0, 0.12 * b, 2))
    density = float(np.exp(re.normal(0, 0.08 * b) + rp.normal(0, 0.05 * b)))
    nucleus_scale = float(np.exp(re.normal(0, 0.04 * b) + rp.normal(0, 0.02 * b)))
    return BatchParams(
        gain.astype(np.float32), offset.astype(np.float32), vignette.astype(np.float32),
        (float(centre[0]), float(centre[1])), density, nucleus_scale,
    )  # fmt: skip


def _treatment(name: str) -> Treatment:
    if name not in _TREATMENT_INDEX:
        raise ValueError(f"unknown treatment {name!r}; expected one of {sorted(TREATMENT_MOA)}")
    return TREATMENTS[_TREATMENT_INDEX[name]]


def dose_effect(treatment: str, conc: float, phenotype_strength: float = 1.0) -> float:
    """Phenotype strength of ``treatment`` at ``conc`` ng/mL, in [0, 1]:
    ``phenotype_strength`` x the treatment's strength x conc^n / (conc^n + EC50^n), n = ``HILL``."""
    if treatment == CONTROL:
        return 0.0
    t = _treatment(treatment)
    return phenotype_strength * t.strength * conc**HILL / (conc**HILL + t.ec50**HILL)


def treatment_effects(treatment: str, seed: int, deviation: float = 0.3) -> dict[str, float]:
    """Change of each cell-model parameter at full effect for ``treatment``: its MoA's
    direction (``MOA_EFFECTS``) with every component scaled by ``exp(N(0, deviation))``,
    plus ``N_SIDE_EFFECTS`` off-direction parameters of size ``N(0, deviation) x`` their
    typical unit. Empty for the control and for inactive treatments."""
    if treatment == CONTROL:
        return {}
    t = _treatment(treatment)
    if t.strength == 0:
        return {}
    rng = _rng(seed, 5, _TREATMENT_INDEX[treatment])
    direction = MOA_EFFECTS[t.moa]
    effects = {k: v * float(np.exp(rng.normal(0, deviation))) for k, v in direction.items()}
    others = sorted(set(BASELINE) - set(direction))
    for name in rng.choice(others, size=N_SIDE_EFFECTS, replace=False).tolist():
        effects[name] = float(rng.normal(0, deviation)) * _SIDE_UNIT[name]
    return effects


def modifiers(effects: Mapping[str, float], effect: float) -> dict[str, float]:
    """Cell-model parameters (``BASELINE`` keys) for parameter changes ``effects`` (at full
    effect) at phenotype strength ``effect`` (multiplicative parameters never drop below 5 %
    of their baseline; additive ones never below 0)."""
    mods = dict(BASELINE)
    for name, delta in effects.items():
        if name in _ADDITIVE:
            mods[name] = max(0.0, mods[name] + delta * effect)
        else:
            mods[name] = mods[name] * max(0.05, 1.0 + delta * effect)
    return mods


def phenotype_modifiers(moa: str, effect: float) -> dict[str, float]:
    """Cell-model parameters of MoA ``moa``'s direction (no treatment deviation) at ``effect``."""
    if moa not in MOA_EFFECTS:
        raise ValueError(f"unknown MoA {moa!r}; expected one of {sorted(MOA_EFFECTS)}")
    return modifiers(MOA_EFFECTS[moa], effect)


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


# ------------------------------------------------------------------------- rendering


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma`` pixels."""
    f = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return f / f.std()


def _ridge(field: np.ndarray, width: float) -> np.ndarray:
    """Network of thin lines along the zero crossings of ``field`` (0-1)."""
    return np.exp(-((field / width) ** 2))


def _splat(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, amp: np.ndarray, sigma: float) -> np.ndarray:
    """Sum of Gaussian spots of peak ``amp`` and width ``sigma`` px at (rows, cols)."""
    img = np.zeros(shape, np.float32)
    r = np.rint(rows).astype(int)
    c = np.rint(cols).astype(int)
    ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    np.add.at(img, (r[ok], c[ok]), amp[ok].astype(np.float32))
    return ndi.gaussian_filter(img, sigma) * np.float32(2 * np.pi * sigma**2)


def place_nuclei(rng: np.random.Generator, size: int, spacing: float, margin: float) -> np.ndarray:
    """Nucleus centres (N, 2) (row, col) px by random sequential addition: about one per
    ``spacing``² px² over the image grown by ``margin`` px, no two closer than 0.7 spacing."""
    lo, hi = -margin, size + margin
    n_target = rng.poisson((hi - lo) ** 2 / spacing**2)
    cand = rng.uniform(lo, hi, (4 * n_target + 1, 2))
    min_d2 = (0.7 * spacing) ** 2
    pts = np.empty((n_target, 2))
    k = 0
    for c in cand:
        if k == n_target:
            break
        if k and ((pts[:k] - c) ** 2).sum(1).min() < min_d2:
            continue
        pts[k] = c
        k += 1
    return pts[:k]


@dataclass
class Cells:
    """Per-cell geometry and state, arrays of length N (``state``: 0 interphase, 1 mitotic,
    2 apoptotic; angles in radians; lengths in px)."""

    nucleus: np.ndarray  # (N, 2) nucleus centre
    centre: np.ndarray  # (N, 2) cell centre
    theta: np.ndarray  # cell (and nucleus) long-axis angle
    polarity: np.ndarray  # angle of the leading side (Golgi side)
    cell_axes: np.ndarray  # (N, 2) semi-axes of the cell shape
    nucleus_axes: np.ndarray  # (N, 2) semi-axes of the nucleus
    wobble: np.ndarray  # (N, 4, 2) amplitude and phase of angular harmonics 2..5
    state: np.ndarray
    dna: np.ndarray  # DNA content (G1 = 1)


def draw_cells(rng: np.random.Generator, size: int, r_n: float, mods: Mapping[str, float], batch: BatchParams) -> Cells:
    """Random cells of one site: positions, shapes, orientations, cell-cycle states."""
    spacing = 5.2 * r_n / math.sqrt(mods["density"] * batch.density)
    pts = place_nuclei(rng, size, spacing, margin=spacing)
    n = len(pts)
    # Locally co-aligned cells: a smooth random orientation field plus per-cell scatter.
    k = rng.normal(0, 1, (3, 2))
    k *= (2 * np.pi / (rng.uniform(0.6, 1.5, 3) * 40 * r_n) / np.linalg.norm(k, axis=1))[:, None]
    field = (rng.normal(0, 0.8, 3) * np.sin(pts @ k.T + rng.uniform(0, 2 * np.pi, 3))).sum(1)
    theta = field + rng.uniform(0, np.pi) + rng.normal(0, 0.3, n)
    p_mit, p_apo = min(mods["mitotic"], 0.45), min(mods["apoptotic"], 0.45)
    state = rng.choice(3, size=n, p=[1 - p_mit - p_apo, p_mit, p_apo])
    g2 = (rng.random(n) < mods["g2_fraction"]) & (state == 0)
    dna = (1.0 + g2) * rng.lognormal(0, 0.08, n)
    area = mods["nucleus_area"] * (1 + 0.4 * g2) * rng.lognormal(0, 0.2, n) * batch.nucleus_scale**2
    nuc_aspect = 1.15 + rng.gamma(2.0, 0.12, n)
    aspect = np.maximum(1.0, (1.0 + rng.gamma(2.0, 0.22, n)) * mods["aspect"])
    scale = 0.68 * spacing * rng.lognormal(0, 0.12, n)
    radius = r_n * np.sqrt(area)
    # Mitotic: round cell, condensed elongated chromatin; apoptotic: small bright nucleus.
    mit, apo = state == 1, state == 2
    scale[mit] *= 0.55
    scale[apo] *= 0.45
    aspect[mit | apo] = 1.05
    radius[mit] *= 0.7
    nuc_aspect[mit] = 2.2
    radius[apo] *= 0.45
    nuc_aspect[apo] = 1.1
    dna[apo] *= 0.8
    polarity = theta + np.pi * rng.integers(0, 2, n) + rng.normal(0, 0.4, n)
    shift = 0.3 * scale * np.where(state == 0, 1.0, 0.0)
    centre = pts + shift[:, None] * np.stack([np.sin(polarity), np.cos(polarity)], 1)
    amp = rng.normal(0, 0.07, (n, 4)) / np.sqrt(np.arange(1, 5))
    amp[mit | apo] *= 0.3
    wobble = np.stack([amp, rng.uniform(0, 2 * np.pi, (n, 4))], -1)
    return Cells(
        nucleus=pts, centre=centre, theta=theta, polarity=polarity,
        cell_axes=np.stack([scale * np.sqrt(aspect), scale / np.sqrt(aspect)], 1),
        nucleus_axes=np.stack([radius * np.sqrt(nuc_aspect), radius / np.sqrt(nuc_aspect)], 1),
        wobble=wobble, state=state, dna=dna,
    )  # fmt: skip


def tessellate(cells: Cells, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label image (0 background, i+1 cell i) and, per pixel, the normalised distances to
    the owning cell's centre (``dc``, 1 on its free edge) and nucleus (``dn``, 1 on the
    nuclear edge). Nuclei win over cytoplasm; elsewhere the smaller ``dc`` wins."""
    key = np.full((size, size), np.inf, np.float32)
    label = np.zeros((size, size), np.int32)
    dc = np.full((size, size), 2.0, np.float32)
    dn = np.full((size, size), 9.0, np.float32)
    grid = np.arange(size, dtype=np.float32)
    for i in range(len(cells.theta)):
        a, b = cells.cell_axes[i]
        amp, phase = cells.wobble[i, :, 0], cells.wobble[i, :, 1]
        ext = a * 1.15 * (1 + np.abs(amp).sum()) + 1
        cy, cx = cells.centre[i]
        r0, r1 = max(0, int(cy - ext)), min(size, int(cy + ext) + 1)
        c0, c1 = max(0, int(cx - ext)), min(size, int(cx + ext) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        ys, xs = grid[r0:r1, None], grid[None, c0:c1]
        cos, sin = math.cos(cells.theta[i]), math.sin(cells.theta[i])
        dy, dx = ys - np.float32(cy), xs - np.float32(cx)
        u, v = dx * cos + dy * sin, dy * cos - dx * sin
        rho = np.sqrt(u * u + v * v) + np.float32(1e-6)
        c1_, s1_ = u / rho, v / rho  # cos, sin of the polar angle; harmonics by recurrence
        ck, sk = c1_, s1_
        wob = np.ones_like(u)
        for h in range(4):  # harmonics 2..5: cos(k phi + phase) = cos k phi cos p - sin k phi sin p
            ck, sk = ck * c1_ - sk * s1_, sk * c1_ + ck * s1_
            wob += np.float32(amp[h] * math.cos(phase[h])) * ck - np.float32(amp[h] * math.sin(phase[h])) * sk
        d = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wob
        ny, nx = cells.nucleus[i]
        na, nb = cells.nucleus_axes[i]
        dy, dx = ys - np.float32(ny), xs - np.float32(nx)
        un, vn = dx * cos + dy * sin, dy * cos - dx * sin
        dnuc = np.sqrt((un / na) ** 2 + (vn / nb) ** 2)
        k = np.where(dnuc < 1, dnuc - 1, d)
        win = key[r0:r1, c0:c1]
        m = (k < win) & (k < 1.15)
        win[m] = k[m]
        label[r0:r1, c0:c1][m] = i + 1
        dc[r0:r1, c0:c1][m] = d[m]
        dn[r0:r1, c0:c1][m] = dnuc[m]
    return label, dc, dn


def _borders(label: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels whose 4-neighbour has a different label (both sides)."""
    b = np.zeros(label.shape, bool)
    v = label[:-1] != label[1:]
    b[:-1] |= v
    b[1:] |= v
    h = label[:, :-1] != label[:, 1:]
    b[:, :-1] |= h
    b[:, 1:] |= h
    return b


def render_signal(
    rng: np.random.Generator, size: int, r_n: float, mods: Mapping[str, float], batch: BatchParams
) -> tuple[np.ndarray, int]:
    """Noise-free stain signal (6, size, size) float32 (about 0-2, unit = typical
    intensity) and the number of cells whose nucleus lies in the image."""
    shape = (size, size)
    cells = draw_cells(rng, size, r_n, mods, batch)
    n = len(cells.theta)
    label, dc, dn = tessellate(cells, size)
    rough = _noise(rng, shape, 0.4 * r_n)
    label[(label > 0) & (dn >= 1) & (dc + 0.07 * rough > 1)] = 0
    cell = label > 0
    nuc = cell & (dn < 1)
    cyto = cell & ~nuc
    lab = label - 1  # index into per-cell arrays where cell

    def per_cell(values: np.ndarray) -> np.ndarray:
        return np.where(cell, values.astype(np.float32)[lab], 0).astype(np.float32)

    mit = cells.state == 1
    dna_density = cells.dna * r_n**2 / np.prod(cells.nucleus_axes, 1)
    inter = cells.state == 0
    dist_out = np.maximum(dn - 1, 0)  # distance outside the nucleus, in nuclear radii
    f_fine = _noise(rng, shape, max(0.6, 0.1 * r_n))
    f_med = _noise(rng, shape, 0.3 * r_n)

    # w1 Hoechst: domed nuclei with chromatin texture.
    dome = np.where(nuc, 1 - 0.35 * np.minimum(dn, 1) ** 2, 0)
    chrom = np.clip(1 + 0.15 * f_fine + 0.12 * f_med, 0.2, None)
    w1 = per_cell(dna_density * rng.lognormal(0, 0.06, n)) * dome * chrom

    # w2 concanavalin A: perinuclear reticular ER, bright envelope, dim nucleus.
    er = per_cell(mods["er"] * rng.lognormal(0, 0.25, n))
    reticulum = 0.55 + 0.6 * _ridge(_noise(rng, shape, 0.25 * r_n), 0.5)
    envelope = cell * np.exp(-(((dn - 1) / 0.15) ** 2))
    w2 = er * (cyto * (0.3 + 0.7 * np.exp(-dist_out / 1.0)) * reticulum + 0.12 * nuc + 0.35 * envelope)

    # w3 phalloidin: stress fibres along each cell's axis, cortical actin, diffuse cytoplasm.
    fi = np.repeat(np.flatnonzero(inter), rng.poisson(7 * mods["fibres"], inter.sum()))
    ang = cells.theta[fi] + rng.normal(0, 0.12, len(fi))
    off = rng.uniform(-0.8, 0.8, len(fi)) * cells.cell_axes[fi, 1]
    along = rng.uniform(-0.3, 0.3, len(fi)) * cells.cell_axes[fi, 0]
    half = rng.uniform(0.6, 1.1, len(fi)) * cells.cell_axes[fi, 0]
    cy = cells.centre[fi, 0] + off * np.cos(ang) + along * np.sin(ang)
    cx = cells.centre[fi, 1] - off * np.sin(ang) + along * np.cos(ang)
    ends = np.rint(
        [
            cy - half * np.sin(ang),
            cx - half * np.cos(ang),
            cy + half * np.sin(ang),
            cx + half * np.cos(ang),
        ]
    )
    fib = np.zeros(shape, np.float32)
    for (y0, x0, y1, x1), w in zip(ends.astype(int).T.tolist(), rng.uniform(0.4, 1.0, len(fi)).tolist()):
        rr, cc, val = line_aa(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        fib[rr[ok], cc[ok]] += val[ok] * w
    fib = ndi.gaussian_filter(fib, max(0.01, 0.06 * r_n)) * cell
    borders = ndi.gaussian_filter(_borders(label).astype(np.float32), 0.1 * r_n)
    cortical = per_cell(mods["cortical"] * (1 + 1.5 * mit) * rng.lognormal(0, 0.25, n))
    fibres = per_cell(rng.lognormal(0, 0.3, n)) * np.minimum(fib, 1.5)
    w3 = fibres + cortical * 0.6 * borders + 0.35 * cyto + 0.12 * nuc

    # w4 SYTO14: nucleoli, nucleoplasm, faint perinuclear cytoplasmic RNA.
    rna = per_cell(rng.lognormal(0, 0.2, n))
    idx = np.repeat(np.flatnonzero(inter), 1 + rng.poisson(1.5, inter.sum()))
    rad = np.sqrt(rng.uniform(0, 0.35, len(idx)))
    ang = rng.uniform(0, 2 * np.pi, len(idx))
    ax = cells.nucleus_axes[idx]
    t = cells.theta[idx]
    u, v = rad * ax[:, 0] * np.cos(ang), rad * ax[:, 1] * np.sin(ang)
    rows = cells.nucleus[idx, 0] + u * np.sin(t) + v * np.cos(t)
    cols = cells.nucleus[idx, 1] + u * np.cos(t) - v * np.sin(t)
    amp = rng.uniform(0.6, 1.2, len(idx)) * mods["nucleolus"]
    nucleoli = _splat(shape, rows, cols, amp, 0.17 * r_n * mods["nucleolus_size"]) * nuc
    cyto_rna = 0.4 * mods["rna"] * cyto * np.exp(-dist_out / 2.0) * (1 + 0.25 * f_fine)
    w4 = rna * (nuc * 0.7 + 1.5 * nucleoli + cyto_rna)

    # w5 MitoTracker: tubules and puncta in the cytoplasm, densest near the nucleus.
    tub = _ridge(_noise(rng, shape, 0.25 * r_n), 0.5)
    punct = np.clip(_noise(rng, shape, 0.2 * r_n) - 0.5, 0, None)
    tubular = min(mods["tubular"], 1.0)
    mito = per_cell(mods["mito"] * rng.lognormal(0, 0.3, n))
    bright = rng.integers(0, n, max(1, n // 4))
    rows, cols = (cells.nucleus[bright] + rng.normal(0, 1.5 * r_n, (len(bright), 2))).T
    spots = _splat(shape, rows, cols, rng.uniform(2, 5, len(bright)), 0.25 * r_n)
    texture = 0.35 + tubular * tub + (1 - tubular) * 1.3 * punct
    w5 = cyto * (mito * (np.exp(-dist_out / 1.8) * texture + 0.1) + spots)

    # w6 WGA: Golgi ribbon at the nucleus (leading side), plasma membrane, faint nuclei.
    gi = np.repeat(np.flatnonzero(inter), 6)
    ga = cells.polarity[gi] + rng.normal(0, 0.45, len(gi))
    reach = cells.nucleus_axes[gi, 1] * (1.25 + 0.3 * mods["golgi_size"] * rng.random(len(gi)))
    rows = cells.nucleus[gi, 0] + reach * np.sin(ga)
    cols = cells.nucleus[gi, 1] + reach * np.cos(ga)
    amp = rng.uniform(0.3, 0.8, len(gi)) * mods["golgi"]
    golgi = _splat(shape, rows, cols, amp, 0.3 * r_n * mods["golgi_size"])
    wga = per_cell(rng.lognormal(0, 0.2, n))
    w6 = wga * (0.45 * borders + 0.7 * nuc * chrom + 0.25 * cyto) + golgi * cell

    signal = np.stack([w1, w2, w3, w4, w5, w6]).astype(np.float32)
    inside = (cells.nucleus >= 0).all(1) & (cells.nucleus < size).all(1)
    return signal, int(inside.sum())


def acquire(
    rng: np.random.Generator,
    signal: np.ndarray,
    batch: BatchParams,
    psf_sigma: float,
    haze_width: int,
    gain_jitter: np.ndarray,
) -> np.ndarray:
    """Microscope and camera: PSF blur plus out-of-focus haze (box width ``haze_width``
    px), vignetting, gain, offset, shot noise, 8-bit.

    ``signal``: (6, H, W) float stain signal; returns (6, H, W) uint8.
    """
    _, h, w = signal.shape
    img = ndi.gaussian_filter(signal, (0, psf_sigma, psf_sigma))
    box = (1, haze_width, haze_width)  # out-of-focus light: two box blurs ~ a wide Gaussian
    img += 0.3 * ndi.uniform_filter(ndi.uniform_filter(signal, box), box)
    y = (np.arange(h, dtype=np.float32) / h - batch.centre[0])[:, None]
    x = (np.arange(w, dtype=np.float32) / w - batch.centre[1])[None, :]
    r2 = (y**2 + x**2) / 0.5  # 1 at the corners of a centred field
    illum = 1 - batch.vignette[:, None, None] * r2[None]
    gain = (batch.gain * gain_jitter * _SCALE)[:, None, None]
    dn = batch.offset[:, None, None] * (0.6 + 0.4 * illum) + gain * illum * img
    k = _PHOTONS_PER_DN[:, None, None]
    counts = rng.poisson(np.maximum(dn, 0) * k)
    return np.clip(np.rint(counts / k), 0, 255).astype(np.uint8)


def render_site(spec: ScreenSpec, seed: int, plan: WellPlan, site: int) -> tuple[np.ndarray, int, float]:
    """Images of one site: (6, S, S) uint8, the number of cells, the phenotype strength."""
    batch = batch_params(spec, seed, plan.experiment_index, plan.plate)
    row, col = PLATE_ROWS.index(plan.well[:-2]), int(plan.well[-2:])
    rw = _rng(seed, 3, plan.experiment_index, plan.plate, row, col)
    effect = dose_effect(plan.treatment, plan.conc, spec.phenotype_strength) * rw.lognormal(0, 0.15)
    density = rw.lognormal(0, 0.06)
    gain_jitter = np.exp(rw.normal(0, 0.03 * spec.batch_strength, N_CHANNELS)).astype(np.float32)
    mods = modifiers(treatment_effects(plan.treatment, seed, spec.treatment_deviation), effect)
    rs = _rng(seed, 4, plan.experiment_index, plan.plate, row, col, site)
    mods["density"] *= density * rs.lognormal(0, 0.08)
    signal, n_cells = render_signal(rs, spec.image_size, spec.nucleus_radius, mods, batch)
    psf = max(0.5, 0.11 * spec.nucleus_radius) * rs.lognormal(0, 0.1)
    haze = round(3 * spec.nucleus_radius)
    return acquire(rs, signal, batch, psf, haze, gain_jitter), n_cells, float(effect)


# ---------------------------------------------------------------------------- writing


def site_id(experiment: str, plate: int, well: str, site: int) -> str:
    """RxRx site id ``{experiment}_{plate}_{well}_{site}``."""
    return f"{experiment}_{plate}_{well}_{site}"


def image_path(root: Path, experiment: str, plate: int, well: str, site: int, channel: int) -> Path:
    """RxRx image path ``root/images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png``."""
    return root / "images" / experiment / f"Plate{plate}" / f"{well}_s{site}_w{channel}.png"


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=3)


def _make_well(root: Path, spec: ScreenSpec, seed: int, plan: WellPlan, active: bool) -> list[dict[str, Any]]:
    rows = []
    moa = TREATMENT_MOA[plan.treatment]
    for site in range(1, spec.sites_per_well + 1):
        img, n_cells, effect = render_site(spec, seed, plan, site)
        for c in range(N_CHANNELS):
            _write_png(image_path(root, plan.experiment, plan.plate, plan.well, site, c + 1), img[c])
        rows.append({
            "site_id": site_id(plan.experiment, plan.plate, plan.well, site),
            "well_id": f"{plan.experiment}_{plan.plate}_{plan.well}",
            "cell_type": CELL_TYPE, "dataset": "train", "experiment": plan.experiment,
            "plate": plan.plate, "well": plan.well, "site": site,
            "well_type": "negative_control" if plan.treatment == CONTROL else "treatment",
            "treatment": plan.treatment, "treatment_conc": plan.conc,
            "moa": moa, "active": active, "phenotype": PHENOTYPES[moa] if active else NO_PHENOTYPE,
            "effect": round(effect, 4), "n_cells": n_cells,
        })  # fmt: skip
    return rows


def _record(preset: str, seed: int, overrides: Mapping[str, Any]) -> dict[str, Any]:
    record = {"generator": GENERATOR_VERSION, "preset": preset, "seed": int(seed), "overrides": dict(overrides)}
    return json.loads(json.dumps(record))


def make_screen(root: str | Path, preset: str = "demo", seed: int = 0, n_jobs: int = 1, **overrides: Any) -> Path:
    """Write the screen under root; return the path of root/metadata.csv. Idempotent: if
    root/metadata.csv exists and root/screen.json records the same preset/seed/overrides, return
    at once without regenerating (``GENERATOR_VERSION`` is part of the record, so a screen
    written by an older generator is rebuilt).

    ``overrides`` replace ``ScreenSpec`` fields of the preset (``n_plates=4``,
    ``image_size=512``, ...); ``n_jobs`` wells are rendered in parallel (joblib; the output
    does not depend on it).
    """
    root = Path(root)
    meta_path, info_path = root / "metadata.csv", root / "screen.json"
    record = _record(preset, seed, overrides)
    if meta_path.exists() and info_path.exists():
        try:
            old = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if {k: old.get(k) for k in record} == record:
            return meta_path
    spec = resolve_spec(preset, **overrides)
    if info_path.exists():  # an earlier (or interrupted) synthetic screen here: clear it
        meta_path.unlink(missing_ok=True)
        for name in ("ground_truth.csv", "ground_truth_treatments.csv"):
            (root / name).unlink(missing_ok=True)
        shutil.rmtree(root / "images", ignore_errors=True)
    truth = treatment_truth(spec, seed)
    # screen.json first, metadata.csv last: an interrupted run is never taken as complete,
    # and the next run knows the images here are its own to clear.
    info = {
        "spec": dataclasses.asdict(spec),
        "treatments": [t._asdict() | {"ec50": t.ec50, "doses": list(t.doses)} for t in library(spec)],
        "hill": HILL, "effect_threshold": EFFECT_THRESHOLD,
        "phenotypes": PHENOTYPES,
    }  # fmt: skip
    write_json(record | info, info_path)
    active = dict(zip(truth["treatment"], truth["active"])) | {CONTROL: False}
    plans = screen_layout(spec, seed)
    results = Parallel(n_jobs=n_jobs)(
        delayed(_make_well)(root, spec, seed, p, bool(active[p.treatment])) for p in plans
    )
    table = pd.DataFrame([r for rows in results for r in rows])
    write_table(truth, root / "ground_truth_treatments.csv")
    write_table(table[list(GROUND_TRUTH_COLUMNS)], root / "ground_truth.csv")
    write_table(table[list(METADATA_COLUMNS)], meta_path)
    return meta_path
