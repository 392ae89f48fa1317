"""Writing a screen to disk: PNGs in the RxRx layout, metadata.csv, screen.json, the answer keys."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image

from moa_features.io import atomic_path, write_json, write_table
from moa_features.synthetic.acquisition import N_CHANNELS
from moa_features.synthetic.design import (
    CELL_TYPE,
    ScreenSpec,
    WellPlan,
    library,
    resolve_spec,
    screen_layout,
    treatment_truth,
)
from moa_features.synthetic.library import CONTROL, EFFECT_THRESHOLD, HILL, NO_PHENOTYPE, PHENOTYPES, TREATMENT_MOA
from moa_features.synthetic.render import render_site

METADATA_COLUMNS = (
    "site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
    "well_type", "treatment", "treatment_conc",
)  # fmt: skip
GROUND_TRUTH_COLUMNS = (
    "site_id", "treatment", "treatment_conc", "moa", "active", "phenotype", "effect", "n_cells",
)  # fmt: skip
GENERATOR_VERSION = 3  # bump when the same preset and seed give other files: cached screens are rebuilt


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
            "cell_type": CELL_TYPE, "dataset": "synthetic", "experiment": plan.experiment,
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
