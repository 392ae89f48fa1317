"""The demo library: 40 soluble factors, their MoA classes, dose responses and phenotypes.

Each MoA has a direction in the cell model (``MOA_EFFECTS``); each active treatment follows it
with its own deviation (:func:`treatment_effects`). The classes are separable by construction:
the directions of different MoAs share few parameters, so the demo checks the pipeline, not the
difficulty of real MoA prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from moa_features import schema
from moa_features.synthetic._seeds import seeded_rng

CONTROL = "EMPTY"
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
    rng = seeded_rng(seed, 5, _TREATMENT_INDEX[treatment])
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
