"""Plain helpers shared by several test modules (imported as ``from _helpers import ...``).

Data locations: the full real data in ``../shared/data`` (beside the repository) and the small
real fixture set vendored in ``tests/data`` (origins and licences: ``tests/data/LICENSES.md``).
Fixtures that hand these to tests live in ``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from moa_features import schema
from moa_features.extract import extract
from moa_features.synthetic import make_screen
from moa_features.votes import VoteStore

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
VENDORED = TESTS / "data"
RXRX1 = SHARED_DATA / "rxrx1"
BBBC021 = SHARED_DATA / "bbbc021"
IBSI = SHARED_DATA / "ibsi"
ARTIFACTS = REPO / "test-artifacts"

# Our AreaShape names -> skimage.measure.regionprops property names (the reference).
REGIONPROPS_NAMES = {
    "Area": "area",
    "Perimeter": "perimeter",
    "Eccentricity": "eccentricity",
    "Solidity": "solidity",
    "Extent": "extent",
    "MajorAxisLength": "axis_major_length",
    "MinorAxisLength": "axis_minor_length",
}


def cellprofiler_quantile(values: np.ndarray, fraction: float) -> float:
    """CellProfiler's MeasureObjectIntensity quantile, written out for one object: the sorted
    values' entry at position ``len * fraction``, interpolated to the next one."""
    v = np.sort(values)
    position = len(v) * fraction
    lower = int(np.floor(position))
    if lower < len(v) - 1:
        return v[lower] * (1 - (position - lower)) + v[lower + 1] * (position - lower)
    return v[lower]


CLASSES = ("Negative control", "Microtubule", "DNA damage")


def missing_reason(path: Path) -> str:
    """The skip reason for a test whose real data ``path`` is absent."""
    return (
        f"real test data missing: {path} (this test needs the full data in ../shared/data beside the repository; "
        f"the small vendored set in {VENDORED.relative_to(REPO)} does not cover it)"
    )


def real_data(relative: str | Path, vendored: bool = True) -> Path:
    """``../shared/data/<relative>``, else its vendored copy ``tests/data/<relative>``, else skip.

    Use ``vendored=False`` where a test's assertions need the full shared file or folder.
    """
    for root in (SHARED_DATA, VENDORED) if vendored else (SHARED_DATA,):
        if (root / relative).exists():
            return root / relative
    pytest.skip(missing_reason(SHARED_DATA / relative))


def load_rxrx1_site(experiment: str, plate: int = 1, well: str = "B02", site: int = 1) -> np.ndarray:
    """A real RxRx1 site as a (6, 512, 512) uint8 array, read straight from its PNGs.

    Read from ``../shared/data/rxrx1``, else from the vendored sites (HUVEC-01 and U2OS-01,
    plate 1, B02, site 1); skips the test when neither holds the site.
    """
    from PIL import Image

    folder = real_data(Path("rxrx1") / "images" / experiment / f"Plate{plate}")
    paths = [folder / f"{well}_s{site}_w{c}.png" for c in range(1, 7)]
    if not all(p.is_file() for p in paths):
        pytest.skip(missing_reason(paths[0]))
    return np.stack([np.asarray(Image.open(p)) for p in paths])


def constructed_screen(
    folder: Path, n_plates: int = 3, wells_per_class: int = 3, sites: int = 2, size: int = 12, seed: int = 0
) -> tuple[Path, Path]:
    """A small screen as a feature table + row-aligned thumbnails; returns their paths.

    Each of :data:`CLASSES` shifts one feature (and one thumbnail channel's brightness);
    every plate has a multiplicative gain (a batch effect that control normalisation removes).
    Table: ``n_plates * 3 * wells_per_class * sites`` rows; thumbnails ``(N, size, size, 3)`` uint8.
    """
    rng = np.random.default_rng(seed)
    rows, thumbs = [], []
    for p in range(n_plates):
        gain = 1 + 0.3 * p
        for k, moa in enumerate(CLASSES):
            for w in range(wells_per_class):
                well = f"{'BCD'[k]}{w + 2:02d}"
                treatment = "EMPTY" if k == 0 else f"drug{k}_{w % 2}"
                for s in range(1, sites + 1):
                    f = rng.normal(10, 1, size=6)
                    if k:
                        f[k] += 6
                    f = f * gain
                    rows.append(
                        {
                            schema.PLATE: f"exp1_{p + 1}",
                            schema.WELL: well,
                            schema.SITE: s,
                            schema.EXPERIMENT: "exp1",
                            schema.TREATMENT: treatment,
                            schema.CONCENTRATION: 1.0 if k else 0.0,
                            schema.MOA: moa,
                            schema.SITE_ID: f"exp1_{p + 1}_{well}_{s}",
                            schema.WELL_ID: f"exp1_{p + 1}_{well}",
                            **{f"Image_Intensity_Mean_w{i + 1}": v for i, v in enumerate(f)},
                            "Image_Intensity_Const_w1": 1.0,
                        }
                    )
                    img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
                    img[..., k] += 120
                    thumbs.append(img)
    table = folder / "screen.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    thumbs_path = folder / "screen.thumbs.npy"
    np.save(thumbs_path, np.stack(thumbs))
    return table, thumbs_path


# The metrics.json fields of the held-out-treatment evaluation (issue 10): treatment-level figures,
# 95 % bootstrap CIs, treatment-level permutation p-values and expected chance, per model.
NSC_FIELDS = {
    "cnn": {
        "treatment_macro_recall": 0.30,
        "treatment_macro_recall_ci": [0.18, 0.44],
        "treatment_accuracy": 0.35,
        "treatment_accuracy_ci": [0.2, 0.5],
        "permutation_p": 0.21,
        "expected_chance": 0.25,
    },
    "xgboost": {
        "treatment_macro_recall": 0.58,
        "treatment_macro_recall_ci": [0.41, 0.73],
        "treatment_accuracy": 0.6,
        "treatment_accuracy_ci": [0.45, 0.75],
        "permutation_p": {"treatment_macro_recall": 0.0099, "treatment_accuracy": 0.0198},
        "expected_chance": {"treatment_macro_recall": 0.25, "treatment_accuracy": 0.28},
    },
    "majority": {"treatment_macro_recall": 0.25, "treatment_accuracy": 0.28, "expected_chance": 0.25},
}
NSC_CONFIG = {"split": "nsc", "label": "Metadata_pathway", "aggregation": "treatment median of well medians"}


def write_run(run: Path, classes: list[str], seed: int = 0, nsc: bool = False) -> dict:
    """A training-run folder in the documented layout (metrics, predictions, history, importance).

    ``nsc=True`` adds the held-out-treatment fields (:data:`NSC_FIELDS`, :data:`NSC_CONFIG`).
    """
    rng = np.random.default_rng(seed)
    run.mkdir(parents=True, exist_ok=True)
    models = {
        "cnn": {
            "macro_recall": 0.41,
            "macro_recall_std": 0.05,
            "balanced_accuracy": 0.41,
            "balanced_accuracy_std": 0.05,
            "macro_f1": 0.38,
            "macro_f1_std": 0.06,
            "accuracy": 0.5,
            "well_macro_recall": 0.45,
            "well_macro_recall_std": 0.07,
        },
        "xgboost": {
            "macro_recall": 0.62,
            "macro_recall_std": 0.04,
            "balanced_accuracy": 0.62,
            "balanced_accuracy_std": 0.04,
            "macro_f1": 0.6,
            "macro_f1_std": 0.03,
            "accuracy": 0.7,
            "well_macro_recall": 0.66,
            "well_macro_recall_std": 0.05,
        },
        "ensemble": {
            "macro_recall": 0.655,
            "macro_recall_std": 0.03,
            "balanced_accuracy": 0.655,
            "balanced_accuracy_std": 0.03,
            "macro_f1": 0.63,
            "macro_f1_std": 0.02,
            "accuracy": 0.72,
        },
        "majority": {"macro_recall": 1 / len(classes), "balanced_accuracy": 1 / len(classes), "macro_f1": 0.05},
    }
    k = len(classes)
    metrics = {
        "models": models,
        "per_class_recall": {m: dict(zip(classes, rng.uniform(0, 1, k).round(3))) for m in models},
        "confusion_matrices": {
            m: {"labels": classes, "matrix": (np.eye(k, dtype=int) * 5 + rng.integers(0, 3, (k, k))).tolist()}
            for m in models
        },
        "classes": classes,
        "config": {"seed": 0, "split": "plate", "folds": 2},
        "timings": {"cnn_s": 12.5, "xgboost_s": 3.25},
    }
    if nsc:
        for name, fields in NSC_FIELDS.items():
            models[name].update(fields)
        metrics["config"].update(NSC_CONFIG)
    (run / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame(
        {"model": "xgboost", "fold": [0, 0, 1, 1], "y_true": classes[:2] * 2, "y_pred": classes[:2] * 2}
    ).to_parquet(run / "predictions.parquet")
    history = {
        "cnn": [
            {
                "loss": [2.0, 1.5, 1.2],
                "val_loss": [2.1, 1.8, 1.7],
                "accuracy": [0.2, 0.4, 0.5],
                "val_accuracy": [0.2, 0.3, 0.35],
            }
        ]
        * 2
    }
    (run / "history.json").write_text(json.dumps(history))
    pd.DataFrame(
        {
            "feature": ["Image_Intensity_Mean_w2", "Nuclei_Count", "Image_Texture_Contrast_w3_1_avg_32"],
            "importance": [5.0, 3.0, 1.0],
        }
    ).to_csv(run / "feature_importance.csv", index=False)
    return metrics


def make_demo_run(root: Path) -> dict[str, Path]:
    """Run the real pipeline on the tiny synthetic screen; returns the paths of its outputs."""
    metadata = make_screen(root / "screen", preset="tiny", seed=0)
    meta = pd.read_csv(metadata)
    broken = meta.iloc[5]
    bad_png = next((root / "screen" / "images").rglob(f"{broken['well']}_s{broken['site']}_w3.png"))
    bad_png.write_bytes(b"not a png")  # one unreadable image: the report must list the failed site
    table = root / "features" / "tiny.parquet"
    extract(metadata, table, thumbs=32, progress=False)
    side = schema.sidecar_paths(table)
    spec = json.loads((root / "screen" / "screen.json").read_text())
    pd.DataFrame(
        [
            {
                "treatment": t["name"],
                "moa": t["moa"],
                "source": "curated",
                "evidence": "synthetic screen",
                "needs_review": t["name"] == "DKK-1",
            }
            for t in spec["treatments"]
        ]
    ).to_csv(side["annotation"], index=False)
    votes = VoteStore(side["votes"])
    for i, chosen in enumerate((["w1", "w2", "w6"], ["w2", "w6", "w3"], ["w1", "w3", "w5"])):
        votes.add(f"session-{i}", "Interleukin" if i < 2 else "TNF ligand", "s1", "s0", chosen)
    classes = sorted({t["moa"] for t in spec["treatments"]})
    write_run(root / "models" / "tiny", classes, nsc=True)
    write_activity(root / "models" / "tiny" / "activity.csv", [t["name"] for t in spec["treatments"]])
    return {
        "table": table,
        "run": root / "models" / "tiny",
        "votes": side["votes"],
        "broken": Path(str(broken["site_id"])),
    }


def write_activity(path: Path, treatments: list[str], seed: int = 0) -> pd.DataFrame:
    """An ``activity.csv`` in the documented columns; the first treatment is inactive (mAP 0.2, q 0.6)."""
    rng = np.random.default_rng(seed)
    n = len(treatments)
    df = pd.DataFrame(
        {
            "treatment": treatments,
            "n_replicates": rng.integers(3, 7, n),
            "mean_average_precision": np.r_[0.2, rng.uniform(0.6, 1.0, n - 1)],
            "p_value": np.r_[0.3, 10.0 ** -rng.uniform(2, 4, n - 1)],
        }
    )
    df["corrected_p_value"] = np.minimum(df["p_value"] * 2, 1.0)
    df["active"] = df["corrected_p_value"] < 0.05
    df.to_csv(path, index=False)
    return df


def bbbc021_raw_wells() -> pd.DataFrame:
    """Ljosa et al.'s raw BBBC021 per-well means with plate, well, compound, concentration and MoA.

    Built exactly as the benchmarks build it (``benchmarks/bench_bbbc021.py``,
    ``raw_well_table``); skips when ``../shared/data/bbbc021`` is absent.
    """
    if not (BBBC021 / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz").is_file():
        pytest.skip(missing_reason(BBBC021))
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_bbbc021", REPO / "benchmarks" / "bench_bbbc021.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.raw_well_table()


def match_by_centre(ours: np.ndarray, theirs: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of objects by their centres (mutual nearest neighbours).

    ours: ``(n, 2)``, theirs: ``(m, 2)`` centres (x, y) in pixels. A pair is matched when each
    is the other's nearest centre and they lie at most ``max_distance`` pixels apart.
    Returns index arrays ``(i_ours, i_theirs)`` of equal length.

    Examples
    --------
    >>> import numpy as np
    >>> match_by_centre(np.array([[0, 0], [10, 10]]), np.array([[10, 11], [50, 50]]), 3)
    (array([1]), array([0]))
    """
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if not len(ours) or not len(theirs):
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    d_theirs, to_ours = cKDTree(ours).query(theirs)
    _, to_theirs = cKDTree(theirs).query(ours)
    j = np.flatnonzero((to_theirs[to_ours] == np.arange(len(theirs))) & (d_theirs <= max_distance))
    i = to_ours[j]
    order = np.argsort(i)
    return i[order], j[order]
