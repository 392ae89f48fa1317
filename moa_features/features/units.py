"""Intensity units: raw grey levels (the default) or CellProfiler's 0..1 scale.

CellProfiler divides every image by its type's largest value (255 for 8-bit, 65535 for 16-bit)
when it loads it, so its intensity measurements (``Intensity_MeanIntensity_DNA`` 0.212) are the
raw ones (54.1 grey levels) divided by that value. :func:`scale_intensities` does this to a
site's measurements: every ``Image_Intensity_*`` and ``<Compartment>_Intensity_*`` value except
the fraction of saturated pixels (a fraction) and the mass displacement (pixels). Texture,
shape, correlation and counts do not depend on the scale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

UNITS = ("raw", "unit")  # raw grey levels, or divided by the dtype's maximum (CellProfiler's 0..1)
INTENSITY = re.compile(r"^(Image|Nuclei|Cells|Cytoplasm)_Intensity_(?!SaturatedFraction_|MassDisplacement_)")


def scale_intensities(values: Mapping[str, Any], dtype: np.dtype | type, units: str = "unit") -> dict[str, Any]:
    """A site's measurements with every intensity divided by its dtype's maximum.

    Parameters
    ----------
    values : mapping of str to float or ndarray
        A site's features (floats) or its objects (``(n,)`` arrays), keyed by feature name.
    dtype : numpy dtype or type
        The image's unsigned integer type (uint8: divide by 255, uint16: by 65535).
    units : {"unit", "raw"}, default "unit"
        ``"raw"`` returns the values unchanged (grey levels); ``"unit"`` scales the intensity
        measurements to CellProfiler's 0..1.

    Returns
    -------
    dict of str to float or ndarray
        A new dict, same keys; other features (texture, shape, fractions, counts) unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> f = {"Image_Intensity_Mean_DNA": 51.0, "Image_Intensity_SaturatedFraction_DNA": 0.5, "Nuclei_Count": 3.0}
    >>> scale_intensities(f, np.uint8)
    {'Image_Intensity_Mean_DNA': 0.2, 'Image_Intensity_SaturatedFraction_DNA': 0.5, 'Nuclei_Count': 3.0}
    """
    if units not in UNITS:
        raise ValueError(f"intensity units must be one of {', '.join(UNITS)}, got {units!r}")
    if units == "raw":
        return dict(values)
    top = float(np.iinfo(np.dtype(dtype)).max)
    return {k: (v / top if INTENSITY.match(k) else v) for k, v in values.items()}
