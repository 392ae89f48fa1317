"""Texture family: GLCM conventions, known answers, agreement with scikit-image, mahotas and skimage LBP."""

from __future__ import annotations

import mahotas
import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from moa_features.features.catalog import pattern_regex
from moa_features.features.texture import (
    ANGLES,
    FEATURE_DOCS,
    HARALICK,
    glcm,
    glcm_features,
    lbp_histogram,
    local_binary_pattern_uniform,
    quantize,
    texture_features,
)

from _helpers import load_rxrx1_site

CHANNELS = [f"w{i}" for i in range(1, 7)]
SKIMAGE_ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]  # the same offsets as ANGLES


@pytest.fixture(scope="module")
def real_planes() -> list[np.ndarray]:
    """Real RxRx1 channels w1, w3, w5 from two cell types (uint8, 512x512; vendored in tests/data)."""
    return [load_rxrx1_site(exp)[c - 1] for exp in ("HUVEC-01", "U2OS-01") for c in (1, 3, 5)]


def _stack(q: np.ndarray, levels: int, distance: int) -> np.ndarray:
    return np.array([glcm(q, levels, distance, angle) for angle in ANGLES])


def test_quantize_is_fixed_not_rescaled():
    v8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(quantize(v8, 32), v8 // 8)
    dim = np.full((4, 4), 20, dtype=np.uint8)  # a dim image stays dim: no min/max stretching
    assert (quantize(dim, 32) == 2).all()
    v16 = np.array([[0, 2047, 2048, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(quantize(v16, 32), [[0, 0, 1, 31]])
    with pytest.raises(ValueError, match="levels"):
        quantize(v8, 1)


def test_glcm_matches_skimage_and_mahotas_per_direction(real_planes):
    for plane in real_planes[:3]:
        q = quantize(plane, 32)
        ref = graycomatrix(q, [1], SKIMAGE_ANGLES, levels=32, symmetric=True)
        for k, angle in enumerate(ANGLES):
            P = glcm(q, 32, 1, angle)
            np.testing.assert_array_equal(P, ref[:, :, 0, k])
            assert (P == P.T).all() and P.sum() == 2 * _pair_count(q.shape, 1, angle)
        # Beyond distance 1 the diagonal offset is (d, d), as mahotas/IBSI/CellProfiler
        # (scikit-image rounds d*cos, d*sin instead, so its diagonals differ there).
        levels = int(q.max()) + 1
        for k, angle in enumerate(ANGLES):
            expected = mahotas.features.texture.cooccurence(q, k, symmetric=True, distance=3)
            np.testing.assert_array_equal(glcm(q, levels, 3, angle), expected)


def _pair_count(shape: tuple[int, int], d: int, angle: int) -> int:
    dr, dc = {0: (0, d), 45: (d, d), 90: (d, 0), 135: (d, -d)}[angle]
    return (shape[0] - abs(dr)) * (shape[1] - abs(dc))


def test_glcm_mask_counts_only_pairs_inside():
    rng = np.random.default_rng(5)
    q = rng.integers(0, 6, size=(9, 11))
    mask = rng.random((9, 11)) > 0.3
    for angle in ANGLES:
        dr, dc = {0: (0, 2), 45: (2, 2), 90: (2, 0), 135: (2, -2)}[angle]
        expected = np.zeros((6, 6), dtype=np.int64)
        for r in range(9):
            for c in range(11):
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < 9 and 0 <= c2 < 11 and mask[r, c] and mask[r2, c2]:
                    expected[q[r, c], q[r2, c2]] += 1
                    expected[q[r2, c2], q[r, c]] += 1
        np.testing.assert_array_equal(glcm(q, 6, 2, angle, mask=mask), expected)


def test_glcm_rejects_unquantised_values():
    with pytest.raises(ValueError, match="quantize"):
        glcm(np.array([[0, 40]]), 32)
    with pytest.raises(ValueError, match="angle"):
        glcm(np.zeros((3, 3), dtype=int), 4, 1, 30)


def test_constant_image_known_answers():
    feats = glcm_features(_stack(quantize(np.full((20, 20), 77, dtype=np.uint8), 32), 32, 1))
    assert np.allclose(feats["angular_second_moment"], 1.0)
    assert np.allclose(feats["contrast"], 0.0) and np.allclose(feats["joint_entropy"], 0.0)
    assert np.allclose(feats["correlation"], 1.0)  # mahotas/skimage convention for zero variance
    assert np.allclose(feats["information_correlation_1"], 0.0)
    assert np.allclose(feats["joint_average"], 77 // 8)


def test_empty_glcm_is_nan():
    feats = glcm_features(np.zeros((4, 4)))
    assert all(np.isnan(v) for v in feats.values())


@pytest.mark.parametrize("n", [8, 9, 16])
def test_checkerboard_known_answers(n):
    board = (np.indices((n, n)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 0/255 -> levels 0/31
    q = quantize(board, 32)
    # Diagonal pairs join equal colours: (n-1)^2 pairs, the even squares start ceil((n-1)^2/2) of them.
    pairs = (n - 1) ** 2
    even = (pairs + 1) // 2
    asm_diag = (even**2 + (pairs - even) ** 2) / pairs**2
    d1 = glcm_features(_stack(q, 32, 1))
    np.testing.assert_allclose(d1["contrast"], [31**2, 0, 31**2, 0])
    np.testing.assert_allclose(d1["correlation"], [-1, 1, -1, 1])
    np.testing.assert_allclose(d1["angular_second_moment"], [0.5, asm_diag, 0.5, asm_diag])
    d2 = glcm_features(_stack(q, 32, 2))  # every pair at distance 2 joins equal colours
    np.testing.assert_allclose(d2["contrast"], 0, atol=1e-12)
    np.testing.assert_allclose(d2["correlation"], 1)
    feats = texture_features(board[None], ["w1"], levels=32, distances=(1, 2))
    assert feats["Image_Texture_Contrast_w1_1_avg_32"] == pytest.approx(961 / 2)
    assert feats["Image_Texture_Correlation_w1_1_avg_32"] == pytest.approx(0.0, abs=1e-12)
    assert feats["Image_Texture_AngularSecondMoment_w1_1_avg_32"] == pytest.approx(
        (0.5 + asm_diag + 0.5 + asm_diag) / 4
    )
    assert feats["Image_Texture_Contrast_w1_2_avg_32"] == pytest.approx(0.0, abs=1e-12)
    assert feats["Image_Texture_Correlation_w1_2_avg_32"] == pytest.approx(1.0)


def test_horizontal_ramp_known_contrast():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (10, 1))  # levels v // 8 step by 1 every 8 columns
    feats = glcm_features(_stack(quantize(ramp, 32), 32, 1))
    # 31 of the 255 horizontal (and diagonal) steps cross a level boundary; vertical pairs never do.
    np.testing.assert_allclose(feats["contrast"], [31 / 255, 31 / 255, 0, 31 / 255])
    np.testing.assert_allclose(feats["dissimilarity"], [31 / 255, 31 / 255, 0, 31 / 255])


def test_agrees_with_skimage_graycoprops(real_planes):
    for plane in real_planes:
        q = quantize(plane, 32)
        P = graycomatrix(q, [1], SKIMAGE_ANGLES, levels=32, symmetric=True)
        ours = glcm_features(_stack(q, 32, 1))
        for skimage_name, ours_name in [
            ("contrast", "contrast"),
            ("dissimilarity", "dissimilarity"),
            ("homogeneity", "inverse_difference_moment"),
            ("ASM", "angular_second_moment"),
            ("correlation", "correlation"),
            ("mean", "joint_average"),
            ("variance", "joint_variance"),
        ]:
            np.testing.assert_allclose(
                ours[ours_name], graycoprops(P, skimage_name)[0], rtol=1e-10, err_msg=skimage_name
            )
        # skimage's entropy uses the natural log; ours is in bits
        np.testing.assert_allclose(ours["joint_entropy"] * np.log(2), graycoprops(P, "entropy")[0], rtol=1e-10)


def test_agrees_with_mahotas_haralick(real_planes):
    same = {  # mahotas column -> our key (mahotas' column 9 is a different "difference variance")
        0: "angular_second_moment",
        1: "contrast",
        2: "correlation",
        3: "joint_variance",
        4: "inverse_difference_moment",
        5: "sum_average",
        6: "sum_variance",
        7: "sum_entropy",
        8: "joint_entropy",
        10: "difference_entropy",
        11: "information_correlation_1",
        12: "information_correlation_2",
    }
    for plane in real_planes:
        q = quantize(plane, 32)
        levels = int(q.max()) + 1  # mahotas sizes its matrix by the image maximum
        ours = glcm_features(_stack(q, levels, 1))
        ref = mahotas.features.haralick(q, distance=1)
        for column, key in same.items():
            np.testing.assert_allclose(ours[key], ref[:, column], rtol=1e-9, atol=1e-12, err_msg=key)
        # IBSI's difference variance is mahotas' VAR[|x-y|] variant, not its default VAR[P(|x-y|)]
        ibsi = mahotas.features.haralick(q, distance=1, use_x_minus_y_variance=True)
        np.testing.assert_allclose(ours["difference_variance"], ibsi[:, 9], rtol=1e-9)
        assert not np.allclose(ours["difference_variance"], ref[:, 9])


def test_lbp_matches_skimage_on_real_images(real_planes):
    for plane in real_planes:
        expected = local_binary_pattern(plane, 8, 1, method="uniform")
        np.testing.assert_array_equal(local_binary_pattern_uniform(plane), expected)


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, 3), (np.uint8, 256), (np.uint16, 4), (np.uint16, 65536)])
def test_lbp_matches_skimage_including_ties(dtype, top):
    # Few grey levels make many exact ties, decided by skimage's floating-point rounding.
    plane = np.random.default_rng(11).integers(0, top, size=(97, 131)).astype(dtype)
    np.testing.assert_array_equal(local_binary_pattern_uniform(plane), local_binary_pattern(plane, 8, 1, "uniform"))


def test_lbp_histogram_known_answers():
    flat = np.full((6, 6), 50, dtype=np.uint8)
    hist = lbp_histogram(flat)
    assert hist.sum() == pytest.approx(1.0) and hist.shape == (10,)
    # Interior pixels of a flat image see 8 equal neighbours (code 8); the zero padding
    # outside the image makes border pixels' codes smaller.
    codes = local_binary_pattern_uniform(flat)
    assert (codes[1:-1, 1:-1] == 8).all() and codes[0, 0] != 8


def test_texture_features_names_and_values(real_planes):
    image = np.stack(real_planes[:6])
    feats = texture_features(image, CHANNELS, levels=32, distances=(1, 2))
    assert len(feats) == 6 * (2 * len(HARALICK) + 10)
    assert "Image_Texture_Contrast_w3_1_avg_32" in feats and "Image_Texture_InfoMeas2_w6_2_avg_32" in feats
    assert "Image_Texture_LBP9_w1" in feats
    assert all(np.isfinite(v) for v in feats.values())
    lbp = [feats[f"Image_Texture_LBP{k}_w2"] for k in range(10)]
    assert sum(lbp) == pytest.approx(1.0)
    patterns = [pattern_regex(p) for p, _, _ in FEATURE_DOCS]
    for name in feats:
        assert sum(bool(p.match(name)) for p in patterns) == 1, name
    # the per-site values are the direction means of glcm_features on the same quantisation
    q = quantize(image[2], 32)
    assert feats["Image_Texture_Entropy_w3_1_avg_32"] == pytest.approx(
        np.mean(glcm_features(_stack(q, 32, 1))["joint_entropy"])
    )


def test_texture_is_comparable_across_images():
    # Fixed quantisation: doubling the brightness changes the levels, so features change.
    rng = np.random.default_rng(2)
    dim = rng.integers(0, 100, size=(64, 64)).astype(np.uint8)
    a = texture_features(dim[None], ["w1"])
    b = texture_features((dim * 2)[None], ["w1"])
    assert b["Image_Texture_Contrast_w1_1_avg_32"] > 3 * a["Image_Texture_Contrast_w1_1_avg_32"]


def test_lbp_matches_skimage_on_full_size_upsampled_plane(real_planes):
    # 1024x1024: several row blocks, several runs of interpolation weights, and the many flat
    # ties of a 2x nearest-neighbour upsampling (as a full-size site of a 512 px source).
    plane = np.repeat(np.repeat(real_planes[1], 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(local_binary_pattern_uniform(plane), local_binary_pattern(plane, 8, 1, "uniform"))
    expected = np.bincount(local_binary_pattern(plane, 8, 1, "uniform").astype(int).ravel(), minlength=10)
    np.testing.assert_allclose(lbp_histogram(plane), expected / plane.size, rtol=0, atol=0)
