"""Tests of the morphology feature family (segmentation, shape and intensity per object, aggregation)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse
from skimage.measure import regionprops_table

from moa_features.features.catalog import pattern_regex
from moa_features.features.morphology import FEATURE_DOCS, morphology_features
from moa_features.features.outline import shrink_outline
from moa_features.features.segmentation import filter_objects, segment_cells, segment_nuclei
from moa_features.features.shape import SHAPE_MEASURES, shape_measurements

from _helpers import REGIONPROPS_NAMES, load_rxrx1_site

CHANNELS6 = [f"w{i}" for i in range(1, 7)]


def load_site(experiment: str, plate: int, site: int = 1, channels: int = 6) -> np.ndarray:
    """A real rxrx1 site as a (C, 512, 512) uint8 array."""
    return load_rxrx1_site(experiment, plate, site=site)[:channels]  # skips when the site is not available


def disks_image(radius: float, centres, shape=(200, 200), value=200) -> np.ndarray:
    plane = np.zeros(shape, dtype=np.uint8)
    for centre in centres:
        rr, cc = disk(centre, radius, shape=shape)
        plane[rr, cc] = value
    return plane


def three_channel(nuclear: np.ndarray, cell_radius: float, centres) -> np.ndarray:
    """Nuclear plane + a cell-body plane of disks around the same centres + a blank plane."""
    return np.stack([nuclear, disks_image(cell_radius, centres, nuclear.shape, 120), np.zeros_like(nuclear)])


GRID = [(40, 40), (40, 160), (160, 40), (160, 160), (100, 100)]


@pytest.fixture(scope="module")
def huvec() -> np.ndarray:
    return load_site("HUVEC-01", 1)  # vendored in tests/data


def test_disks_count_area_and_shape():
    r = 10
    image = three_channel(disks_image(r, GRID), 20, GRID)
    nuclei = segment_nuclei(image[0])
    assert nuclei.dtype == np.int32 and nuclei.max() == len(GRID)
    f = morphology_features(image, ["w1", "w2", "w3"], nuclear_channel=0, cell_channel=1)
    assert f["Nuclei_Count"] == len(GRID) and "Cells_Count" not in f
    assert f["Nuclei_AreaShape_Area_Median"] == pytest.approx(np.pi * r**2, rel=0.03)
    ref = regionprops_table(nuclei, properties=("area", "solidity", "eccentricity"))
    assert f["Nuclei_AreaShape_Area_Mean"] == pytest.approx(ref["area"].mean(), rel=1e-12)
    assert f["Nuclei_AreaShape_Eccentricity_Mean"] < 0.05
    assert f["Nuclei_AreaShape_FormFactor_Mean"] == pytest.approx(1.0, abs=0.05)
    assert f["Nuclei_AreaShape_Solidity_Mean"] > 0.95
    assert f["Nuclei_AreaShape_Area_Std"] == pytest.approx(0.0, abs=1e-9)
    # Propagation (the default) thresholds the raw cell plane: cells are the painted disks.
    assert f["Cells_AreaShape_Area_Median"] == np.count_nonzero(image[1]) / len(GRID)
    rim = np.count_nonzero(shrink_outline(nuclei)) / len(GRID)
    assert f["Cytoplasm_AreaShape_Area_Median"] == (
        f["Cells_AreaShape_Area_Median"] - f["Nuclei_AreaShape_Area_Median"] + rim
    )
    # The watershed's cell foreground is thresholded at half of Otsu: cells reach ~1 px past the edge.
    w = morphology_features(image, ["w1", "w2", "w3"], nuclear_channel=0, cell_channel=1, cells="watershed")
    assert np.pi * 20**2 <= w["Cells_AreaShape_Area_Median"] <= np.pi * 21.5**2
    assert w["Nuclei_AreaShape_Area_Median"] / w["Cells_AreaShape_Area_Median"] == pytest.approx(
        (r / 21) ** 2, rel=0.05
    )
    assert f["Image_AreaOccupied_Fraction_Nuclei"] == pytest.approx(len(GRID) * np.pi * r**2 / 200**2, rel=0.05)


@pytest.mark.parametrize("a, b, angle", [(16, 8, 0.0), (15, 5, 0.7), (12, 10, 1.9)])
def test_ellipse_eccentricity_and_axes(a, b, angle):
    plane = np.zeros((120, 120), dtype=np.uint8)
    rr, cc = ellipse(60, 60, a, b, shape=plane.shape, rotation=angle)
    plane[rr, cc] = 180
    nuclei = segment_nuclei(plane)
    assert nuclei.max() == 1
    m = shape_measurements(nuclei)
    assert m["Eccentricity"][0] == pytest.approx(np.sqrt(1 - (b / a) ** 2), abs=0.03)
    # The ellipse with the same second moments as a filled ellipse has its semi-axes.
    assert m["MajorAxisLength"][0] == pytest.approx(2 * a, rel=0.06)
    assert m["MinorAxisLength"][0] == pytest.approx(2 * b, rel=0.1)


@pytest.mark.parametrize("radius, gap", [(10, 18), (12, 20), (20, 34)])
def test_touching_disks_are_split(radius, gap):
    centres = [(60, 60), (60, 60 + gap)]
    plane = disks_image(radius, centres, shape=(120, 140))
    nuclei = segment_nuclei(plane)
    assert nuclei.max() == 2
    # Each nucleus holds exactly one of the disk centres.
    assert sorted(nuclei[c] for c in centres) == [1, 2]
    areas = np.bincount(nuclei.ravel())[1:]
    assert areas == pytest.approx([np.pi * radius**2] * 2, rel=0.1)


def test_single_irregular_nucleus_is_not_split():
    plane = np.zeros((100, 100), dtype=np.uint8)
    rr, cc = ellipse(50, 50, 18, 11, shape=plane.shape)
    plane[rr, cc] = 150
    rr, cc = disk((50, 36), 6, shape=plane.shape)  # a bulge, not a second nucleus
    plane[rr, cc] = 150
    assert segment_nuclei(plane).max() == 1


def test_empty_site_gives_zero_counts_and_nan_statistics():
    image = np.zeros((6, 64, 64), dtype=np.uint16)
    image[2] = 500  # a cell channel with signal but no nuclei
    f = morphology_features(image, CHANNELS6)
    assert f["Nuclei_Count"] == 0
    assert f["Image_AreaOccupied_Fraction_Cells"] == 0
    stats = {k: v for k, v in f.items() if k.endswith(("_Mean", "_Std", "_Median"))}
    assert stats and all(np.isnan(v) for v in stats.values())
    assert set(f) == set(morphology_features(load_site("U2OS-01", 1), CHANNELS6))


def test_intensity_means_equal_painted_constants():
    # Square nuclei and cells; the marker is painted 800 on the segmented nuclei (Gaussian
    # smoothing moves the thresholded edge by up to a pixel) and 300 everywhere else; "inner"
    # is 800 inside the nuclei but their rim, which the cytoplasm shares (CellProfiler's).
    shape = (200, 200)
    nuclear, cell, marker, second, inner = (np.zeros(shape, dtype=np.uint16) for _ in range(5))
    for cy, cx in GRID[:4]:
        cell[cy - 25 : cy + 25, cx - 25 : cx + 25] = 1200
        nuclear[cy - 10 : cy + 10, cx - 10 : cx + 10] = 2000
    nuclei = segment_nuclei(nuclear)
    assert nuclei.max() == 4 and np.all(nuclear[nuclei > 0] > 0)
    marker[:] = 300
    marker[nuclei > 0] = 800
    second[:] = 500
    inner[:] = 300
    inner[(nuclei > 0) & ~shrink_outline(nuclei)] = 800
    image = np.stack([nuclear, cell, marker, second, inner])
    f = morphology_features(image, ["dna", "actin", "marker", "flat", "inner"], nuclear_channel=0, cell_channel=1)
    assert f["Nuclei_Count"] == 4
    assert f["Nuclei_AreaShape_Area_Mean"] == pytest.approx(400, rel=0.2)
    for stat in ("Mean", "Median"):
        for measure in ("MeanIntensity", "MedianIntensity", "MinIntensity", "MaxIntensity", "MeanIntensityEdge"):
            assert f[f"Nuclei_Intensity_{measure}_marker_{stat}"] == pytest.approx(800, abs=1e-9)
            assert f[f"Cytoplasm_Intensity_{measure}_inner_{stat}"] == pytest.approx(300, abs=1e-9)
            assert f[f"Cells_Intensity_{measure}_flat_{stat}"] == pytest.approx(500)
        assert f[f"Nuclei_Intensity_MADIntensity_marker_{stat}"] == 0
        assert f[f"Nuclei_Intensity_MassDisplacement_flat_{stat}"] == pytest.approx(0, abs=1e-9)
    assert f["Nuclei_Intensity_IntegratedIntensity_marker_Mean"] == pytest.approx(800 * f["Nuclei_AreaShape_Area_Mean"])
    cell_area = f["Cells_AreaShape_Area_Mean"]
    nuc_area = f["Nuclei_AreaShape_Area_Mean"]
    expected_cell_mean = (nuc_area * 800 + (cell_area - nuc_area) * 300) / cell_area
    assert f["Cells_Intensity_MeanIntensity_marker_Mean"] == pytest.approx(expected_cell_mean)


def test_cells_contain_their_nucleus(huvec):
    nuclei = segment_nuclei(huvec[0])
    cells = segment_cells(huvec[2], nuclei)
    inside = nuclei > 0
    assert np.array_equal(cells[inside], nuclei[inside])
    assert cells.max() == nuclei.max()
    assert set(np.unique(cells)) == set(range(nuclei.max() + 1))


def test_shape_measurements_agree_with_regionprops_on_real_site(huvec):
    nuclei = segment_nuclei(huvec[0])
    cells = segment_cells(huvec[2], nuclei)
    for labels in (nuclei, cells):
        ours = shape_measurements(labels)
        ref = regionprops_table(labels, properties=tuple(REGIONPROPS_NAMES.values()))
        for ours_name, ref_name in REGIONPROPS_NAMES.items():
            np.testing.assert_allclose(ours[ours_name], ref[ref_name], rtol=1e-9, atol=1e-9, err_msg=ours_name)
        np.testing.assert_allclose(ours["FormFactor"], 4 * np.pi * ref["area"] / ref["perimeter"] ** 2, rtol=1e-9)
    f = morphology_features(huvec, CHANNELS6)
    kept, _ = filter_objects(nuclei)  # border nuclei are excluded by default
    ref = regionprops_table(kept, properties=("area", "solidity"))
    assert f["Nuclei_AreaShape_Area_Median"] == np.median(ref["area"])
    assert f["Nuclei_AreaShape_Solidity_Std"] == pytest.approx(np.std(ref["solidity"]))


def test_shape_measurements_handle_absent_labels_and_edges():
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[0:5, 0:7] = 1  # touches the image corner
    labels[10, 10] = 3  # a single pixel; label 2 is absent
    labels[20:30, 25:30] = 4
    labels[24:26, 27:29] = 0  # a hole
    m = shape_measurements(labels)
    present = [0, 2, 3]
    ref = regionprops_table(labels, properties=tuple(REGIONPROPS_NAMES.values()))
    for ours_name, ref_name in REGIONPROPS_NAMES.items():
        np.testing.assert_allclose(m[ours_name][present], ref[ref_name], rtol=1e-12, err_msg=ours_name)
    assert m["Area"][1] == 0 and all(np.isnan(m[k][1]) for k in SHAPE_MEASURES[1:])


@pytest.fixture(scope="module")
def cell_type_sites() -> dict[str, list[dict[str, float]]]:
    return {  # load_site skips when ../shared/data is absent (HEPG2 and plates 2-4 are not vendored)
        exp: [morphology_features(load_site(exp, plate), CHANNELS6) for plate in (1, 2, 3, 4)]
        for exp in ("HEPG2-01", "HUVEC-01")
    }


def test_real_counts_are_plausible_and_cell_types_differ(cell_type_sites):
    # Seen on all 36 rxrx1 sites (512x512): 76-494 nuclei; HEPG2 (dense, small nuclei,
    # median area 97-171 px² in HEPG2-01) vs HUVEC (90-127 nuclei, 350-385 px²).
    for sites in cell_type_sites.values():
        for f in sites:
            assert 50 <= f["Nuclei_Count"] <= 700
            assert 0.3 <= f["Image_AreaOccupied_Fraction_Cells"] <= 1.0
            assert 0 < f["Nuclei_AreaShape_Area_Median"] < f["Cells_AreaShape_Area_Median"]
    hepg2 = [f["Nuclei_AreaShape_Area_Median"] for f in cell_type_sites["HEPG2-01"]]
    huvec = [f["Nuclei_AreaShape_Area_Median"] for f in cell_type_sites["HUVEC-01"]]
    assert max(hepg2) < 0.7 * min(huvec)
    assert min(f["Nuclei_Count"] for f in cell_type_sites["HEPG2-01"]) > 2 * max(
        f["Nuclei_Count"] for f in cell_type_sites["HUVEC-01"]
    )
    assert all(100 <= a <= 600 for a in huvec)  # ~11-28 px across


def test_upsampled_site_scales_as_expected(huvec):
    """A 2x upsampled site (the full-size 1024x1024 scale) gives the same nuclei, 4x the area."""
    small = morphology_features(huvec, CHANNELS6)
    big = morphology_features(np.repeat(np.repeat(huvec, 2, axis=1), 2, axis=2), CHANNELS6)
    assert big["Nuclei_Count"] == pytest.approx(small["Nuclei_Count"], rel=0.1)
    assert big["Nuclei_AreaShape_Area_Median"] == pytest.approx(4 * small["Nuclei_AreaShape_Area_Median"], rel=0.1)
    assert big["Nuclei_AreaShape_FormFactor_Median"] == pytest.approx(
        small["Nuclei_AreaShape_FormFactor_Median"], rel=0.1
    )


def test_deterministic(huvec):
    a = morphology_features(huvec, CHANNELS6)
    b = morphology_features(huvec.copy(), CHANNELS6)
    assert list(a) == list(b)
    np.testing.assert_array_equal(np.array(list(a.values())), np.array(list(b.values())))


def test_translation_with_dark_border_leaves_counts_and_areas_unchanged(huvec):
    image = np.zeros_like(huvec)
    image[:, 40:-40, 40:-40] = huvec[:, 40:-40, 40:-40]
    shifted = np.roll(image, (17, -23), axis=(1, 2))
    for a, b in ((segment_nuclei(image[0]), segment_nuclei(shifted[0])),):
        assert a.max() == b.max() > 50
        np.testing.assert_array_equal(np.sort(np.bincount(a.ravel())[1:]), np.sort(np.bincount(b.ravel())[1:]))
    fa, fb = morphology_features(image, CHANNELS6), morphology_features(shifted, CHANNELS6)
    for key in (
        "Nuclei_Count",
        "Nuclei_AreaShape_Area_Mean",
        "Cells_AreaShape_Area_Mean",
        "Cells_AreaShape_Solidity_Median",
        "Cytoplasm_Intensity_MeanIntensity_w5_Mean",
    ):
        assert fa[key] == pytest.approx(fb[key], rel=1e-12), key


def test_feature_docs_cover_every_feature(huvec):
    f = morphology_features(huvec, CHANNELS6)
    patterns = [pattern_regex(p) for p, _, _ in FEATURE_DOCS]
    undocumented = [k for k in f if not any(p.match(k) for p in patterns)]
    assert not undocumented
    assert all(unit and definition for _, unit, definition in FEATURE_DOCS)
    assert all(isinstance(v, float) for v in f.values())
    assert "Nuclei_AreaShape_Area_Median" in f and "Cells_AreaShape_FormFactor_Mean" in f
    assert "Nuclei_AreaShape_Eccentricity_Std" in f and "Cytoplasm_Intensity_MeanIntensity_w5_Median" in f


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="channels"):
        morphology_features(np.zeros((3, 10, 10), np.uint8), CHANNELS6)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        morphology_features(np.zeros((1, 10, 10), np.float32), ["w1"], 0, 0)
    with pytest.raises(ValueError, match="cell_channel=2"):
        morphology_features(np.zeros((2, 10, 10), np.uint8), ["w1", "w2"])
    with pytest.raises(ValueError, match="2-D"):
        segment_nuclei(np.zeros((2, 10, 10)))
    with pytest.raises(ValueError, match="differs"):
        segment_cells(np.zeros((10, 10)), np.zeros((10, 11), np.int32))


def test_cells_equal_a_plain_watershed_of_the_whole_foreground(huvec):
    """Flooding only from nucleus borders gives exactly the watershed seeded by whole nuclei,
    and that is skimage's float watershed but for gradient ties within 1/65535 of the range."""
    from scipy import ndimage as ndi
    from skimage import segmentation as skseg
    from skimage.filters import sobel, threshold_otsu

    from moa_features.features.segmentation import _quantise
    from moa_features.features.watershed import watershed

    nuclei = segment_nuclei(huvec[0])
    smoothed = ndi.gaussian_filter(huvec[2].astype(np.float32), 1.0)
    foreground = (nuclei > 0) | (smoothed > 0.5 * threshold_otsu(smoothed))
    cells = segment_cells(huvec[2], nuclei)
    np.testing.assert_array_equal(cells, watershed(_quantise(sobel(smoothed)), nuclei, mask=foreground))
    assert (cells == skseg.watershed(sobel(smoothed), nuclei, mask=foreground))[foreground].mean() > 0.9999


def test_distance_transform_equals_scipy_on_border_touching_nuclei(huvec):
    from scipy import ndimage as ndi

    from moa_features.features.filters import squared_distance

    foreground = segment_nuclei(huvec[0]) > 0
    assert foreground[0].any() or foreground[-1].any() or foreground[:, 0].any() or foreground[:, -1].any()
    np.testing.assert_array_equal(np.sqrt(squared_distance(foreground)), ndi.distance_transform_edt(foreground))


def _merge_reference(fragments: np.ndarray, squared: np.ndarray, neck_ratio: float) -> np.ndarray:
    """The neck merge written plainly over whole arrays (the implementation before the compiled pass)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, dist = int(fragments.max()), np.sqrt(squared)
    peak = np.zeros(n + 1)
    np.maximum.at(peak, fragments.ravel(), dist.ravel())
    peak[0] = 0
    necks: dict[tuple[int, int], float] = {}
    for a, b, da, db in (
        (fragments[:, :-1], fragments[:, 1:], dist[:, :-1], dist[:, 1:]),
        (fragments[:-1, :], fragments[1:, :], dist[:-1, :], dist[1:, :]),
    ):
        touch = (a != b) & (a > 0) & (b > 0)
        for x, y, v in zip(a[touch], b[touch], np.minimum(da[touch], db[touch])):
            pair = (min(x, y), max(x, y))
            necks[pair] = max(necks.get(pair, 0.0), v)
    merge = [(a, b) for (a, b), v in necks.items() if v >= neck_ratio * min(peak[a], peak[b])]
    rows, cols = np.array([m[0] for m in merge], int), np.array([m[1] for m in merge], int)
    _, component = connected_components(coo_matrix((np.ones(len(merge)), (rows, cols)), shape=(n + 1, n + 1)))
    present = np.flatnonzero(peak > 0)
    mapping = np.zeros(n + 1, np.int32)
    mapping[present] = np.unique(component[present], return_inverse=True)[1] + 1
    return mapping[fragments]


@pytest.mark.parametrize("ratio", [0.5, 0.85, 1.0])
def test_neck_merge_equals_the_plain_computation(huvec, ratio):
    from scipy import ndimage as ndi

    from moa_features.features.filters import squared_distance
    from moa_features.features.segmentation import _merge_wide_necks
    from moa_features.features.watershed import watershed

    rng = np.random.default_rng(int(ratio * 10))
    cases = []
    for plane in (huvec[0], np.zeros((90, 120), np.uint8)):
        if not plane.any():  # constructed: overlapping disks, some with wide and some with narrow necks
            for _ in range(12):
                plane[disk((rng.integers(10, 80), rng.integers(10, 110)), rng.integers(4, 12), shape=plane.shape)] = 200
        foreground = ndi.binary_fill_holes(ndi.gaussian_filter(plane, 1.0) > 12)
        squared = squared_distance(foreground)
        markers, _ = ndi.label(ndi.maximum_filter(squared, size=5) == squared)
        fragments = watershed((squared.max() - squared).astype(np.int32), markers * foreground, mask=foreground)
        cases.append((fragments, squared))
    for fragments, squared in cases:
        assert fragments.max() > 5
        expected = _merge_reference(fragments, squared, ratio)
        np.testing.assert_array_equal(_merge_wide_necks(fragments, squared, ratio), expected)
