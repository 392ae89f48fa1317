"""Whole-image intensity features, computed exactly from each channel's histogram.

For 8- and 16-bit images every order statistic (median, percentiles, median absolute
deviation, min, max) is read off the cumulative histogram (``np.bincount``) instead of
sorting the pixels: faster than ``np.percentile`` and *bit-identical* to
``np.percentile(values, q, method="linear")`` (NumPy's default, Hyndman & Fan type 7).
Sums are accumulated in 64-bit integers, so they are exact.

Also provides :func:`first_order_statistics`, the IBSI first-order ("statistics") and
intensity-histogram features of any 1-D sample (e.g. the voxels inside a mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moa_features.features.segmentation import check_image

PERCENTILES: tuple[int, ...] = (1, 5, 25, 75, 95, 99)

FEATURE_DOCS: list[tuple[str, str, str]] = [
    (
        "Image_Intensity_Sum_<ch>",
        "grey value",
        "Sum of all pixel values of the channel (exact, 64-bit integer accumulation); the original analysis' headline "
        "feature.",
    ),
    ("Image_Intensity_Mean_<ch>", "grey value", "Mean pixel value."),
    (
        "Image_Intensity_Std_<ch>",
        "grey value",
        "Population standard deviation of the pixel values (ddof=0, as CellProfiler and np.std).",
    ),
    ("Image_Intensity_Min_<ch>", "grey value", "Smallest pixel value."),
    ("Image_Intensity_Max_<ch>", "grey value", "Largest pixel value."),
    (
        "Image_Intensity_Median_<ch>",
        "grey value",
        "Median pixel value (mean of the two middle values for an even pixel count).",
    ),
    (
        "Image_Intensity_Percentile_<q>_<ch>",
        "grey value",
        "q-th percentile, q in 1, 5, 25, 75, 95, 99; linear interpolation between order statistics, identical to "
        "np.percentile(values, q, method='linear').",
    ),
    (
        "Image_Intensity_MAD_<ch>",
        "grey value",
        "Median absolute deviation, median(|x - median(x)|), unscaled (scipy.stats.median_abs_deviation with scale=1).",
    ),
    (
        "Image_Intensity_SaturatedFraction_<ch>",
        "fraction (0-1)",
        "Fraction of pixels at the dtype maximum (255 for uint8, 65535 for uint16).",
    ),
]


def histogram(plane: np.ndarray) -> np.ndarray:
    """Pixel counts per grey value of an unsigned-integer image.

    Parameters
    ----------
    plane : ndarray of uint8 or uint16, any shape
        The pixels.

    Returns
    -------
    ndarray of int64, shape (256,) or (65536,)
        ``counts[v]`` = number of pixels of grey value ``v`` (one bin per value of the dtype).

    Raises
    ------
    ValueError
        If ``plane`` is not uint8 or uint16.

    Examples
    --------
    >>> import numpy as np
    >>> histogram(np.array([0, 0, 3], np.uint8))[:4].tolist()
    [2, 0, 0, 1]
    """
    if plane.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got dtype {plane.dtype}")
    return np.bincount(plane.ravel(), minlength=int(np.iinfo(plane.dtype).max) + 1)


def _percentiles_from_cumulative(cum: np.ndarray, values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.percentile(sample, q, method="linear")`` of a sample given as sorted support ``values``
    (float64, ascending) with cumulative counts ``cum``; same floating-point operations as NumPy."""
    n = int(cum[-1])
    virtual = (n - 1) * np.true_divide(q, 100)
    previous = np.floor(virtual)
    gamma = virtual - previous
    lo = previous.astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    a = values[np.searchsorted(cum, lo, side="right")]
    b = values[np.searchsorted(cum, hi, side="right")]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def percentiles_from_histogram(hist: np.ndarray, q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Percentiles of the sample whose grey-value histogram is ``hist``.

    Bit-identical to ``np.percentile(sample, q, method="linear")``.

    Parameters
    ----------
    hist : ndarray of int, shape (L,)
        ``hist[v]`` = count of grey value ``v`` (e.g. from :func:`histogram`).
    q : sequence of float or ndarray
        Percentiles, 0-100.

    Returns
    -------
    ndarray of float64, shape of ``q``
        The percentiles, in grey values.

    Raises
    ------
    ValueError
        If the histogram is empty (all counts 0).

    Examples
    --------
    >>> import numpy as np
    >>> percentiles_from_histogram(np.bincount([1, 2, 3, 4]), [50]).tolist()
    [2.5]
    """
    cum = np.cumsum(hist)
    if cum[-1] == 0:
        raise ValueError("cannot take percentiles of an empty histogram")
    support = np.arange(hist.size, dtype=np.float64)
    return _percentiles_from_cumulative(cum, support, np.asarray(q, dtype=np.float64))


def median_absolute_deviation_from_histogram(hist: np.ndarray) -> float:
    """Median absolute deviation ``median(|x - median(x)|)`` of a histogram's sample (exact).

    Parameters
    ----------
    hist : ndarray of int, shape (L,)
        ``hist[v]`` = count of grey value ``v``.

    Returns
    -------
    float
        The unscaled median absolute deviation, in grey values.

    Examples
    --------
    >>> import numpy as np
    >>> median_absolute_deviation_from_histogram(np.bincount([1, 2, 3, 4, 10]))
    1.0
    """
    median = float(percentiles_from_histogram(hist, [50.0])[0])
    present = np.flatnonzero(hist)
    deviation = np.abs(present - median)
    order = np.argsort(deviation, kind="stable")
    cum = np.cumsum(hist[present][order])
    return float(_percentiles_from_cumulative(cum, deviation[order], np.array([50.0]))[0])


def channel_intensity(plane: np.ndarray) -> dict[str, float]:
    """Intensity statistics of one plane, keyed by measure name (no prefix, no channel).

    Parameters
    ----------
    plane : ndarray of uint8 or uint16, shape (H, W)
        One channel.

    Returns
    -------
    dict of str to float
        ``Sum``, ``Mean``, ``Std``, ``Min``, ``Max``, ``Median``, ``Percentile_<q>`` (q in
        :data:`PERCENTILES`), ``MAD`` (grey values) and ``SaturatedFraction`` (0-1).

    Raises
    ------
    ValueError
        If the plane is empty or not uint8/uint16.

    Examples
    --------
    >>> import numpy as np
    >>> stats = channel_intensity(np.array([[0, 10], [20, 255]], np.uint8))
    >>> stats["Sum"], stats["Median"], stats["SaturatedFraction"]
    (285.0, 15.0, 0.25)
    """
    hist = histogram(plane)
    n = int(plane.size)
    if n == 0:
        raise ValueError("cannot measure the intensity of an empty image")
    grey = np.arange(hist.size, dtype=np.int64)
    total = int(hist @ grey)  # exact: int64 counts x int64 grey values
    mean = total / n
    present = np.flatnonzero(hist)
    deviation = present - mean
    variance = float(hist[present] @ (deviation * deviation)) / n
    qs = np.array([50.0, *PERCENTILES])
    cum = np.cumsum(hist)
    pct = _percentiles_from_cumulative(cum, grey.astype(np.float64), qs)
    out = {
        "Sum": float(total),
        "Mean": mean,
        "Std": float(np.sqrt(variance)),
        "Min": float(present[0]),
        "Max": float(present[-1]),
        "Median": float(pct[0]),
    }
    for q, value in zip(PERCENTILES, pct[1:]):
        out[f"Percentile_{q}"] = float(value)
    out["MAD"] = median_absolute_deviation_from_histogram(hist)
    out["SaturatedFraction"] = float(hist[-1]) / n
    return out


def intensity_features(image: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
    """Whole-image intensity features of every channel.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (C, H, W)
        One site.
    channels : sequence of str
        The C channel names, used as column suffixes.

    Returns
    -------
    dict of str to float
        ``{"Image_Intensity_<Measure>_<ch>": value}`` (measures and units in ``FEATURE_DOCS``).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    >>> intensity_features(image, ["w1"])["Image_Intensity_Median_w1"]
    7.5
    """
    image = check_image(image, channels)
    out: dict[str, float] = {}
    for plane, ch in zip(image, channels):
        for measure, value in channel_intensity(plane).items():
            out[f"Image_Intensity_{measure}_{ch}"] = value
    return out


def first_order_statistics(values: np.ndarray) -> dict[str, float]:
    """IBSI first-order statistics and intensity-histogram features of a 1-D sample.

    Definitions follow IBSI (Zwanenburg et al. 2020, chapter 3.3 and 3.4): variance, skewness
    and kurtosis are the biased (population) moments, kurtosis is the *excess* kurtosis,
    percentiles use linear interpolation (``np.percentile`` default), entropy is in bits. Note
    IBSI's "median absolute deviation" is the *mean* of ``|x - median|`` (unlike the
    per-channel ``MAD`` feature, which is the median of it).

    Parameters
    ----------
    values : ndarray, shape (n,)
        Intensities, n >= 1 (for the histogram features: discretised grey levels, whose
        distinct values are the histogram bins).

    Returns
    -------
    dict of str to float
        ``mean, variance, skewness, kurtosis, median, minimum, p10, p90, maximum, iqr, range,
        mean_absolute_deviation, robust_mean_absolute_deviation, median_absolute_deviation,
        coefficient_of_variation, quartile_coefficient_of_dispersion, energy,
        root_mean_square, entropy, uniformity``, in the units of ``values`` (or their square,
        or unitless for ratios). Undefined ratios (zero mean, zero variance) are NaN.

    Raises
    ------
    ValueError
        If ``values`` is not a non-empty 1-D array.

    Examples
    --------
    >>> import numpy as np
    >>> stats = first_order_statistics(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> stats["mean"], stats["variance"], stats["entropy"]
    (2.5, 1.25, 2.0)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty 1-D sample, got shape {x.shape}")
    n = x.size
    mean = x.mean()
    centred = x - mean
    m2 = np.mean(centred**2)
    p10, p25, median, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    robust = x[(x >= p10) & (x <= p90)]
    _, counts = np.unique(x, return_counts=True)
    prob = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        skewness = np.mean(centred**3) / m2**1.5
        kurtosis = np.mean(centred**4) / m2**2 - 3.0
        cov = np.sqrt(m2) / mean
        qcod = (p75 - p25) / (p75 + p25)
    return {
        "mean": float(mean),
        "variance": float(m2),
        "skewness": float(skewness),
        "kurtosis": float(kurtosis),
        "median": float(median),
        "minimum": float(x.min()),
        "p10": float(p10),
        "p90": float(p90),
        "maximum": float(x.max()),
        "iqr": float(p75 - p25),
        "range": float(x.max() - x.min()),
        "mean_absolute_deviation": float(np.mean(np.abs(centred))),
        "robust_mean_absolute_deviation": float(np.mean(np.abs(robust - robust.mean()))),
        "median_absolute_deviation": float(np.mean(np.abs(x - median))),
        "coefficient_of_variation": float(cov),
        "quartile_coefficient_of_dispersion": float(qcod),
        "energy": float(np.sum(x * x)),
        "root_mean_square": float(np.sqrt(np.mean(x * x))),
        "entropy": float(-np.sum(prob * np.log2(prob))),
        "uniformity": float(np.sum(prob * prob)),
    }
