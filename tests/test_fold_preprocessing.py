"""Per-fold preprocessing and inner validation of ``train`` (moa_features.training.fitting)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_features.models import splits
from moa_features.training.data import TrainingData, fold_controls
from moa_features.training.fitting import EPSILONS, Settings, fit_fold


def _layout(seed: int = 0) -> TrainingData:
    """12 treatments (3 classes) of 4 wells; each plate holds 2 treatments of different classes; 8 controls
    per plate with a plate effect; class signal along the first 3 of 8 features."""
    rng = np.random.default_rng(seed)
    rows, y, plates, treatments, wells = [], [], [], [], []
    plate_effect = {f"P{k}": rng.normal(scale=2.0, size=8) for k in range(6)}
    for t in range(12):
        label = f"c{t % 3}"
        plate = f"P{t // 2}"
        for w in range(4):
            x = plate_effect[plate] + rng.normal(scale=0.3, size=8)
            x[t % 3] += 3.0
            rows.append(x)
            y.append(label)
            plates.append(plate)
            treatments.append(f"T{t}")
            wells.append(f"{plate}-{t}-{w}")
    controls = np.vstack([plate_effect[p] + rng.normal(scale=0.3, size=(8, 8)) for p in plate_effect])
    meta = pd.DataFrame({"Metadata_Plate": plates, "Metadata_Treatment": treatments})
    return TrainingData(
        X=np.array(rows),
        y=np.array(y),
        plates=np.array(plates),
        treatments=np.array(treatments),
        profiles=np.array(treatments),
        wells=np.array(wells),
        meta=meta,
        feature_names=[f"f{i}" for i in range(8)],
        controls=controls,
        control_plates=np.repeat(list(plate_effect), 8),
    )


def test_nsc_plate_fold_fits_on_training_plates_and_holds_out_plates_inside():
    data = _layout()
    cv, params = splits.make_splitter(
        "nsc-plate", data.meta, plate="Metadata_Plate", treatment="Metadata_Treatment", n_splits=3
    )
    train, test = next(cv.split(data.X, data.y, **params))
    assert not set(data.plates[train]) & set(data.plates[test])
    settings = Settings(models=("xgboost", "knn"), split="nsc-plate", n_splits=3)
    fitted, _ = fit_fold(data, train, settings, params)
    # sphering and control scaling come from the training plates' controls only
    ctrl = fold_controls(data, data.plates[train])
    assert len(ctrl) == 8 * len(set(data.plates[train]))
    pre = fitted["preprocess"]
    assert pre.sphered_ and np.allclose(pre.center_, np.median(ctrl, axis=0))
    choice = fitted["preprocess_choice"]
    assert choice["epsilon"] in EPSILONS and set(choice["inner_scores"]) <= {str(e) for e in EPSILONS}
    # XGBoost's early stopping: validation treatments and their plates never in its inner training rows
    xgb = fitted["xgboost"]
    y_enc = np.searchsorted(xgb.classes_, data.y[train])
    inner_tr, inner_va = xgb._validation_split(y_enc, data.treatments[train], data.plates[train])
    assert np.array_equal(xgb.validation_rows_, inner_va)
    tr_plates, va_plates = data.plates[train][inner_tr], data.plates[train][inner_va]
    assert len(inner_va) and not set(tr_plates) & set(va_plates)


def test_fixed_epsilon_and_select_recipe():
    data = _layout(1)
    cv, params = splits.make_splitter("nsc", data.meta, plate="Metadata_Plate", treatment="Metadata_Treatment")
    train, _ = next(cv.split(data.X, data.y, **params))
    fitted, _ = fit_fold(data, train, Settings(models=("knn",), sphere_epsilon=0.5), params)
    assert fitted["preprocess_choice"]["epsilon"] == 0.5 and fitted["preprocess"].named_steps["sphere"].epsilon == 0.5
    plain, _ = fit_fold(data, train, Settings(models=("knn",), preprocess="select"), params)
    assert plain["preprocess_choice"]["epsilon"] is None and "sphere" not in plain["preprocess"].named_steps
