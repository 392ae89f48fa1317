"""Object outlines: the pixels of an object that touch another label or the image border.

Shared by the shape measurements (perimeters), the intensity measurements (``*Edge``) and
neighbour detection; a compiled kernel :func:`mark_outline` and its array form :func:`outline`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def mark_outline(labels: np.ndarray, out: np.ndarray) -> None:
    """Set ``out`` (bool, labels' shape) to the outline: object pixels with a 4-neighbour of another label, or on
    the image border (branch-free per row, so that it vectorises)."""
    h, w = labels.shape
    if w == 0:
        return
    for y in range(h):
        up, down = max(y - 1, 0), min(y + 1, h - 1)
        first_or_last = y == 0 or y == h - 1
        for x in range(1, w - 1):
            label = labels[y, x]
            out[y, x] = (label > 0) & (
                first_or_last
                | (labels[up, x] != label)
                | (labels[down, x] != label)
                | (labels[y, x - 1] != label)
                | (labels[y, x + 1] != label)
            )
        out[y, 0] = labels[y, 0] > 0
        out[y, w - 1] = labels[y, w - 1] > 0


def shrink_outline(labels: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: object pixels with an 8-neighbour of another value, or on the image border.

    The pixels by which CellProfiler's IdentifyTertiaryObjects shrinks the smaller objects
    before subtracting them (``centrosome.outline.outline``): so the nucleus's rim belongs
    to the cytoplasm too.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 5), np.int32)
    >>> labels[1:4, 1:4] = 1
    >>> int(shrink_outline(labels).sum())
    8
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) label image, got shape {labels.shape}")
    return _shrink_outline(np.ascontiguousarray(labels))


@njit(cache=True, nogil=True)
def _shrink_outline(labels: np.ndarray) -> np.ndarray:
    h, w = labels.shape
    out = np.zeros((h, w), dtype=np.bool_)
    for y in range(h):
        for x in range(w):
            label = labels[y, x]
            if label == 0:
                continue
            if y == 0 or x == 0 or y == h - 1 or x == w - 1:
                out[y, x] = True
                continue
            out[y, x] = (
                (labels[y - 1, x - 1] != label)
                | (labels[y - 1, x] != label)
                | (labels[y - 1, x + 1] != label)
                | (labels[y, x - 1] != label)
                | (labels[y, x + 1] != label)
                | (labels[y + 1, x - 1] != label)
                | (labels[y + 1, x] != label)
                | (labels[y + 1, x + 1] != label)
            )
    return out


def outline(labels: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: object pixels with a 4-neighbour of another label, or on the image border.

    The edge pixels of CellProfiler's ``IntegratedIntensityEdge`` (checked against its own
    output on ExampleHuman: identical edge pixel counts on identical objects).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 5), np.int32)
    >>> labels[1:4, 1:4] = 1
    >>> int(outline(labels).sum())
    8
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, dtype=bool)
    mark_outline(labels, out)
    return out
