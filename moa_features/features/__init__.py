"""Feature families: pure functions of a ``(C, H, W)`` image (and label masks), returning flat dicts.

Each family lives in its own module and exposes one entry point with this signature
(extra keyword parameters have documented defaults)::

    intensity_features(image, channels) -> dict[str, float]
    texture_features(image, channels, levels=32, distances=(1,), luts=None) -> dict[str, float]
    morphology_features(image, channels, nuclear_channel=0, cell_channel=2, masks=None) -> dict[str, float]
    correlation_features(image, channels) -> dict[str, float]

``image`` is a ``(C, H, W)`` ``uint8`` or ``uint16`` array; ``channels`` names its planes
(``["w1", ..., "w6"]``). Names follow CellProfiler/pycytominer:
``<Compartment>_<Family>_<Measure>_<Channel>[_<params>]``. Segmentation is its own step
(:func:`segment` -> :class:`Masks`), and per-object measurements take masks
(:func:`measure_objects`, :func:`aggregate_objects`). Each family module also exposes
``FEATURE_DOCS``: ``(name pattern, unit, definition)`` rows, from which the feature
catalogue (``docs/features.md``) is generated. No family does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import import_module

import numpy as np

from moa_features.features.correlation import correlation_features
from moa_features.features.intensity import intensity_features
from moa_features.features.morphology import morphology_features, shape_measurements
from moa_features.features.objects import aggregate_objects, measure_objects, object_intensity, site_objects
from moa_features.features.segmentation import Masks, check_image, filter_objects, masks_from_labels, segment
from moa_features.features.texture import SCHEMES, glcm, glcm_features, quantize, run_lut, texture_features
from moa_features.features.units import scale_intensities

FAMILIES: tuple[str, ...] = ("intensity", "texture", "morphology", "correlation")

__all__ = [
    "FAMILIES",
    "SCHEMES",
    "FeatureParams",
    "Masks",
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
        Nuclear threshold method.
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
    families: tuple[str, ...] = field(default=FAMILIES)
    exclude_border: bool = True
    min_diameter: float | None = None
    max_diameter: float | None = None
    threshold: str = "otsu"
    objects: bool = False
    object_texture: bool = False
    object_correlation: bool = False
    illum: str = "auto"
    calibration: str | None = None
    intensity_units: str = "raw"

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


def _family(name: str) -> Callable[..., dict[str, float]]:
    if name not in FAMILIES:
        raise ValueError(f"unknown feature family {name!r}; expected some of {', '.join(FAMILIES)}")
    module = import_module(f"moa_features.features.{name}")
    return getattr(module, f"{name}_features")


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
        Families and their parameters.
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
        and the morphology family is requested.

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
    check_image(image, channels)
    luts = _texture_luts(params, texture_luts, len(channels)) if "texture" in params.families else None
    out: dict[str, float] = {}
    objects = None
    for name in params.families:
        if name == "texture":
            out.update(texture_features(image, channels, params.texture_levels, params.texture_distances, luts))
        elif name == "morphology":
            from moa_features.features.objects import site_summary

            objects, site_masks = site_objects(
                image, channels, params.channel_index(channels, "nuclear"), params.channel_index(channels, "cell"),
                masks=masks, exclude_border=params.exclude_border, min_diameter=params.min_diameter,
                max_diameter=params.max_diameter, threshold=params.threshold, texture=params.object_texture,
                texture_levels=params.texture_levels, texture_distance=params.texture_distances[0],
                texture_luts=luts, correlation=params.object_correlation,
            )  # fmt: skip
            out.update(site_summary(objects, site_masks))
        else:
            out.update(_family(name)(image, channels))
    objects = objects if params.objects else None
    if params.intensity_units != "raw":
        out = scale_intensities(out, image.dtype, params.intensity_units)
        objects = None if objects is None else scale_intensities(objects, image.dtype, params.intensity_units)
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

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((2, 16, 16), np.uint8)
    >>> _, seconds = timed_measure(image, ["a", "b"], FeatureParams(families=("intensity", "correlation")))
    >>> sorted(seconds)
    ['correlation', 'intensity']
    """
    out: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name in params.families:
        t0 = time.process_time()
        out.update(measure(image, channels, replace(params, families=(name,)), texture_luts=texture_luts))
        seconds[name] = time.process_time() - t0
    return out, seconds
