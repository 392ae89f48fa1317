"""The bucket-queue watershed against scikit-image's heap watershed (the reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import segmentation as skseg
from skimage.filters import sobel

from moa_features.features.segmentation import _quantise
from moa_features.features.watershed import watershed


def _single_pixel_markers(rng, shape, n, levels):
    """``n`` one-pixel markers on pixels of pairwise different levels (no tie in entry order,
    the one thing the heap and the bucket queue order differently)."""
    flat = levels.ravel()
    order = rng.permutation(flat.size)
    _, first = np.unique(flat[order], return_index=True)
    chosen = order[rng.choice(first, size=min(n, first.size), replace=False)]
    markers = np.zeros(flat.size, dtype=np.int32)
    markers[chosen] = np.arange(1, chosen.size + 1)
    return markers.reshape(shape)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_levels", [4, 256, 5000])
def test_equals_skimage_on_integer_landscapes(seed, n_levels):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 60)), int(rng.integers(5, 60)))
    levels = rng.integers(0, n_levels, size=shape)
    markers = _single_pixel_markers(rng, shape, int(rng.integers(1, 8)), levels)
    mask = rng.random(shape) < 0.85
    ours = watershed(levels, markers, mask)
    ref = skseg.watershed(levels, markers, mask=mask, connectivity=1)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(watershed(levels, markers), skseg.watershed(levels, markers, connectivity=1))


def test_plateaus_split_by_arrival_and_levels_rank_compressed():
    # A flat landscape is split half-way between two markers (first come, first served) ...
    levels = np.zeros((1, 9), np.int64)
    markers = np.zeros((1, 9), np.int32)
    markers[0, 0], markers[0, -1] = 1, 2
    assert watershed(levels, markers).tolist() == [[1, 1, 1, 1, 1, 2, 2, 2, 2]]
    # ... and huge level values are flooded by their rank: same labels as the small ones.
    rng = np.random.default_rng(0)
    small = rng.integers(0, 50, size=(30, 30))
    markers = _single_pixel_markers(rng, small.shape, 5, small)
    np.testing.assert_array_equal(watershed(small * 10**9, markers), watershed(small, markers))


def test_mask_and_unreachable_pixels_stay_zero():
    levels = np.zeros((5, 5), np.uint8)
    markers = np.zeros((5, 5), np.int32)
    markers[0, 0] = 3
    mask = np.ones((5, 5), bool)
    mask[:, 2] = False  # a wall: the right half cannot be reached
    out = watershed(levels, markers, mask)
    assert (out[:, :2] == 3).all() and (out[:, 2:] == 0).all()
    assert out.dtype == np.int32


def test_quantised_gradient_flood_agrees_with_skimage_float_watershed():
    """On a smooth gradient landscape, flooding its uint16 quantisation gives the float labels."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:200, :200]
    plane = sum(
        np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 15.0**2)) for cy, cx in rng.integers(20, 180, size=(12, 2))
    ) + 0.05 * rng.random((200, 200))
    gradient = sobel(plane)
    markers = np.zeros(plane.shape, np.int32)
    for i, (cy, cx) in enumerate(rng.integers(20, 180, size=(12, 2)), start=1):
        markers[cy - 2 : cy + 3, cx - 2 : cx + 3] = i
    mask = plane > 0.2
    ours = watershed(_quantise(gradient), markers, mask)
    ref = skseg.watershed(gradient, markers, mask=mask, connectivity=1)
    assert (ours == ref).mean() > 0.999


@pytest.mark.parametrize(
    "levels, markers, match",
    [
        (np.zeros((3, 3), float), np.zeros((3, 3), np.int32), "non-negative integers"),
        (-np.ones((3, 3), np.int64), np.zeros((3, 3), np.int32), "non-negative integers"),
        (np.zeros((3, 3), np.uint8), np.zeros((3, 4), np.int32), "one shape"),
        (np.zeros((3, 3), np.uint8), -np.ones((3, 3), np.int32), "markers must be non-negative"),
    ],
)
def test_bad_input(levels, markers, match):
    with pytest.raises(ValueError, match=match):
        watershed(levels, markers)


def test_cells_on_real_rxrx1_sites_agree_with_skimage(rxrx1_sample):
    """segment_cells' flood on real sites: labels equal scikit-image's float watershed on >= 99.9 %
    of the foreground (the remainder: gradient ties within 1/65535 of the range)."""
    from skimage.filters import threshold_otsu

    from moa_features.datasets import open_dataset
    from moa_features.features.filters import gaussian
    from moa_features.features.segmentation import segment_nuclei

    complete = [site for site in open_dataset(rxrx1_sample).sites if all(Path(p).is_file() for p in site.paths)]
    assert len(complete) == 2
    for site in complete:
        image = site.load()
        nuclei = segment_nuclei(image[0])
        smoothed = gaussian(image[2], 1.0)
        foreground = (nuclei > 0) | (smoothed > 0.5 * threshold_otsu(smoothed))
        gradient = sobel(smoothed)
        ours = watershed(_quantise(gradient), nuclei, foreground)
        ref = skseg.watershed(gradient, nuclei, mask=foreground, connectivity=1)
        assert (ours == ref)[foreground].mean() > 0.999, site.metadata
