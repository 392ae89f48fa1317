"""Feature families: pure functions of a ``(C, H, W)`` image, returning flat dicts.

Each family lives in its own module and exposes one entry point with this signature
(extra keyword parameters have documented defaults)::

    intensity_features(image, channels) -> dict[str, float]
    texture_features(image, channels, levels=32, distances=(1,)) -> dict[str, float]
    morphology_features(image, channels, nuclear_channel=0, cell_channel=2) -> dict[str, float]
    correlation_features(image, channels) -> dict[str, float]

``image`` is a ``(C, H, W)`` ``uint8`` or ``uint16`` array; ``channels`` names its planes
(``["w1", ..., "w6"]``). Names follow CellProfiler/pycytominer:
``<Compartment>_<Family>_<Measure>_<Channel>[_<params>]``. Each module also exposes
``FEATURE_DOCS``: a list of ``(name pattern, unit, definition)`` rows, from which the
feature catalogue (``docs/features.md``) is generated. No family does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Callable, Sequence

import numpy as np

FAMILIES: tuple[str, ...] = ("intensity", "texture", "morphology", "correlation")


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the feature families (all have field-standard defaults).

    texture_levels: grey levels after fixed quantisation (GLCM).
    texture_distances: GLCM offsets in pixels.
    nuclear_channel / cell_channel: channel names used to segment nuclei and cells;
    ``None`` means the first channel and the third channel (or the last, if fewer).
    """

    texture_levels: int = 32
    texture_distances: tuple[int, ...] = (1,)
    nuclear_channel: str | None = None
    cell_channel: str | None = None
    families: tuple[str, ...] = field(default=FAMILIES)

    def channel_index(self, channels: Sequence[str], which: str) -> int:
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


def measure(
    image: np.ndarray, channels: Sequence[str], params: FeatureParams = FeatureParams()
) -> dict[str, float]:
    """All requested feature families of one site, as one flat dict.

    image: ``(C, H, W)`` uint8/uint16; channels: C names. Deterministic.
    """
    if image.ndim != 3 or image.shape[0] != len(channels):
        raise ValueError(
            f"expected a (C, H, W) image with C={len(channels)} channels, got shape {image.shape}"
        )
    out: dict[str, float] = {}
    for name in params.families:
        fn = _family(name)
        if name == "texture":
            out.update(fn(image, channels, levels=params.texture_levels, distances=params.texture_distances))
        elif name == "morphology":
            out.update(
                fn(
                    image,
                    channels,
                    nuclear_channel=params.channel_index(channels, "nuclear"),
                    cell_channel=params.channel_index(channels, "cell"),
                )
            )
        else:
            out.update(fn(image, channels))
    return out


def timed_measure(
    image: np.ndarray, channels: Sequence[str], params: FeatureParams = FeatureParams()
) -> tuple[dict[str, float], dict[str, float]]:
    """Like :func:`measure`, also returning CPU seconds spent per family (for benchmarks)."""
    import time

    out: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name in params.families:
        t0 = time.process_time()
        out.update(measure(image, channels, FeatureParams(**{**params.__dict__, "families": (name,)})))
        seconds[name] = time.process_time() - t0
    return out, seconds
