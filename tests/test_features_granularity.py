"""Granularity (CellProfiler MeasureGranularity): per object against cp-measure, per image against
CellProfiler's image-level steps written out with scipy and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from _parity import EXAMPLEHUMAN, assert_close, contiguous, examplehuman, synthetic_image, synthetic_labels

from moa_features.features.granularity import granularity, granularity_objects, reconstruct

needs_examplehuman = pytest.mark.skipif(
    not (EXAMPLEHUMAN / "Nuclei.csv").exists(), reason=f"ExampleHuman data not found at {EXAMPLEHUMAN}"
)


def cellprofiler_image_granularity(pixels: np.ndarray, length: int = 16) -> np.ndarray:
    """MeasureGranularity's image measurement (CellProfiler 4, defaults 0.25 / 0.25 / 10), step by step."""
    import scipy.ndimage
    import skimage.morphology

    shape = np.array(pixels.shape)
    new_shape = shape * 0.25
    i, j = np.mgrid[0 : new_shape[0], 0 : new_shape[1]].astype(float) / 0.25
    pixels = scipy.ndimage.map_coordinates(pixels, (i, j), order=1)
    back_shape = new_shape * 0.25
    i, j = np.mgrid[0 : back_shape[0], 0 : back_shape[1]].astype(float) / 0.25
    back = scipy.ndimage.map_coordinates(pixels, (i, j), order=1)
    disk = skimage.morphology.disk(10, dtype=bool)
    back = skimage.morphology.dilation(skimage.morphology.erosion(back, footprint=disk), footprint=disk)
    i, j = np.mgrid[0 : new_shape[0], 0 : new_shape[1]].astype(float)
    i *= float(back_shape[0] - 1) / float(new_shape[0] - 1)
    j *= float(back_shape[1] - 1) / float(new_shape[1] - 1)
    pixels = pixels - scipy.ndimage.map_coordinates(back, (i, j), order=1)
    pixels[pixels < 0] = 0
    start = current = pixels.mean()
    ero, out = pixels.copy(), []
    cross = skimage.morphology.disk(1, dtype=bool)
    for _ in range(length):
        ero = skimage.morphology.erosion(ero, footprint=cross)
        rec = skimage.morphology.reconstruction(ero, pixels, footprint=cross)
        out.append((current - rec.mean()) * 100 / start)
        current = rec.mean()
    return np.array(out)


def test_reconstruction_equals_scikit_image():
    from skimage.morphology import disk, reconstruction

    rng = np.random.default_rng(0)
    mask = rng.random((70, 90))
    seed = np.minimum(mask, rng.random((70, 90)) * 0.5)
    assert np.array_equal(reconstruct(seed, mask), reconstruction(seed, mask, footprint=disk(1)))


def test_isolated_single_pixels_vanish_at_size_one():
    plane = np.zeros((64, 64))
    plane[::8, ::8] = 1.0
    spectrum, _ = granularity(plane, subsample=1.0, background_sample=1.0, spectrum_length=3)
    assert spectrum.tolist() == pytest.approx([100.0, 0.0, 0.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_image_spectrum_equals_cellprofilers_steps(seed):
    labels = synthetic_labels(seed, shape=(256, 200))
    plane = synthetic_image(labels, seed)[0].astype(np.float64) / 255
    spectrum, _ = granularity(plane)
    assert_close(spectrum, cellprofiler_image_granularity(plane), "image spectrum", rtol=1e-6, atol=1e-9)


def _compare(labels: dict[str, np.ndarray], n: int, plane: np.ndarray) -> None:
    cp = pytest.importorskip("cp_measure.core.measuregranularity")
    _, per_object = granularity(plane, granularity_objects(labels, n))
    for name, lab in labels.items():
        kept = np.unique(lab[lab > 0]) - 1  # cp-measure needs labels 1..k: compare the objects present
        theirs = cp.get_granularity(contiguous(lab), plane)
        assert len(theirs) == 16
        for k in range(16):
            # atol (in percent): the spectrum's tail is round-off around 0 on both sides
            assert_close(per_object[name][kept, k], theirs[f"Granularity_{k + 1}"], f"{name} {k + 1}", atol=1e-9)


def test_per_object_equals_cp_measure_on_synthetic_objects():
    labels = synthetic_labels(0, shape=(256, 200))
    plane = synthetic_image(labels, 0)[1].astype(np.float64) / 255
    _compare({"objects": labels}, int(labels.max()), plane)


@needs_examplehuman
def test_per_object_equals_cp_measure_on_examplehuman_masks():
    image, masks, _ = examplehuman()
    for c in (0, 1):
        _compare(masks.compartments(), masks.n, image[c].astype(np.float64) / 255)


def test_cells_as_the_union_of_disjoint_parts_equal_cells_measured_directly():
    cells = synthetic_labels(4, shape=(128, 160))
    inner = (np.roll(cells, 3, axis=0) == cells) & (np.roll(cells, -3, axis=0) == cells)
    nuclei = np.where(inner, cells, 0)
    for k in range(1, int(cells.max()) + 1):  # every cell keeps a nucleus, at least its first pixel
        nuclei.ravel()[np.flatnonzero(cells.ravel() == k)[0]] = k
    rest = np.where(nuclei > 0, 0, cells)  # disjoint parts (CellProfiler's cytoplasm keeps the nuclear rim)
    n = int(cells.max())
    plane = synthetic_image(cells, 4)[0]
    direct = granularity_objects({"Cells": cells}, n)
    union = granularity_objects({"Nuclei": nuclei, "Rest": rest}, n, unions={"Cells": ("Nuclei", "Rest")})
    assert_close(granularity(plane, union)[1]["Cells"], granularity(plane, direct)[1]["Cells"], "Cells", atol=1e-9)
