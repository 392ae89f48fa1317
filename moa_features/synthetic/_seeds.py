"""Seeded random generators: every draw of the screen is keyed by what it belongs to."""

from __future__ import annotations

import numpy as np


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for ``seed`` and the identity ``key`` (experiment, plate, well, site, treatment ...):
    the same screen whatever order or process renders it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))
