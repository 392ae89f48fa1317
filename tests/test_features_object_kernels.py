"""The compiled per-object kernels (object_intensity.py, shape.py, outline.py) against independent references.

Shapes against :func:`skimage.measure.regionprops` and intensities against a direct
per-object numpy computation of CellProfiler's definitions, on constructed and random label
images: absent labels, objects on the image border, 1-pixel and disconnected objects, thin
images, no objects, uint8 and uint16 planes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import perimeter, regionprops
from skimage.segmentation import find_boundaries

from moa_features.features.object_intensity import INTENSITY_MEASURES
from moa_features.features.outline import outline
from moa_features.features.segmentation import COMPARTMENTS, Masks, masks_from_labels
from moa_features.features.shape import SHAPE_MEASURES, shape_measurements
from moa_features.features.site import measure_objects

from _helpers import REGIONPROPS_NAMES, cellprofiler_quantile


def random_labels(rng: np.random.Generator, shape: tuple[int, int], k: int) -> np.ndarray:
    """Blobs (dilated seeds) with holes and specks: disconnected objects, border objects, 1-pixel objects."""
    labels = np.zeros(shape, np.int32)
    seeds = rng.random(shape) < 0.02
    labels[seeds] = rng.integers(1, k + 1, seeds.sum())
    labels = ndi.grey_dilation(labels, size=int(rng.integers(2, 7)))
    labels[rng.random(shape) < 0.05] = 0  # holes
    specks = rng.random(shape) < 0.003
    labels[specks] = rng.integers(1, k + 1, specks.sum())
    return labels


def constructed_labels() -> np.ndarray:
    labels = np.zeros((30, 40), np.int32)
    labels[0:5, 0:7] = 1  # the image corner
    labels[10, 10] = 3  # one pixel; label 2 is absent
    labels[20:30, 33:40] = 4  # bottom-right corner
    labels[24:26, 35:37] = 0  # a hole
    labels[12:18, 20] = 5  # a vertical line
    labels[2, 20:30] = 6  # a horizontal line
    labels[6, 30], labels[9, 35] = 7, 7  # two separate pixels
    labels[:, 39] = np.where(labels[:, 39] == 0, 8, labels[:, 39])  # along the right border
    return labels


def label_images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    images = [constructed_labels(), np.array([[1]], np.int32), np.array([[0, 2, 2, 1, 1]], np.int32)]
    images.append(np.array([[1], [1], [0], [2]], np.int32))
    images += [random_labels(rng, (int(rng.integers(8, 70)), int(rng.integers(8, 70))), 9) for _ in range(12)]
    return images


def test_outline_equals_skimage_inner_boundaries_plus_the_image_border():
    for labels in [*label_images(), np.zeros((0, 5), np.int32), np.zeros((4, 0), np.int32)]:
        border = np.zeros(labels.shape, dtype=bool)
        if labels.size:
            border[[0, -1], :] = border[:, [0, -1]] = True
        expected = find_boundaries(labels, connectivity=1, mode="inner") | (border & (labels > 0))
        np.testing.assert_array_equal(outline(labels), expected)
        np.testing.assert_array_equal(outline(labels.astype(np.uint16)), expected)


def test_shape_measurements_equal_regionprops_object_by_object():
    for labels in label_images():
        n = int(labels.max()) + 2  # two absent labels at the end, as well as any inside
        ours = shape_measurements(labels, n)
        assert all(len(v) == n for v in ours.values())
        present = np.zeros(n, dtype=bool)
        for region in regionprops(labels):
            i = region.label - 1
            present[i] = True
            for name, ref_name in REGIONPROPS_NAMES.items():
                # abs: regionprops' axes of a line are the square root of a rounding error, ~1e-7
                assert ours[name][i] == pytest.approx(region[ref_name], rel=1e-9, abs=1e-6), name
            assert ours["Perimeter"][i] == pytest.approx(perimeter(labels == region.label, 4), rel=1e-12)
            rows, cols = np.nonzero(labels == region.label)
            assert ours["Center_X"][i] == pytest.approx(cols.mean(), rel=1e-12)
            assert ours["Center_Y"][i] == pytest.approx(rows.mean(), rel=1e-12)
            compactness = 2 * np.pi * (cols.var() + rows.var()) / len(rows)
            assert ours["Compactness"][i] == pytest.approx(compactness, rel=1e-9, abs=1e-12)
        assert (ours["Area"][~present] == 0).all()
        for name in [*SHAPE_MEASURES[1:], "Center_X", "Center_Y"]:
            assert np.isnan(ours[name][~present]).all()


def test_shape_measurements_of_no_objects_and_bad_labels():
    empty = shape_measurements(np.zeros((5, 6), np.int32), 3)
    np.testing.assert_array_equal(empty["Area"], [0, 0, 0])
    assert np.isnan(empty["Solidity"]).all() and len(shape_measurements(np.zeros((5, 6), np.int32))["Area"]) == 0
    labels = constructed_labels()
    with pytest.raises(ValueError, match="non-negative"):
        shape_measurements(labels, 3)  # labels up to 8
    with pytest.raises(ValueError, match="non-negative"):
        shape_measurements(-labels)


def reference_intensity(plane: np.ndarray, labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per object, CellProfiler's intensity measurements by direct numpy computation."""
    out = {m: np.full(n, np.nan) for m in INTENSITY_MEASURES}
    out["IntegratedIntensity"][:] = out["IntegratedIntensityEdge"][:] = 0
    border = np.zeros(labels.shape, dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    edge = find_boundaries(labels, connectivity=1, mode="inner") | border
    rows, cols = np.indices(labels.shape)
    for i in range(n):
        inside = labels == i + 1
        if not inside.any():
            continue
        values = plane[inside].astype(np.float64)
        median = cellprofiler_quantile(values, 0.5)
        out["IntegratedIntensity"][i] = values.sum()
        out["MeanIntensity"][i] = values.mean()
        out["StdIntensity"][i] = values.std()
        out["MinIntensity"][i], out["MaxIntensity"][i] = values.min(), values.max()
        out["LowerQuartileIntensity"][i] = cellprofiler_quantile(values, 0.25)
        out["MedianIntensity"][i] = median
        out["UpperQuartileIntensity"][i] = cellprofiler_quantile(values, 0.75)
        out["MADIntensity"][i] = cellprofiler_quantile(np.abs(values - median), 0.5)
        out["IntegratedIntensityEdge"][i] = plane[inside & edge].astype(np.float64).sum()
        out["MeanIntensityEdge"][i] = plane[inside & edge].astype(np.float64).mean()
        y, x = rows[inside], cols[inside]
        if values.sum() > 0:
            out["MassDisplacement"][i] = np.hypot(
                x @ values / values.sum() - x.mean(), y @ values / values.sum() - y.mean()
            )
    return out


def random_masks(rng: np.random.Generator, shape: tuple[int, int]) -> Masks:
    nuclei = random_labels(rng, shape, 8)
    nuclei[nuclei == 3] = 0  # an absent object
    cells = ndi.grey_dilation(nuclei, size=int(rng.integers(3, 9)))
    cells[rng.random(shape) < 0.03] = 0
    cells[0, :] = np.where(cells[0, :] == 0, nuclei.max(), cells[0, :])  # a cell along the image border
    return masks_from_labels(nuclei, cells)


def random_planes(rng: np.random.Generator, shape: tuple[int, int], dtype) -> np.ndarray:
    top = np.iinfo(dtype).max
    planes = [
        rng.integers(0, top, shape, endpoint=True),
        rng.integers(0, 4, shape),  # few grey levels: ties everywhere
        np.full(shape, top),  # every object at the top value
        np.zeros(shape),  # and at 0
        ndi.uniform_filter(rng.integers(0, top, shape, endpoint=True), 5),
    ]
    return np.stack(planes).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_measure_objects_intensities_equal_a_per_object_reference(dtype):
    rng = np.random.default_rng(11)
    for shape in [(40, 56), (23, 31), (64, 64)]:
        masks = random_masks(rng, shape)
        image = random_planes(rng, shape, dtype)
        channels = [f"c{i}" for i in range(len(image))]
        table = measure_objects(image, channels, masks)
        assert len(table["ObjectNumber"]) == masks.n
        for name, labels in masks.compartments().items():
            for plane, ch in zip(image, channels):
                ref = reference_intensity(plane, labels, masks.n)
                for measure in INTENSITY_MEASURES:
                    ours = table[f"{name}_Intensity_{measure}_{ch}"]
                    scale = float(np.iinfo(dtype).max)
                    np.testing.assert_allclose(
                        ours,
                        ref[measure],
                        rtol=1e-9,
                        atol=1e-6 * scale if measure == "StdIntensity" else 1e-9,
                        equal_nan=True,
                        err_msg=f"{name} {measure} {ch}",
                    )


def test_histogram_and_sorting_paths_of_measure_objects_agree():
    rng = np.random.default_rng(3)
    masks = random_masks(rng, (48, 60))
    image = random_planes(rng, (48, 60), np.uint8)
    channels = [f"c{i}" for i in range(len(image))]
    narrow = measure_objects(image, channels, masks)
    wide = measure_objects(image.astype(np.uint16), channels, masks)
    for column, values in narrow.items():
        np.testing.assert_allclose(values, wide[column], rtol=1e-12, equal_nan=True, err_msg=column)


def test_measure_objects_single_pixel_objects_and_no_cytoplasm():
    nuclei = np.zeros((6, 7), np.int32)
    nuclei[0, 0], nuclei[3, 3], nuclei[5, 6] = 1, 2, 4  # label 3 absent; corners
    image = np.arange(2 * 42, dtype=np.uint8).reshape(2, 6, 7)
    table = measure_objects(image, ["a", "b"], masks_from_labels(nuclei))
    np.testing.assert_array_equal(table["Nuclei_Intensity_IntegratedIntensity_b"], [42, 66, 0, 83])
    np.testing.assert_array_equal(table["Cells_Intensity_MedianIntensity_a"], [0, 24, np.nan, 41])
    np.testing.assert_array_equal(table["Nuclei_Intensity_MADIntensity_a"], [0, 0, np.nan, 0])
    np.testing.assert_array_equal(table["Nuclei_Intensity_IntegratedIntensityEdge_a"], [0, 24, 0, 41])
    np.testing.assert_array_equal(table["Nuclei_Intensity_MassDisplacement_b"], [0, 0, np.nan, 0])
    assert np.isnan(table["Cytoplasm_Intensity_MeanIntensity_a"]).all()
    np.testing.assert_array_equal(table["Cytoplasm_Intensity_IntegratedIntensity_a"], [0, 0, 0, 0])
    assert set(COMPARTMENTS) == {c.split("_")[0] for c in table if c.endswith("_a")}


def test_inconsistent_masks_are_refused():
    nuclei = np.zeros((8, 8), np.int32)
    nuclei[2:4, 2:4] = 1
    cells = np.zeros_like(nuclei)
    cells[1:6, 1:6] = 1
    masks = Masks(nuclei=nuclei, cells=cells, cytoplasm=np.zeros_like(nuclei))  # the cytoplasm is missing
    with pytest.raises(ValueError, match="nuclei plus cytoplasm"):
        measure_objects(np.zeros((1, 8, 8), np.uint8), ["a"], masks)
