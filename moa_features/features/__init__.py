"""Feature families: pure functions of a ``(C, H, W)`` image (and label masks), returning flat dicts.

Each family lives in its own module ``moa_features/features/<name>.py`` with one entry point
of the pixels (and masks), e.g.::

    intensity_features(image, channels) -> dict[str, float]
    texture_features(image, channels, levels=32, distances=(1,), luts=None) -> dict[str, float]
    correlation_features(image, channels) -> dict[str, float]
    measure_objects(image, channels, masks) -> dict[str, (n,) array]   # morphology, per object

``image`` is a ``(C, H, W)`` ``uint8`` or ``uint16`` array; ``channels`` names its planes
(``["w1", ..., "w6"]``). Names follow CellProfiler/pycytominer:
``<Compartment>_<Family>_<Measure>_<Channel>[_<params>]``. Segmentation is its own step
(:func:`segment` -> :class:`Masks`). :data:`REGISTRY` maps each family's name to a function of
a :class:`SiteImage` (pixels, channel names, parameters, masks segmented on first use)
returning :data:`Measured`: image-level features and per-object columns, which
:func:`measure_site` aggregates per site (:func:`aggregate_objects`) and gathers into the
object table. Each family module also exposes ``FEATURE_DOCS``: ``(name pattern, unit,
definition)`` rows, from which the feature catalogue (``docs/features.md``) is generated.
No family does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from moa_features.features.aggregate import aggregate_objects
from moa_features.features.colocalisation import colocalisation_features
from moa_features.features.correlation import correlation_features
from moa_features.features.intensity import intensity_features
from moa_features.features.morphology import morphology_features
from moa_features.features.neighbors import neighbors_features
from moa_features.features.object_intensity import object_intensity
from moa_features.features.segmentation import (
    COMPARTMENTS,
    Masks,
    check_image,
    filter_objects,
    masks_from_labels,
    segment,
)
from moa_features.features.shape import shape_measurements
from moa_features.features.site import SiteImage, measure_objects, object_index, site_counts, site_objects
from moa_features.features.texture import SCHEMES, glcm, glcm_features, quantize, run_lut, texture_features
from moa_features.features.units import scale_intensities

#: What a family returns for one site: image-level features, and per-object columns
#: (``{column: (n,)}``, empty for image-level families; aggregated per site by the caller).
Measured = tuple[dict[str, float], dict[str, np.ndarray]]


def _image_level(function: Callable[[np.ndarray, Sequence[str]], dict[str, float]]) -> Callable[[SiteImage], Measured]:
    """A family of the pixels alone, ``function(image, channels)``, as a registry entry."""

    def measure(site: SiteImage) -> Measured:
        return function(site.image, site.channels), {}

    return measure


def _texture(site: SiteImage) -> Measured:
    p = site.params
    return texture_features(site.image, site.channels, p.texture_levels, p.texture_distances, site.texture_luts), {}


def _morphology(site: SiteImage) -> Measured:
    p = site.params
    objects, masks = site_objects(
        site.image, site.channels, masks=site.masks, texture=p.object_texture, texture_levels=p.texture_levels,
        texture_distance=p.texture_distances[0], texture_luts=site.texture_luts, correlation=p.object_correlation,
    )  # fmt: skip
    return site_counts(masks), objects


def _correlation(site: SiteImage) -> Measured:
    return correlation_features(site.image, site.channels, site.joint_histograms), {}


def _neighbors(site: SiteImage) -> Measured:
    return {}, neighbors_features(site.masks)


def _colocalisation(site: SiteImage) -> Measured:
    from moa_features.features.colocalisation import object_colocalisation

    columns = {}
    if site.params.object_correlation:
        masks = site.masks
        for compartment, labels in masks.compartments().items():
            for measure, values in object_colocalisation(site.image, site.channels, labels, masks.n).items():
                columns[f"{compartment}_{measure}"] = values
    return colocalisation_features(site.image, site.channels, site.joint_histograms), columns


def _zernike(site: SiteImage) -> Measured:
    from moa_features.features.zernike import zernike_shape

    masks = site.masks
    columns = {}
    for compartment, labels in masks.compartments().items():
        for measure, values in zernike_shape(labels, masks.n).items():
            columns[f"{compartment}_AreaShape_{measure}"] = values
    return {}, columns


def _granularity(site: SiteImage) -> Measured:
    from moa_features.features.granularity import granularity, granularity_objects

    masks = site.masks
    tables = granularity_objects(masks.compartments(), masks.n)
    features, columns = {}, {}
    for plane, ch in zip(site.image, site.channels):
        spectrum, per_object = granularity(plane, tables)
        for k, value in enumerate(spectrum, start=1):
            features[f"Image_Granularity_{k}_{ch}"] = float(value)
        for compartment in COMPARTMENTS:
            for k in range(per_object[compartment].shape[1]):
                columns[f"{compartment}_Granularity_{k + 1}_{ch}"] = per_object[compartment][:, k]
    return features, columns


def _radial(site: SiteImage) -> Measured:
    from moa_features.features.radial import radial_distribution, radial_geometry

    masks = site.masks
    columns = {}
    for compartment, labels in masks.compartments().items():
        geometry = radial_geometry(labels, masks.n)
        for plane, ch in zip(site.image, site.channels):
            for measure, values in radial_distribution(plane, geometry).items():
                name, ring = measure.split("_")
                columns[f"{compartment}_RadialDistribution_{name}_{ch}_{ring}"] = values
    return {}, columns


class Family(NamedTuple):
    """A registered feature family.

    Parameters
    ----------
    measure : callable
        Maps a :class:`SiteImage` to :data:`Measured` (image-level features, per-object columns).
    objects : bool, default False
        Whether it measures objects (so the site is segmented, or its masks read).
    """

    measure: Callable[[SiteImage], Measured]
    objects: bool = False


#: The feature families by name, in output order. To add one: write its module
#: ``moa_features/features/<name>.py`` (a function of pixels and masks, and ``FEATURE_DOCS`` for
#: the catalogue), add an entry here (a function of a :class:`SiteImage` returning
#: :data:`Measured`), and list it in ``DEFAULT_FAMILIES`` if it is on by default.
REGISTRY: dict[str, Family] = {
    "intensity": Family(_image_level(intensity_features)),
    "texture": Family(_texture),
    "morphology": Family(_morphology, objects=True),
    "correlation": Family(_correlation),
    "neighbors": Family(_neighbors, objects=True),
    "colocalisation": Family(_colocalisation),  # per object too (masks) with object_correlation
    "zernike": Family(_zernike, objects=True),
    "granularity": Family(_granularity, objects=True),
    "radial": Family(_radial, objects=True),
}
FAMILIES: tuple[str, ...] = tuple(REGISTRY)
#: The families measured unless ``--features`` says otherwise (opt-in families are left out):
#: ``granularity`` and ``radial`` cost about 0.24 s and 0.5 s per full-size site (1024x1024x6,
#: one core; benchmarks/README.md), more than the default set's budget allows.
DEFAULT_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in ("granularity", "radial"))

__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "Family",
    "REGISTRY",
    "SCHEMES",
    "FeatureParams",
    "Masks",
    "Measured",
    "SiteImage",
    "aggregate_objects",
    "check_image",
    "correlation_features",
    "filter_objects",
    "glcm",
    "glcm_features",
    "intensity_features",
    "masks_from_labels",
    "measure",
    "measure_objects",
    "measure_site",
    "morphology_features",
    "neighbors_features",
    "object_intensity",
    "run_lut",
    "quantize",
    "segment",
    "shape_measurements",
    "site_objects",
    "texture_features",
    "timed_measure",
]


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the feature families (all have field-standard defaults).

    Parameters
    ----------
    texture_levels : int, default 32
        Grey levels of the GLCM quantisation.
    texture_distances : tuple of int, default (1,)
        GLCM offsets in pixels.
    texture_scheme : {"run", "full"}, default "run"
        ``"run"``: per-channel percentile levels learned once per run; ``"full"``: the dtype's
        full range (CellProfiler-compatible).
    nuclear_channel, cell_channel : str, optional
        Channel names used to segment nuclei and cells; ``None`` means the first channel and
        the third channel (or the last, if fewer).
    families : tuple of str, default FAMILIES
        The feature families to measure, in output order.
    exclude_border : bool, default True
        Drop nuclei touching the image border (and their cells).
    min_diameter, max_diameter : float, optional
        Nucleus equivalent-diameter limits in pixels (``None``: no limit).
    threshold : {"otsu", "li"}, default "otsu"
        Nuclear (and, with propagation, cell) threshold method.
    cells : {"propagation", "watershed"}, default "propagation"
        Secondary segmentation: CellProfiler's Propagation, or a seeded watershed.
    regularization : float, default 0.05
        Propagation's lambda (CellProfiler's default).
    objects : bool, default False
        Also return the per-object table.
    object_texture, object_correlation : bool, default False
        Add per-object Haralick texture / colocalisation.
    illum : {"auto", "none"}, default "auto"
        ``"auto"``: per-plate illumination correction where a plate has enough sites.
    calibration : str, optional
        The run's first-pass folder (set by ``extract``; part of the parameters so resumed
        chunks match).
    intensity_units : {"raw", "unit"}, default "raw"
        ``"raw"`` grey levels, or ``"unit"``: divided by the image type's maximum as
        CellProfiler reports them (:func:`~moa_features.features.units.scale_intensities`).
    """

    texture_levels: int = 32
    texture_distances: tuple[int, ...] = (1,)
    texture_scheme: str = "run"
    nuclear_channel: str | None = None
    cell_channel: str | None = None
    families: tuple[str, ...] = field(default=DEFAULT_FAMILIES)
    exclude_border: bool = True
    min_diameter: float | None = None
    max_diameter: float | None = None
    threshold: str = "otsu"
    cells: str = "propagation"
    regularization: float = 0.05
    objects: bool = False
    object_texture: bool = False
    object_correlation: bool = False
    illum: str = "auto"
    calibration: str | None = None
    intensity_units: str = "raw"

    @property
    def segments(self) -> bool:
        """Whether a requested family measures objects (so sites are segmented, or their masks read).

        Examples
        --------
        >>> FeatureParams(families=("intensity",)).segments, FeatureParams().segments
        (False, True)
        """
        if self.object_correlation and "colocalisation" in self.families:
            return True
        return any(REGISTRY[name].objects for name in self.families if name in REGISTRY)

    def channel_index(self, channels: Sequence[str], which: str) -> int:
        """Index of the nuclear (``which="nuclear"``) or cell channel among ``channels``.

        Examples
        --------
        >>> FeatureParams(nuclear_channel="w2").channel_index(["w1", "w2", "w3"], "nuclear")
        1
        """
        name = self.nuclear_channel if which == "nuclear" else self.cell_channel
        if name is None:
            return 0 if which == "nuclear" else min(2, len(channels) - 1)
        if name not in channels:
            raise ValueError(f"{which} channel {name!r} is not one of the channels {list(channels)}")
        return list(channels).index(name)


def _texture_luts(params: FeatureParams, texture_luts: Sequence[np.ndarray] | None, n: int):
    if params.texture_scheme not in SCHEMES:
        raise ValueError(f"texture_scheme must be one of {SCHEMES}, got {params.texture_scheme!r}")
    if params.texture_scheme == "full":
        return None
    if texture_luts is None:
        raise ValueError(
            "texture_scheme 'run' needs the run's per-channel quantisation tables (texture_luts, learned by "
            "moa_features.calibration.calibrate or texture.run_lut); pass them, or use texture_scheme='full'"
        )
    if len(texture_luts) != n:
        raise ValueError(f"expected {n} texture quantisation tables (one per channel), got {len(texture_luts)}")
    return texture_luts


def measure_site(
    image: np.ndarray,
    channels: Sequence[str],
    params: FeatureParams = FeatureParams(),
    *,
    texture_luts: Sequence[np.ndarray] | None = None,
    masks: Masks | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
    """All requested feature families of one site, and (``params.objects``) its object table.

    Deterministic.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site, already illumination-corrected if wanted.
    channels : sequence of str
        The C channel names.
    params : FeatureParams, default FeatureParams()
        Families and their parameters; each family of ``params.families`` is called through
        :data:`REGISTRY` on one :class:`SiteImage` (segmented once if any family needs masks),
        and its per-object columns are aggregated per site right after its image-level features.
    texture_luts : sequence of ndarray, optional
        One :func:`run_lut` per channel, needed by the ``run`` texture scheme.
    masks : Masks, optional
        The site's own segmentation (``None``: segmented here).

    Returns
    -------
    features : dict of str to float
        Feature name -> value (units in ``docs/features.md``).
    objects : dict of str to ndarray, each shape (n,), or None
        One row per object (see :func:`measure_objects`); ``None`` unless ``params.objects``
        and a per-object family is requested.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((3, 64, 64), np.uint8)
    >>> image[0, 20:30, 20:30] = 200
    >>> image[2, 15:35, 15:35] = 90
    >>> params = FeatureParams(texture_scheme="full", objects=True)
    >>> features, objects = measure_site(image, ["w1", "w2", "w3"], params)
    >>> features["Nuclei_Count"], len(objects["ObjectNumber"])
    (1.0, 1)
    """
    return _measure_site(image, channels, params, texture_luts, masks)


def _measure_site(
    image: np.ndarray,
    channels: Sequence[str],
    params: FeatureParams,
    texture_luts: Sequence[np.ndarray] | None,
    masks: Masks | None,
    seconds: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
    """:func:`measure_site`, with CPU seconds per family into ``seconds`` when given."""
    unknown = [name for name in params.families if name not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown feature families {unknown}; expected some of {', '.join(FAMILIES)}")
    check_image(image, channels)
    luts = _texture_luts(params, texture_luts, len(channels)) if "texture" in params.families else None
    site = SiteImage(image, channels, params, texture_luts=luts, masks=masks)
    out, objects = _measure_families(site, params.families, seconds)
    if objects and "ObjectNumber" not in objects:  # no morphology: the table's keys still come first
        objects = {**object_index(site.masks), **objects}
    objects = objects if params.objects and objects else None
    if params.intensity_units != "raw":
        out = scale_intensities(out, image.dtype, params.intensity_units)
        objects = None if objects is None else scale_intensities(objects, image.dtype, params.intensity_units)
    return out, objects


def _measure_families(
    site: SiteImage, families: Sequence[str], seconds: dict[str, float] | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every family of ``families`` on ``site``: features (object columns aggregated right after
    their family's image-level features) and the object columns; CPU seconds per family into
    ``seconds`` when given (``segmentation`` apart, if a family needs masks and they are not given)."""
    out: dict[str, float] = {}
    objects: dict[str, np.ndarray] = {}
    if seconds is not None and any(REGISTRY[name].objects for name in families) and "masks" not in vars(site):
        t0 = time.process_time()
        site.masks  # noqa: B018  (segmented once here, so that no family's time holds it)
        seconds["segmentation"] = time.process_time() - t0
    for name in families:
        t0 = time.process_time()
        features, columns = REGISTRY[name].measure(site)
        out.update(features)
        out.update(aggregate_objects(columns))
        objects.update(columns)
        if seconds is not None:
            seconds[name] = time.process_time() - t0
    return out, objects


def measure(
    image: np.ndarray,
    channels: Sequence[str],
    params: FeatureParams = FeatureParams(),
    *,
    texture_luts: Sequence[np.ndarray] | None = None,
    masks: Masks | None = None,
) -> dict[str, float]:
    """All requested feature families of one site, as one flat dict (see :func:`measure_site`).

    Parameters
    ----------
    image, channels, params, texture_luts, masks
        As in :func:`measure_site`.

    Returns
    -------
    dict of str to float
        Feature name -> value.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).integers(0, 255, (2, 32, 32)).astype(np.uint8)
    >>> f = measure(image, ["w1", "w2"], FeatureParams(families=("intensity",)))
    >>> round(f["Image_Intensity_Mean_w1"])
    131
    """
    return measure_site(image, channels, params, texture_luts=texture_luts, masks=masks)[0]


def timed_measure(
    image: np.ndarray,
    channels: Sequence[str],
    params: FeatureParams = FeatureParams(),
    *,
    texture_luts: Sequence[np.ndarray] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Like :func:`measure`, also returning the CPU time spent per family (for benchmarks).

    Parameters
    ----------
    image, channels, params, texture_luts
        As in :func:`measure_site`.

    Returns
    -------
    features : dict of str to float
        Feature name -> value.
    seconds : dict of str to float
        Family name -> CPU seconds (``time.process_time``).

    The site is segmented once, timed as ``segmentation``, when a family measures objects.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((2, 16, 16), np.uint8)
    >>> _, seconds = timed_measure(image, ["a", "b"], FeatureParams(families=("intensity", "neighbors")))
    >>> sorted(seconds)
    ['intensity', 'neighbors', 'segmentation']
    """
    seconds: dict[str, float] = {}
    out, _ = _measure_site(image, channels, params, texture_luts, None, seconds)
    return out, seconds
