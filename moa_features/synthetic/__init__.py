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

Modules, one concern each: :mod:`~moa_features.synthetic.library` (treatments, MoAs, dose
responses, phenotypes), :mod:`~moa_features.synthetic.design` (presets, plate layout, answer key),
:mod:`~moa_features.synthetic.acquisition` (batch effects, microscope),
:mod:`~moa_features.synthetic.render` (cells and stains), :mod:`~moa_features.synthetic.writer`
(files on disk). The names below are the public API.

The MoA classes are separable by construction (each class has its own direction in the cell
model, and a treatment deviates from it by a log-normal factor), so figures from this screen
check the pipeline; the evidence on real images is BBBC021 (README).
"""

from moa_features.synthetic.acquisition import N_CHANNELS, BatchParams, acquire, batch_params
from moa_features.synthetic.design import (
    CELL_TYPE,
    PLATE_COLUMNS,
    PLATE_ROWS,
    PRESETS,
    TREATMENT_TRUTH_COLUMNS,
    ScreenSpec,
    WellPlan,
    experiment_name,
    library,
    plate_groups,
    plate_layout,
    resolve_spec,
    screen_layout,
    treatment_truth,
    well_name,
)
from moa_features.synthetic.library import (
    BASELINE,
    CONTROL,
    DILUTION,
    EFFECT_THRESHOLD,
    HILL,
    MOA_EFFECTS,
    N_DOSES,
    N_SIDE_EFFECTS,
    NO_PHENOTYPE,
    PHENOTYPES,
    TREATMENT_MOA,
    TREATMENTS,
    Treatment,
    dose_effect,
    modifiers,
    phenotype_modifiers,
    treatment_effects,
)
from moa_features.synthetic.render import Cells, draw_cells, place_nuclei, render_signal, render_site, tessellate
from moa_features.synthetic.writer import (
    GENERATOR_VERSION,
    GROUND_TRUTH_COLUMNS,
    METADATA_COLUMNS,
    image_path,
    make_screen,
    site_id,
)

__all__ = [
    "BASELINE", "CELL_TYPE", "CONTROL", "DILUTION", "EFFECT_THRESHOLD", "GENERATOR_VERSION",
    "GROUND_TRUTH_COLUMNS", "HILL", "METADATA_COLUMNS", "MOA_EFFECTS", "NO_PHENOTYPE", "N_CHANNELS",
    "N_DOSES", "N_SIDE_EFFECTS", "PHENOTYPES", "PLATE_COLUMNS", "PLATE_ROWS", "PRESETS",
    "TREATMENTS", "TREATMENT_MOA", "TREATMENT_TRUTH_COLUMNS", "BatchParams", "Cells", "ScreenSpec",
    "Treatment", "WellPlan", "acquire", "batch_params", "dose_effect", "draw_cells",
    "experiment_name", "image_path", "library", "make_screen", "modifiers", "phenotype_modifiers",
    "place_nuclei", "plate_groups", "plate_layout", "render_signal", "render_site", "resolve_spec",
    "screen_layout", "site_id", "tessellate", "treatment_effects", "treatment_truth", "well_name",
]  # fmt: skip
