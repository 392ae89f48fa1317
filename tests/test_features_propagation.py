"""Propagation (CellProfiler's IdentifySecondaryObjects) and its hole filling: known answers, and
pixel-for-pixel agreement with CellProfiler's own implementation (``centrosome``, when installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from moa_features.datasets import read_image
from moa_features.features.filters import fill_label_holes
from moa_features.features.propagation import propagate
from moa_features.features.segmentation import propagate_cells, segment, segment_nuclei

from _helpers import load_rxrx1_site

EXAMPLEHUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cellprofiler_examplehuman"


def random_case(rng: np.random.Generator, ties: bool):
    """A random image (with many equal values when ``ties``), a few point seeds and a ragged mask."""
    h, w = rng.integers(5, 50, 2)
    image = rng.random((h, w))
    if ties:
        image = np.round(image * 4) / 4
    seeds = np.zeros((h, w), np.int32)
    for label in range(1, int(rng.integers(2, 7))):
        seeds[rng.integers(0, h), rng.integers(0, w)] = label
    return image, seeds, rng.random((h, w)) > 0.2


def test_flat_image_splits_halfway_and_distance_is_lambda_per_step():
    seeds = np.array([[1, 0, 0, 0, 0, 0, 0, 0, 2]])
    labels, distances = propagate(np.zeros((1, 9)), seeds, np.ones((1, 9), bool), 0.5)
    assert labels.tolist() == [[1, 1, 1, 1, 1, 2, 2, 2, 2]]  # the middle pixel: equally far, the lower label
    np.testing.assert_allclose(distances[0], 0.5 * np.array([0, 1, 2, 3, 4, 3, 2, 1, 0]))  # lambda per step


def test_step_cost_sums_the_3x3_differences():
    # (0,0) -> (0,1) on a 1x2 image [0, 1]: the three clamped rows each differ by 1 once: g = 3.
    _, distances = propagate(np.array([[0.0, 1.0]]), np.array([[1, 0]]), np.ones((1, 2), bool), 0.05)
    assert distances[0, 1] == pytest.approx(np.sqrt(3.0**2 + 0.05**2))


def test_an_intensity_ridge_stops_a_nearer_seed():
    image = np.zeros((5, 11))
    image[:, 3] = 1.0  # a bright wall next to seed 1
    seeds = np.zeros((5, 11), np.int32)
    seeds[2, 1], seeds[2, 9] = 1, 2
    labels, _ = propagate(image, seeds, np.ones((5, 11), bool), 0.05)
    assert (labels[:, 4:8] == 2).all()  # beyond the wall, closer to 1 in pixels, but 2's by the metric
    without_wall, _ = propagate(np.zeros((5, 11)), seeds, np.ones((5, 11), bool), 0.05)
    assert (without_wall[:, 4] == 1).all()


def test_mask_limits_the_spread_and_seeds_keep_their_pixels():
    mask = np.ones((5, 9), bool)
    mask[:, 4] = False  # a wall of background
    seeds = np.zeros((5, 9), np.int32)
    seeds[2, 1] = 1
    seeds[0, 4] = 2  # a seed outside the mask: labelled, not spreading
    labels, distances = propagate(np.zeros((5, 9)), seeds, mask, 0.05)
    assert (labels[:, :4] == 1).all() and (labels[:, 5:] == 0).all()
    assert labels[0, 4] == 2 and (labels[1:, 4] == 0).all()
    assert (distances[:, 5:] == -1).all()


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="one shape"):
        propagate(np.zeros((3, 3)), np.zeros((3, 4), np.int32), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="regularization"):
        propagate(np.zeros((3, 3)), np.zeros((3, 3), np.int32), np.ones((3, 3), bool), -1.0)
    with pytest.raises(ValueError, match="seeds"):
        propagate(np.zeros((3, 3)), np.zeros((3, 3)), np.ones((3, 3), bool))


def test_label_holes_are_filled_only_when_one_object_encloses_them():
    labels = np.zeros((9, 9), np.int32)
    labels[1:8, 1:8] = 1
    labels[3, 3] = 0  # enclosed by 1
    labels[5:7, 5:7] = 2  # an object inside 1
    labels[4, 4] = 0  # touches 1 and 2 (4-adjacent to (5, 4)? no: to 1 only)
    labels[0, 4] = 0  # background reaching the border stays
    out = fill_label_holes(labels)
    assert out[3, 3] == 1 and out[4, 4] == 1 and out[0, 4] == 0
    between = np.zeros((3, 6), np.int32)
    between[:, :3], between[:, 3:] = 1, 2
    between[1, 2:4] = 0  # a hole touching both objects
    between = np.pad(between, 1, constant_values=1)
    np.testing.assert_array_equal(fill_label_holes(between)[2, 3:5], [0, 0])


def test_propagated_cells_fill_their_thresholded_body():
    nuclei = np.zeros((40, 60), np.int32)
    nuclei[18:22, 12:16], nuclei[18:22, 42:46] = 1, 2
    cell = np.zeros((40, 60), np.uint8)
    cell[8:32, 4:56] = 120
    cell[20, 10] = 0  # a dark pixel inside cell 1: a hole, filled
    labels = propagate_cells(cell, nuclei)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[8:32, 4:56] > 0).all() and (labels[cell == 0] == 0).sum() == labels.size - 24 * 52
    assert labels[20, 10] == 1
    assert np.abs(np.flatnonzero(np.diff(labels[20, 4:56]))[0] - 25) <= 1  # the boundary halfway between nuclei


# --- CellProfiler's own implementation -------------------------------------------------------


@pytest.fixture(scope="module")
def centrosome():
    return pytest.importorskip("centrosome.propagate", reason="centrosome (CellProfiler's library) not installed")


@pytest.mark.parametrize("regularization", [0.0, 0.05, 1.0, 10.0])
def test_labels_and_distances_equal_centrosome_on_random_images(centrosome, regularization):
    rng = np.random.default_rng(int(regularization * 100))
    for trial in range(25):
        image, seeds, mask = random_case(rng, ties=trial % 2 == 0)
        theirs, their_distances = centrosome.propagate(image, seeds, mask, regularization)
        ours, distances = propagate(image, seeds, mask, regularization)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(distances, their_distances)


def test_label_holes_equal_centrosome_fill_labeled_holes(centrosome):
    from centrosome.cpmorphology import fill_labeled_holes

    rng = np.random.default_rng(3)
    for _ in range(100):
        labels = ndi.grey_dilation(rng.integers(0, 4, (30, 30)) * (rng.random((30, 30)) > 0.5), size=2)
        labels = (labels * (rng.random((30, 30)) > 0.3)).astype(np.int32)
        np.testing.assert_array_equal(fill_label_holes(labels), fill_labeled_holes(labels))


@pytest.fixture(scope="module")
def examplehuman():
    if not (EXAMPLEHUMAN / "Cells.csv").exists():
        pytest.skip(f"ExampleHuman data not found at {EXAMPLEHUMAN}")
    return np.stack([read_image(EXAMPLEHUMAN / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)])


def test_examplehuman_cells_equal_cellprofilers_pipeline_of_centrosome(centrosome, examplehuman):
    """IdentifySecondaryObjects as CellProfiler runs it, composed of centrosome's functions: MCE threshold
    x 0.8 of the 0..1 plane, propagate with lambda 0.05, fill_labeled_holes."""
    from centrosome.cpmorphology import fill_labeled_holes
    from skimage.filters import threshold_li

    nuclei = segment_nuclei(examplehuman[0], threshold="li")
    plane = examplehuman[2] / 255.0
    theirs, _ = centrosome.propagate(plane, nuclei, plane >= 0.8 * threshold_li(plane), 0.05)
    theirs = fill_labeled_holes(theirs)
    np.testing.assert_array_equal(propagate_cells(examplehuman[2], nuclei, "li"), theirs)


def test_segment_chooses_the_secondary_method(examplehuman):
    options = {"threshold": "li", "min_diameter": 8, "max_diameter": 80}
    default, watershed = segment(examplehuman, **options), segment(examplehuman, cells="watershed", **options)
    np.testing.assert_array_equal(default.nuclei, watershed.nuclei)
    assert (default.cells != watershed.cells).mean() > 0.01
    with pytest.raises(ValueError, match="cells must be one of"):
        segment(examplehuman, cells="voronoi")


@pytest.mark.parametrize("experiment", ["HUVEC-01", "U2OS-01"])
def test_real_sites_cells_equal_centrosome_label_for_label(centrosome, experiment):
    """The prefetching kernel on real sites (hundreds of cells growing at once, every seed phase and
    tie-breaking path): labels and distances equal CellProfiler's propagate, on the whole image and
    with a 4-pixel-wide cut of background through it."""
    image = load_rxrx1_site(experiment)
    nuclei = segment_nuclei(image[0])
    plane = image[1] / 255.0
    for mask in (plane >= 0.8 * threshold_otsu(plane), np.ones(plane.shape, bool)):
        mask = mask.copy()
        mask[:, 250:254] = False
        theirs, their_distances = centrosome.propagate(plane, nuclei, mask, 0.05)
        ours, distances = propagate(plane, nuclei, mask, 0.05)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(distances, their_distances)


def test_otsu_of_the_scaled_plane_from_grey_level_counts():
    """The cell threshold from the plane's grey-level counts equals scikit-image's Otsu of the
    scaled plane, on real planes and on constructed 8- and 16-bit ones (gaps, two values)."""
    from moa_features.features.segmentation import _scaled_otsu

    rng = np.random.default_rng(5)
    planes = [plane for experiment in ("HUVEC-01", "U2OS-01") for plane in load_rxrx1_site(experiment)]
    planes += [
        rng.integers(0, 65536, (60, 50)).astype(np.uint16),
        rng.gamma(2.0, 500.0, (128, 128)).clip(0, 65535).astype(np.uint16),
        rng.integers(3, 9, (40, 40)).astype(np.uint8),
        np.where(rng.random((30, 30)) > 0.5, 200, 7).astype(np.uint8),
    ]
    for plane in planes:
        expected = threshold_otsu(plane / float(np.iinfo(plane.dtype).max))
        assert _scaled_otsu(plane) == expected


def test_prefetch_changes_no_value():
    import numba

    from moa_features.features.propagation import prefetch

    @numba.njit
    def total(values):
        out = 0.0
        for i in range(values.size):
            prefetch(values, i + 64)  # ahead of the loop, past the end at its close: harmless
            prefetch(values, i - 64)
            out += values[i]
        return out

    values = np.random.default_rng(0).random(1000)
    assert total(values) == sum(values.tolist())  # the same sum, in the same order


def test_the_command_line_selects_the_secondary_method_and_refuses_a_negative_lambda():
    from moa_features.calibration import check_params
    from moa_features.datasets import DatasetError
    from moa_features.extraction.cli import build_parser, feature_params

    default = feature_params(build_parser().parse_args(["in.csv"]))
    assert (default.cells, default.regularization) == ("propagation", 0.05)
    chosen = feature_params(build_parser().parse_args(["in.csv", "--cells", "watershed", "--regularization", "0.2"]))
    assert (chosen.cells, chosen.regularization) == ("watershed", 0.2)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["in.csv", "--cells", "voronoi"])
    with pytest.raises(DatasetError, match="--regularization"):
        check_params(feature_params(build_parser().parse_args(["in.csv", "--regularization", "-1"])))
