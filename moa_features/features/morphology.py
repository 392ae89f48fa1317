"""Morphology feature family: segmentation, per-object measurements, aggregation per site.

For one site (``(C, H, W)`` uint8/uint16 image):

1. :func:`~moa_features.features.segmentation.segment` labels nuclei, cells and cytoplasm
   (or the caller passes its own :class:`~moa_features.features.segmentation.Masks`);
   border nuclei are excluded by default, diameter limits are options.
2. :func:`~moa_features.features.site.measure_objects` measures every object
   (CellProfiler's AreaShape, :mod:`~moa_features.features.shape`, and
   MeasureObjectIntensity, :mod:`~moa_features.features.object_intensity`); per-object
   Haralick texture and colocalisation are options.
3. :func:`~moa_features.features.aggregate.aggregate_objects` gives the site's median, mean
   and standard deviation over objects (``<column>_Median`` etc.).

Units: lengths in pixels, areas in pixels², intensities in grey levels of the input dtype
(0-255 for uint8, 0-65535 for uint16; no rescaling). A site without nuclei gives
``Nuclei_Count = 0`` and NaN for every statistic over objects (``Image_AreaOccupied_*`` are 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moa_features.features.segmentation import Masks
from moa_features.features.site import site_objects, site_summary

FEATURE_DOCS: list[tuple[str, str, str]] = [
    ("Nuclei_Count", "objects", "Number of nuclei kept (after border and size exclusion); one cell per nucleus."),
    ("Image_AreaOccupied_Fraction_Nuclei", "fraction (0-1)", "Fraction of the site's pixels covered by kept nuclei."),
    ("Image_AreaOccupied_Fraction_Cells", "fraction (0-1)", "Fraction of the site's pixels covered by kept cells."),
    ("<Cpt>_AreaShape_Area_<stat>", "pixels²", "Object area (pixel count)."),
    (
        "<Cpt>_AreaShape_Perimeter_<stat>",
        "pixels",
        "Perimeter as regionprops 'perimeter' (4-connected border, Benkrid-Crookes weights).",
    ),
    ("<Cpt>_AreaShape_FormFactor_<stat>", "1", "4*pi*Area/Perimeter² (about 1 for a disk)."),
    (
        "<Cpt>_AreaShape_Eccentricity_<stat>",
        "1 (0-1)",
        "Eccentricity of the ellipse with the same second central moments.",
    ),
    (
        "<Cpt>_AreaShape_Solidity_<stat>",
        "1 (0-1]",
        "Area / convex-hull area (hull pixel count as regionprops 'area_convex').",
    ),
    ("<Cpt>_AreaShape_Extent_<stat>", "1 (0-1]", "Area / bounding-box area."),
    (
        "<Cpt>_AreaShape_MajorAxisLength_<stat>",
        "pixels",
        "Major axis of the ellipse with the same normalised second central moments (4*sqrt(eigenvalue)).",
    ),
    ("<Cpt>_AreaShape_MinorAxisLength_<stat>", "pixels", "Minor axis of that ellipse."),
    (
        "<Cpt>_AreaShape_Compactness_<stat>",
        "1",
        "2*pi * mean squared distance of the pixels from the centroid / Area (1 for a disk; CellProfiler).",
    ),
    ("<Cpt>_Intensity_IntegratedIntensity_<ch>_<stat>", "grey level", "Sum of the object's pixel values."),
    ("<Cpt>_Intensity_MeanIntensity_<ch>_<stat>", "grey level", "Mean pixel value in the object."),
    (
        "<Cpt>_Intensity_StdIntensity_<ch>_<stat>",
        "grey level",
        "Population standard deviation of the object's pixel values.",
    ),
    ("<Cpt>_Intensity_MinIntensity_<ch>_<stat>", "grey level", "Smallest pixel value in the object."),
    ("<Cpt>_Intensity_MaxIntensity_<ch>_<stat>", "grey level", "Largest pixel value in the object."),
    (
        "<Cpt>_Intensity_LowerQuartileIntensity_<ch>_<stat>",
        "grey level",
        "CellProfiler's 1/4 quantile: sorted value at position area/4, interpolated to the next.",
    ),
    ("<Cpt>_Intensity_MedianIntensity_<ch>_<stat>", "grey level", "CellProfiler's 1/2 quantile (same rule)."),
    ("<Cpt>_Intensity_UpperQuartileIntensity_<ch>_<stat>", "grey level", "CellProfiler's 3/4 quantile (same rule)."),
    (
        "<Cpt>_Intensity_MADIntensity_<ch>_<stat>",
        "grey level",
        "CellProfiler's 1/2 quantile of |value - MedianIntensity|.",
    ),
    (
        "<Cpt>_Intensity_IntegratedIntensityEdge_<ch>_<stat>",
        "grey level",
        "Sum over the object's outline (pixels with a 4-neighbour outside the object, or on the image border).",
    ),
    ("<Cpt>_Intensity_MeanIntensityEdge_<ch>_<stat>", "grey level", "Mean over the object's outline."),
    (
        "<Cpt>_Intensity_MassDisplacement_<ch>_<stat>",
        "pixels",
        "Distance between the intensity-weighted and the unweighted centroid.",
    ),
    (
        "<Cpt>_Texture_<Measure>_<ch>_<d>_avg_<q>_<stat>",
        "as Image_Texture",
        "Option (--object-texture): Haralick measures of the object's own GLCM (pairs inside the object), quantised as "
        "the image-level texture.",
    ),
    (
        "<Cpt>_Correlation_Correlation_<a>_<b>_<stat>",
        "1 (-1 to 1)",
        "Option (--object-correlation): Pearson correlation of channels a and b inside the object.",
    ),
]
MORPHOLOGY_CONVENTIONS = """``<Cpt>``: Nuclei, Cells or Cytoplasm (cell minus its nucleus, the nucleus's rim kept, as in
CellProfiler); ``<stat>``: Median, Mean or
Std (ddof=0) over the site's objects, NaN values (e.g. an empty cytoplasm) ignored. Nuclei
touching the image border are excluded by default (``--keep-border-objects``), and
``--min-diameter``/``--max-diameter`` limit the nuclei's equivalent diameters (pixels). The
per-object table (``extract --objects``, ``NAME.objects.parquet``) holds the same
measurements without ``_<stat>``, one row per object, with the site's ``Metadata_`` keys,
``ObjectNumber`` and ``Location_Center_X/Y`` (the nucleus centroid, pixels)."""


def morphology_features(
    image: np.ndarray,
    channels: Sequence[str],
    nuclear_channel: int = 0,
    cell_channel: int = 2,
    masks: Masks | None = None,
    **options,
) -> dict[str, float]:
    """Segmentation-based features of one site: counts, coverage, per-object aggregates.

    image: ``(C, H, W)`` uint8/uint16; channels: the C channel names; nuclear_channel /
    cell_channel: plane indices used to segment (ignored when ``masks`` is given); options:
    passed to :func:`moa_features.features.site.site_objects` (``exclude_border``,
    ``min_diameter``, ``max_diameter``, ``threshold``, ``texture``, ``correlation``, ...).
    Returns the flat dict documented in ``FEATURE_DOCS``. Deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((3, 64, 64), np.uint8)
    >>> image[0, 20:30, 20:30] = 200
    >>> image[2, 15:35, 15:35] = 90
    >>> f = morphology_features(image, ["w1", "w2", "w3"])
    >>> f["Nuclei_Count"], f["Nuclei_AreaShape_Area_Median"]
    (1.0, 96.0)
    """
    objects, masks = site_objects(image, channels, nuclear_channel, cell_channel, masks=masks, **options)
    return site_summary(objects, masks)
