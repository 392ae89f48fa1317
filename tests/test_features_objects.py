"""Segmentation as a step, per-object measurements (CellProfiler definitions), aggregation, user masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.segmentation import find_boundaries

from moa_features.features import FeatureParams, masks_from_labels, measure_site, segment
from moa_features.features.aggregate import AGGREGATES, aggregate_objects
from moa_features.features.correlation import object_correlation
from moa_features.features.object_intensity import INTENSITY_MEASURES, _sorted_stats, object_intensity
from moa_features.features.outline import outline
from moa_features.features.segmentation import filter_objects
from moa_features.features.site import measure_objects, site_objects

from _helpers import cellprofiler_quantile, match_by_centre

RXRX1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rxrx1"
CHANNELS6 = [f"w{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def site() -> np.ndarray:
    if not RXRX1.is_dir():
        pytest.skip(f"real RxRx1 sites not found at {RXRX1}")
    from moa_features.datasets import open_dataset

    return open_dataset(RXRX1).sites[8].load()


def test_object_intensity_follows_cellprofilers_definitions_object_by_object(site):
    masks = segment(site)
    plane = site[4]
    m = object_intensity(plane, masks.cells)
    for label in (1, 7, masks.n):
        values = plane[masks.cells == label].astype(np.float64)
        assert m["IntegratedIntensity"][label - 1] == values.sum()
        assert m["StdIntensity"][label - 1] == pytest.approx(values.std())
        assert m["MinIntensity"][label - 1] == values.min() and m["MaxIntensity"][label - 1] == values.max()
        for name, f in (("LowerQuartileIntensity", 0.25), ("MedianIntensity", 0.5), ("UpperQuartileIntensity", 0.75)):
            assert m[name][label - 1] == pytest.approx(cellprofiler_quantile(values, f))
        median = cellprofiler_quantile(values, 0.5)
        assert m["MADIntensity"][label - 1] == pytest.approx(cellprofiler_quantile(np.abs(values - median), 0.5))
        edge = outline(masks.cells) & (masks.cells == label)
        assert m["IntegratedIntensityEdge"][label - 1] == plane[edge].sum()
        rows, cols = np.nonzero(masks.cells == label)
        w = plane[rows, cols].astype(np.float64)
        shift = np.hypot(cols @ w / w.sum() - cols.mean(), rows @ w / w.sum() - rows.mean())
        assert m["MassDisplacement"][label - 1] == pytest.approx(shift)


def test_histogram_and_sorting_paths_agree(site):
    """uint8 uses per-object histograms; the same values sorted per object give the same numbers."""
    masks = segment(site)
    for plane in site[[0, 2, 5]]:
        for labels in masks.compartments().values():
            fast = object_intensity(plane, labels, masks.n)
            slow = _sorted_stats(plane.astype(np.uint16), labels.astype(np.int64), masks.n)
            for name, values in slow.items():
                np.testing.assert_allclose(fast[name], values, rtol=1e-12, equal_nan=True, err_msg=name)
            wide = object_intensity(plane.astype(np.uint16), labels, masks.n)
            for name in INTENSITY_MEASURES:
                np.testing.assert_allclose(fast[name], wide[name], rtol=1e-12, equal_nan=True, err_msg=name)


def test_outline_is_the_4_connected_inner_boundary_plus_the_image_border(site):
    labels = segment(site, exclude_border=False).cells
    border = np.zeros(labels.shape, dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    expected = find_boundaries(labels, connectivity=1, mode="inner") | (border & (labels > 0))
    np.testing.assert_array_equal(outline(labels), expected)


def test_border_objects_are_excluded_with_their_cells_and_size_limits_apply(site):
    all_masks = segment(site, exclude_border=False)
    kept = segment(site)
    touching = np.unique(np.concatenate([all_masks.nuclei[[0, -1]].ravel(), all_masks.nuclei[:, [0, -1]].ravel()]))
    assert kept.n == all_masks.n - np.count_nonzero(touching)
    edges = np.concatenate([kept.nuclei[[0, -1]].ravel(), kept.nuclei[:, [0, -1]].ravel()])
    assert not edges.any()  # kept cells may reach the border (CellProfiler keeps them too)
    for labels in (kept.nuclei, kept.cells):
        assert set(np.unique(labels)) == set(range(kept.n + 1))
    # the kept cells are the same pixels as before the exclusion (grown from every nucleus)
    assert np.count_nonzero(kept.cells) == np.count_nonzero(
        np.isin(all_masks.cells, np.setdiff1d(np.arange(1, all_masks.n + 1), touching))
    )
    areas = np.bincount(all_masks.nuclei.ravel())[1:]
    big = segment(site, min_diameter=float(np.sqrt(4 * np.median(areas) / np.pi)))
    assert 0 < big.n < kept.n
    small, _ = filter_objects(all_masks.nuclei, exclude_border=False, max_diameter=0.5)
    assert small.max() == 0


def test_site_features_are_aggregates_of_the_object_table(site):
    objects, masks = site_objects(site, CHANNELS6)
    features, table = measure_site(
        site, CHANNELS6, FeatureParams(texture_scheme="full", objects=True, families=("morphology",))
    )
    assert features["Nuclei_Count"] == masks.n == len(table["ObjectNumber"])
    assert "Cells_Count" not in features
    for column in ("Nuclei_AreaShape_Area", "Cytoplasm_Intensity_MeanIntensity_w5", "Cells_AreaShape_Compactness"):
        values = objects[column][np.isfinite(objects[column])]
        assert features[f"{column}_Median"] == pytest.approx(np.median(values))
        assert features[f"{column}_Mean"] == pytest.approx(np.mean(values))
        assert features[f"{column}_Std"] == pytest.approx(np.std(values))
    rim = np.bincount(masks.nuclei[masks.cytoplasm > 0], minlength=masks.n + 1)[1:]  # in both (CellProfiler's)
    np.testing.assert_array_equal(
        table["Cells_AreaShape_Area"], table["Nuclei_AreaShape_Area"] + table["Cytoplasm_AreaShape_Area"] - rim
    )


def test_pycytominer_infers_every_aggregate_and_object_column(site):
    from pycytominer.cyto_utils import infer_cp_features

    objects, masks = site_objects(site, CHANNELS6)
    features = aggregate_objects(objects)
    assert len(features) == len(AGGREGATES) * (len(objects) - 3)
    frame = pd.DataFrame([features]).assign(Metadata_Plate="p")
    assert set(infer_cp_features(frame)) == set(features)
    table = pd.DataFrame(objects).assign(Metadata_Plate="p")
    inferred = set(infer_cp_features(table))
    assert inferred == {c for c in objects if c.startswith(("Nuclei_", "Cells_", "Cytoplasm_"))}


def test_user_masks_are_measured_as_given():
    nuclei = np.zeros((40, 40), np.int32)
    nuclei[5:10, 5:10] = 1
    nuclei[20:30, 20:26] = 2
    cells = np.zeros_like(nuclei)
    cells[3:13, 3:13] = 1
    cells[18:34, 18:30] = 2
    image = np.stack(
        [np.full((40, 40), 7, np.uint8), np.arange(1600, dtype=np.uint16).reshape(40, 40).astype(np.uint8)]
    )
    features, table = measure_site(
        image, ["a", "b"], FeatureParams(families=("morphology",), objects=True), masks=masks_from_labels(nuclei, cells)
    )
    assert features["Nuclei_Count"] == 2
    np.testing.assert_array_equal(table["Nuclei_AreaShape_Area"], [25, 60])
    # cell - nucleus + the nucleus's rim: 100 - 25 + 16, 192 - 60 + 28
    np.testing.assert_array_equal(table["Cytoplasm_AreaShape_Area"], [91, 160])
    np.testing.assert_array_equal(table["Nuclei_Intensity_IntegratedIntensity_a"], [175, 420])
    np.testing.assert_allclose(table["Location_Center_X"], [7, 22.5])
    with pytest.raises(ValueError, match="non-negative"):
        masks_from_labels(-nuclei)


def test_empty_masks_give_nan_aggregates_and_an_empty_table():
    image = np.zeros((2, 20, 20), np.uint8)
    masks = masks_from_labels(np.zeros((20, 20), np.int32))
    objects = measure_objects(image, ["a", "b"], masks)
    assert all(len(v) == 0 for v in objects.values())
    assert all(np.isnan(v) for v in aggregate_objects(objects).values())


def test_optional_object_texture_and_correlation(site):
    image = site[:3]
    objects, masks = site_objects(image, ["w1", "w2", "w3"], texture=True, correlation=True)
    assert np.isfinite(objects["Nuclei_Texture_Contrast_w1_1_avg_32"]).all()
    r = objects["Cells_Correlation_Correlation_w1_w3"]
    label = 3
    inside = masks.cells == label
    assert r[label - 1] == pytest.approx(np.corrcoef(image[0][inside], image[2][inside])[0, 1])
    same = object_correlation(np.stack([image[0], image[0]]), ["x", "y"], masks.nuclei, masks.n)
    np.testing.assert_allclose(same["Correlation_Correlation_x_y"], 1.0)


def test_match_by_centre_is_one_to_one():
    ours = np.array([[0.0, 0.0], [1.0, 0.0], [30.0, 30.0]])
    theirs = np.array([[0.2, 0.0], [30.0, 34.5], [100.0, 100.0]])
    i, j = match_by_centre(ours, theirs, 5.0)
    assert i.tolist() == [0, 2] and j.tolist() == [0, 1]


@pytest.mark.parametrize("layout", ["loaddata", "manifest"])
def test_extract_measures_masks_named_in_a_loaddata_csv(tmp_path, layout):
    """A user's own masks (e.g. from Cellpose) via CellProfiler's ObjectsFileName_/ObjectsPathName_ columns,
    in a LoadData CSV or a manifest (``path_<channel>`` columns)."""
    from PIL import Image

    from moa_features.extract import extract

    rng = np.random.default_rng(5)
    rows = []
    for i in range(2):
        nuclei = np.zeros((64, 64), np.uint16)
        nuclei[10:20, 10:18] = 1
        nuclei[30 + i : 45, 30:44] = 2
        cells = np.zeros_like(nuclei)
        cells[5:25, 5:25] = 1
        cells[26:55, 26:55] = 2
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(nuclei).save(tmp_path / "masks" / f"n{i}.png")
        Image.fromarray(cells).save(tmp_path / "masks" / f"c{i}.png")
        for c in (1, 2):
            Image.fromarray(rng.integers(0, 200, (64, 64)).astype(np.uint8)).save(tmp_path / f"s{i}_w{c}.png")
        rows.append(
            {
                "Metadata_Plate": "P",
                "Metadata_Well": f"A0{i + 1}",
                "Metadata_Site": 1,
                "FileName_w1": f"s{i}_w1.png",
                "PathName_w1": ".",
                "FileName_w2": f"s{i}_w2.png",
                "PathName_w2": ".",
                "ObjectsFileName_Nuclei": f"n{i}.png",
                "ObjectsPathName_Nuclei": "masks",
                "ObjectsFileName_Cells": f"c{i}.png",
                "ObjectsPathName_Cells": "masks",
            }
        )
    csv = tmp_path / "load_data.csv"
    table = pd.DataFrame(rows)
    if layout == "manifest":
        table = table.rename(columns={"FileName_w1": "path_w1", "FileName_w2": "path_w2"})
        table = table.drop(columns=["PathName_w1", "PathName_w2"])
    table.to_csv(csv, index=False)
    params = FeatureParams(families=("intensity", "morphology"), objects=True, illum="none")
    result = extract(csv, tmp_path / "t.parquet", params=params, thumbs=None, progress=False)
    assert result.n_failed == 0
    objects = pd.read_parquet(tmp_path / "t.objects.parquet").sort_values(["Metadata_Well", "ObjectNumber"])
    np.testing.assert_array_equal(objects["Nuclei_AreaShape_Area"], [80, 210, 80, 196])
    np.testing.assert_array_equal(objects["Cells_AreaShape_Area"], [400, 841, 400, 841])
    assert "Metadata_ObjectsPath_Nuclei" in objects and objects["ObjectNumber"].tolist() == [1, 2, 1, 2]


def test_cell_mask_numbered_apart_from_its_nuclei_is_an_error_row_naming_the_file(tmp_path):
    """Cellpose numbers cells on their own; our contract is cell i holds nucleus i. A cell label
    above the nuclei's is refused with the mask's path and what to do, and the other sites run."""
    from PIL import Image

    from moa_features.extract import extract

    rng = np.random.default_rng(6)
    rows = []
    for i in range(2):
        nuclei = np.zeros((64, 64), np.uint16)
        nuclei[10:20, 10:18] = 1
        cells = np.zeros_like(nuclei)
        cells[5:25, 5:25] = 1
        cells[40:60, 40:60] = 2 + i  # site 1: a cell without a nucleus, numbered 3 > 1 nucleus
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(nuclei).save(tmp_path / "masks" / f"n{i}.png")
        Image.fromarray(cells * (i == 1)).save(tmp_path / "masks" / f"c{i}.png")
        Image.fromarray(rng.integers(0, 200, (64, 64)).astype(np.uint8)).save(tmp_path / f"s{i}_w1.png")
        rows.append(
            {
                "Metadata_Plate": "P",
                "Metadata_Well": f"A0{i + 1}",
                "Metadata_Site": 1,
                "FileName_w1": f"s{i}_w1.png",
                "PathName_w1": ".",
                "ObjectsFileName_Nuclei": f"n{i}.png",
                "ObjectsPathName_Nuclei": "masks",
                "ObjectsFileName_Cells": f"c{i}.png",
                "ObjectsPathName_Cells": "masks",
            }
        )
    csv = tmp_path / "load_data.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    params = FeatureParams(families=("intensity", "morphology"), objects=True, illum="none")
    result = extract(csv, tmp_path / "t.parquet", params=params, thumbs=None, progress=False)
    assert (result.n_ok, result.n_failed) == (1, 1)
    errors = pd.read_parquet(tmp_path / "t.errors.parquet")
    assert errors["Metadata_Well"].tolist() == ["A02"]
    assert "c1.png" in errors["error"].iloc[0] and "cell i must hold nucleus i" in errors["error"].iloc[0]
