"""One site's objects: segmentation (unless masks are given), the per-object table, its summary.

:func:`measure_objects` gives every object's shape (:mod:`~moa_features.features.shape`) and
intensity (:mod:`~moa_features.features.object_intensity`) in the three compartments;
:func:`site_objects` segments first and adds the optional per-object texture and correlation;
:func:`site_summary` gives a site's object count, area fractions and per-object aggregates.
:class:`SiteImage` is what every feature family is given: the image, its channel names, the
parameters, and the masks, segmented once on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from moa_features.features.aggregate import aggregate_objects
from moa_features.features.correlation import joint_histograms, object_correlation
from moa_features.features.object_intensity import INTENSITY_MEASURES, site_intensity
from moa_features.features.segmentation import COMPARTMENTS, Masks, check_image, segment
from moa_features.features.shape import SHAPE_MEASURES, shape_measurements
from moa_features.features.texture import apply_lut, object_texture, quantize, texture_suffix

if TYPE_CHECKING:
    from moa_features.features import FeatureParams


class SiteImage:
    """One site as the feature families see it: pixels, channel names, parameters, masks.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        The site's pixels (validated).
    channels : sequence of str
        The C channel names.
    params : FeatureParams
        The run's :class:`~moa_features.features.FeatureParams`.
    texture_luts : sequence of ndarray, optional
        The run's per-channel quantisation tables (``None``: full range).
    masks : Masks, optional
        The site's own :class:`Masks` (``None``: segmented on first use of :attr:`masks`, as
        ``params`` says, then kept).

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features import FeatureParams
    >>> image = np.zeros((3, 64, 64), np.uint8)
    >>> image[0, 20:30, 20:30] = 200
    >>> image[2, 15:35, 15:35] = 90
    >>> SiteImage(image, ["w1", "w2", "w3"], FeatureParams()).masks.n
    1
    """

    def __init__(
        self,
        image: np.ndarray,
        channels: Sequence[str],
        params: FeatureParams,
        *,
        texture_luts: Sequence[np.ndarray] | None = None,
        masks: Masks | None = None,
    ):
        self.image = check_image(image, channels)
        self.channels = list(channels)
        self.params = params
        self.texture_luts = texture_luts
        if masks is not None:
            self.masks = masks

    @cached_property
    def masks(self) -> Masks:
        """The site's masks (segmented with the parameters' options on first use)."""
        p = self.params
        return segment(
            self.image,
            p.channel_index(self.channels, "nuclear"),
            p.channel_index(self.channels, "cell"),
            exclude_border=p.exclude_border,
            min_diameter=p.min_diameter,
            max_diameter=p.max_diameter,
            threshold=p.threshold,
            cells=p.cells,
            regularization=p.regularization,
        )

    @cached_property
    def joint_histograms(self) -> np.ndarray | None:
        """The channel pairs' joint histograms of an 8-bit site, computed once for the families that
        share them (correlation, colocalisation); ``None`` for other images
        (:func:`~moa_features.features.correlation.joint_histograms`)."""
        return joint_histograms(self.image)


def measure_objects(image: np.ndarray, channels: Sequence[str], masks: Masks) -> dict[str, np.ndarray]:
    """Per-object shape and intensity of nuclei, cells and cytoplasm (one row per object).

    Deterministic.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        The site's planes.
    channels : sequence of str
        The C channel names.
    masks : Masks
        The site's :class:`Masks`.

    Returns
    -------
    dict of str to ndarray, each shape (n,)
        ``ObjectNumber`` (1..n), ``Location_Center_X/Y`` (the nucleus centroid, pixels,
        x = column) and, for every compartment ``<Cpt>`` in Nuclei, Cells, Cytoplasm,
        ``<Cpt>_AreaShape_<Measure>`` and ``<Cpt>_Intensity_<Measure>_<ch>`` in CellProfiler's
        naming (px, px², grey levels).

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features.segmentation import masks_from_labels
    >>> nuclei = np.zeros((16, 16), np.int32)
    >>> nuclei[4:8, 4:8] = 1
    >>> cells = np.zeros((16, 16), np.int32)
    >>> cells[2:10, 2:10] = 1
    >>> image = np.full((1, 16, 16), 10, np.uint8)
    >>> t = measure_objects(image, ["w1"], masks_from_labels(nuclei, cells))
    >>> float(t["Cytoplasm_AreaShape_Area"][0]), float(t["Cells_Intensity_IntegratedIntensity_w1"][0])
    (60.0, 640.0)
    """
    image = check_image(image, channels)
    n = masks.n
    shapes = {name: shape_measurements(labels, n) for name, labels in masks.compartments().items()}
    out: dict[str, np.ndarray] = {
        "ObjectNumber": np.arange(1, n + 1, dtype=np.float64),
        "Location_Center_X": shapes["Nuclei"]["Center_X"],
        "Location_Center_Y": shapes["Nuclei"]["Center_Y"],
    }
    for name, shape in shapes.items():
        for measure in SHAPE_MEASURES:
            out[f"{name}_AreaShape_{measure}"] = shape[measure]
    if n == 0:
        for name in COMPARTMENTS:
            for ch in channels:
                for measure in INTENSITY_MEASURES:
                    out[f"{name}_Intensity_{measure}_{ch}"] = np.zeros(0)
        return out
    centres = {name: (s["Center_X"], s["Center_Y"]) for name, s in shapes.items()}
    out.update(site_intensity(image, channels, masks, centres))
    return out


def site_objects(
    image: np.ndarray,
    channels: Sequence[str],
    nuclear_channel: int = 0,
    cell_channel: int = 2,
    *,
    masks: Masks | None = None,
    exclude_border: bool = True,
    min_diameter: float | None = None,
    max_diameter: float | None = None,
    threshold: str = "otsu",
    cells: str = "propagation",
    regularization: float = 0.05,
    texture: bool = False,
    texture_levels: int = 32,
    texture_distance: int = 1,
    texture_luts: Sequence[np.ndarray] | None = None,
    correlation: bool = False,
) -> tuple[dict[str, np.ndarray], Masks]:
    """Segment a site (unless ``masks`` are given) and measure every object.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        The site's planes.
    channels : sequence of str
        The C channel names.
    nuclear_channel, cell_channel : int, default 0 and 2
        Plane indices used to segment.
    masks : Masks, optional
        The site's own segmentation (``None``: segmented here).
    exclude_border, min_diameter, max_diameter, threshold, cells, regularization
        Segmentation options, as in :func:`~moa_features.features.segmentation.segment`.
    texture : bool, default False
        Add per-object Haralick features ``<Cpt>_Texture_<Measure>_<ch>_<d>_avg_<q>``.
    texture_levels : int, default 32
        Grey levels of the per-object GLCM.
    texture_distance : int, default 1
        GLCM offset in pixels.
    texture_luts : sequence of ndarray, optional
        Quantisation tables per channel, as the image-level texture (``None``: full range).
    correlation : bool, default False
        Add ``<Cpt>_Correlation_Correlation_<a>_<b>``.

    Returns
    -------
    objects : dict of str to ndarray, each shape (n,)
        As from :func:`measure_objects`.
    masks : Masks
        The masks measured.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((3, 64, 64), np.uint8)
    >>> image[0, 20:30, 20:30] = 200
    >>> image[2, 15:35, 15:35] = 90
    >>> objects, masks = site_objects(image, ["w1", "w2", "w3"])
    >>> objects["Location_Center_X"].tolist()
    [24.5]
    """
    image = check_image(image, channels)
    if masks is None:
        masks = segment(
            image,
            nuclear_channel,
            cell_channel,
            exclude_border=exclude_border,
            min_diameter=min_diameter,
            max_diameter=max_diameter,
            threshold=threshold,
            cells=cells,
            regularization=regularization,
        )
    objects = measure_objects(image, channels, masks)
    n = masks.n
    if texture:
        suffix = texture_suffix(texture_levels, "full" if texture_luts is None else "run")
        for c, (plane, ch) in enumerate(zip(image, channels)):
            q = (
                quantize(plane, texture_levels)
                if texture_luts is None
                else apply_lut(plane, texture_luts[c], texture_levels)
            )
            for name, labels in masks.compartments().items():
                for measure, values in object_texture(q, labels, n, texture_levels, texture_distance).items():
                    objects[f"{name}_Texture_{measure}_{ch}_{texture_distance}_avg_{suffix}"] = values
    if correlation:
        for name, labels in masks.compartments().items():
            for measure, values in object_correlation(image, channels, labels, n).items():
                objects[f"{name}_{measure}"] = values
    return objects, masks


def object_index(masks: Masks) -> dict[str, np.ndarray]:
    """The object table's keys: ``ObjectNumber`` (1..n) and ``Location_Center_X/Y`` (nucleus centroids, pixels).

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features.segmentation import masks_from_labels
    >>> nuclei = np.zeros((8, 8), np.int32)
    >>> nuclei[2:4, 4:8] = 1
    >>> object_index(masks_from_labels(nuclei))["Location_Center_X"].tolist()
    [5.5]
    """
    shape = shape_measurements(masks.nuclei, masks.n)
    return {
        "ObjectNumber": np.arange(1, masks.n + 1, dtype=np.float64),
        "Location_Center_X": shape["Center_X"],
        "Location_Center_Y": shape["Center_Y"],
    }


def site_summary(objects: dict[str, np.ndarray], masks: Masks) -> dict[str, float]:
    """A site's morphology features: ``Nuclei_Count``, area fractions, object aggregates.

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features.segmentation import masks_from_labels
    >>> nuclei = np.zeros((10, 10), np.int32)
    >>> nuclei[2:4, 2:4] = 1
    >>> objects = measure_objects(np.ones((1, 10, 10), np.uint8), ["w1"], masks_from_labels(nuclei))
    >>> site_summary(objects, masks_from_labels(nuclei))["Image_AreaOccupied_Fraction_Nuclei"]
    0.04
    """
    out = site_counts(masks)
    out.update(aggregate_objects(objects))
    return out


def site_counts(masks: Masks) -> dict[str, float]:
    """``Nuclei_Count`` and the fractions of the site covered by nuclei and by cells.

    Examples
    --------
    >>> import numpy as np
    >>> from moa_features.features.segmentation import masks_from_labels
    >>> nuclei = np.zeros((10, 10), np.int32)
    >>> nuclei[2:4, 2:4] = 1
    >>> site_counts(masks_from_labels(nuclei))["Nuclei_Count"]
    1.0
    """
    pixels = float(masks.nuclei.size)
    return {
        "Nuclei_Count": float(masks.n),
        "Image_AreaOccupied_Fraction_Nuclei": float(np.count_nonzero(masks.nuclei)) / pixels,
        "Image_AreaOccupied_Fraction_Cells": float(np.count_nonzero(masks.cells)) / pixels,
    }
