"""IBSI-defined radiomics on a masked region: Otsu threshold, first-order statistics, grey-level co-occurrence.

Why here and in numpy: ``pyradiomics`` ships as a source archive whose build
needs numpy inside build isolation and a compiler, and scikit-image's
``graycomatrix`` is 2-D and has no mask. The definitions below follow the Image
Biomarker Standardisation Initiative (Zwanenburg et al., Radiology 2020;
https://ibsi.readthedocs.io): intensity statistics on the region's voxels,
fixed-bin-width discretisation, and a co-occurrence matrix merged over every
direction of the array's dimensionality (13 in 3-D, 4 in 2-D), symmetric,
distance 1. Nothing here knows what the image shows or how it was made.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage as ndi

FIRST_ORDER_NAMES: tuple[str, ...] = (
    "mean", "sd", "skewness", "excess kurtosis", "p10", "median", "p90", "iqr",
    "robust mad", "rms", "entropy", "uniformity",
)
"""IBSI first-order statistics (intensity-based and, for entropy/uniformity, intensity-histogram)."""

GLCM_NAMES: tuple[str, ...] = ("glcm contrast", "glcm homogeneity", "glcm correlation", "glcm energy",
                               "glcm joint entropy")
"""IBSI co-occurrence features: contrast, inverse difference moment, correlation, angular second moment, entropy."""


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance of ``values`` (Otsu 1979).

    Returns the upper edge of the best lower class; a constant input returns its value.
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = v.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    mu0 = s0 / np.maximum(w0, 1)
    mu1 = (float((counts * centres).sum()) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1 + int(np.argmax(between))])


def discretise(values: np.ndarray, lower: float, bin_width: float, n_bins: int) -> np.ndarray:
    """IBSI fixed bin size: ``floor((x - lower) / width) + 1``, clipped to ``1..n_bins`` (0 is kept for 'outside')."""
    levels = np.floor((np.asarray(values, np.float64) - lower) / bin_width).astype(np.int64) + 1
    return np.clip(levels, 1, n_bins)


def first_order(values: np.ndarray, lower: float, bin_width: float, n_bins: int) -> np.ndarray:
    """The :data:`FIRST_ORDER_NAMES` statistics of a region's intensities; zeros for fewer than 2 values.

    Entropy (bits) and uniformity come from the fixed-bin-width histogram
    (``lower``, ``bin_width``, ``n_bins``), as IBSI defines them; the robust mean
    absolute deviation uses the values between the 10th and 90th percentiles.
    """
    x = np.asarray(values, np.float64).ravel()
    if x.size < 2:
        return np.zeros(len(FIRST_ORDER_NAMES), np.float64)
    mean, sd = float(x.mean()), float(x.std())
    centred = x - mean
    skew = float(np.mean(centred ** 3) / sd ** 3) if sd > 0 else 0.0
    kurt = float(np.mean(centred ** 4) / sd ** 4 - 3.0) if sd > 0 else 0.0
    p10, p25, median, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    inner = x[(x >= p10) & (x <= p90)]
    robust_mad = float(np.mean(np.abs(inner - inner.mean()))) if inner.size else 0.0
    counts = np.bincount(discretise(x, lower, bin_width, n_bins), minlength=n_bins + 1)[1:]
    p = counts[counts > 0] / x.size
    return np.array([mean, sd, skew, kurt, p10, median, p90, p75 - p25, robust_mad,
                     float(np.sqrt(np.mean(x ** 2))), float(-(p * np.log2(p)).sum()), float((p ** 2).sum())])


def _directions(ndim: int) -> list[tuple[int, ...]]:
    """One offset per undirected neighbour direction at distance 1 (Chebyshev): 4 in 2-D, 13 in 3-D."""
    out = []
    for step in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [s for s in step if s]
        if nonzero and nonzero[0] > 0:
            out.append(step)
    return out


def _pair_slices(step: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index slices of every voxel and of its neighbour at ``step`` that both lie inside the array."""
    src = tuple(slice(max(0, -s), None if s <= 0 else -s) for s in step)
    dst = tuple(slice(max(0, s), None if s >= 0 else s) for s in step)
    return src, dst


def glcm(levels: np.ndarray, n_levels: int) -> np.ndarray:
    """Symmetric, normalised co-occurrence matrix ``(n_levels, n_levels)`` merged over all directions.

    ``levels`` holds grey levels ``1..n_levels`` inside the region and 0 outside;
    a pair counts only when both voxels are inside. All zeros when no pair is.
    """
    lv = np.asarray(levels, np.int64)
    counts = np.zeros(n_levels * n_levels, np.float64)
    for step in _directions(lv.ndim):
        src, dst = _pair_slices(step)
        a, b = lv[src].ravel(), lv[dst].ravel()
        keep = (a > 0) & (b > 0)
        counts += np.bincount((a[keep] - 1) * n_levels + (b[keep] - 1), minlength=n_levels * n_levels)
    matrix = counts.reshape(n_levels, n_levels)
    matrix = matrix + matrix.T
    total = matrix.sum()
    return matrix / total if total > 0 else matrix


def glcm_features(matrix: np.ndarray) -> np.ndarray:
    """The :data:`GLCM_NAMES` features of a normalised co-occurrence matrix; zeros for an empty one."""
    p = np.asarray(matrix, np.float64)
    if p.sum() <= 0:
        return np.zeros(len(GLCM_NAMES), np.float64)
    i, j = np.indices(p.shape) + 1
    d2 = (i - j) ** 2
    mu_i, mu_j = float((i * p).sum()), float((j * p).sum())
    sd_i = float(np.sqrt(((i - mu_i) ** 2 * p).sum()))
    sd_j = float(np.sqrt(((j - mu_j) ** 2 * p).sum()))
    corr = float(((i - mu_i) * (j - mu_j) * p).sum() / (sd_i * sd_j)) if sd_i > 0 and sd_j > 0 else 1.0
    nz = p[p > 0]
    return np.array([float((d2 * p).sum()), float((p / (1.0 + d2)).sum()), corr, float((p ** 2).sum()),
                     float(-(nz * np.log2(nz)).sum())])


def intensity_peak(values: np.ndarray, mask: np.ndarray, window: tuple[int, ...]) -> float:
    """IBSI global intensity peak: the highest mean intensity of a ``window`` neighbourhood inside ``mask``.

    IBSI averages over a 1 cm³ sphere; the normalised arrays carry no spacing, so
    the neighbourhood is a box of voxels (the caller picks about 1 cm³ at the
    contract's default spacing). Only neighbourhoods wholly inside the region
    count, so an edge against bone or air cannot raise the peak; NaN when none is.
    """
    m = np.asarray(mask, np.float64)
    inside = ndi.uniform_filter(m, size=window, mode="constant") > 1.0 - 1e-6
    if not inside.any():
        return float("nan")
    local = ndi.uniform_filter(np.where(mask, values, 0.0).astype(np.float64), size=window, mode="constant")
    return float(local[inside].max())
