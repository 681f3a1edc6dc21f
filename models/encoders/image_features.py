"""Fixed radiomics blocks for the CT and X-ray encoders, on a region each image defines itself.

Why: the encoders' networks start untrained, and a fusion model should see
standard, reproducible image descriptors whether or not they have been
pretrained. The blocks are IBSI first-order statistics and grey-level
co-occurrence (GLCM) features (:mod:`models.encoders.radiomics`), computed on
regions found from the image alone: the body (air against tissue by Otsu's
threshold, largest connected component, holes filled) and, inside it, the
CT soft-tissue range or the X-ray lung fields (the darker Otsu class inside
the body, away from the image border). Nothing depends on where the anatomy
sits in the array or which side a finding is on: a shifted or mirrored image
gives the same block.

The encoder must not know the phantom cohort that tests the product: no
threshold, geometry, lesion count or side is taken from how that generator
draws its images (a test scans this package for it). The soft-tissue range is
the standard clinical soft-tissue window (level 40 HU, width 400 HU).

Intensity features are scaled to roughly unit range (HU / 100 for CT; X-ray
values are already in [0, 1]) so a fusion model without input standardisation
is not swamped by one column.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from models.encoders.radiomics import (FIRST_ORDER_NAMES, GLCM_NAMES, discretise, first_order, glcm,
                                       glcm_features, intensity_peak, otsu_threshold)

# -- CT ---------------------------------------------------------------------------
CT_HU_RANGE: tuple[float, float] = (-1024.0, 3071.0)
"""The range a 12-bit CT stores; values outside are clipped before thresholding."""
SOFT_TISSUE_HU: tuple[float, float] = (-160.0, 240.0)
"""IBSI range re-segmentation: the standard soft-tissue window (L 40, W 400 HU); bone, air and lung fall outside."""
CT_BODY_BIN_HU = 25.0
"""Fixed bin width (HU) of the body's intensity histogram (IBSI's usual CT choice)."""
CT_TISSUE_BIN_HU = 10.0
"""Fixed bin width (HU) inside the soft-tissue range: 40 grey levels for its histogram and GLCM."""
CT_PEAK_WINDOW: tuple[int, int, int] = (3, 5, 5)
"""Neighbourhood of the intensity peak: 12 x 10 x 10 mm, about IBSI's 1 cm³, at the default 4 x 2 x 2 mm grid."""
MIN_REGION_VOXELS = 50
"""Fewer voxels than this make no statistics: the block's part for that region is zeros."""

CT_FEATURE_NAMES: tuple[str, ...] = (
    *(f"body {n}" for n in FIRST_ORDER_NAMES),
    *(f"soft tissue {n}" for n in FIRST_ORDER_NAMES),
    *(f"soft tissue {n}" for n in GLCM_NAMES),
    "soft tissue peak above median",
    "soft tissue fraction of body",
)
"""Names of the CT block's columns, in order (documentation, plots and tests)."""


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill each axial slice's holes (lungs, sinuses, bowel gas are body even though they are air-dark)."""
    return np.stack([ndi.binary_fill_holes(s) for s in mask]) if mask.ndim == 3 else ndi.binary_fill_holes(mask)


def ct_body_mask(volume: np.ndarray) -> np.ndarray:
    """The patient's body in a CT volume: Otsu's air/tissue cut, opened, largest component, holes filled."""
    hu = np.clip(np.nan_to_num(np.asarray(volume, np.float32), nan=CT_HU_RANGE[0]), *CT_HU_RANGE)
    tissue = ndi.binary_opening(hu > otsu_threshold(hu), iterations=1)
    return _fill_holes_per_slice(_largest_component(tissue))


def _ct_first_order(hu: np.ndarray, lower: float, width: float, upper: float) -> np.ndarray:
    n_bins = int(np.ceil((upper - lower) / width))
    return first_order(hu / 100.0, lower / 100.0, width / 100.0, n_bins)


def ct_features(volume: np.ndarray) -> np.ndarray:
    """The CT block: float32 ``(len(CT_FEATURE_NAMES),)``; zeros where a region is (nearly) empty.

    First-order statistics of the body's HU, then of its soft-tissue voxels
    (IBSI range re-segmentation), the soft-tissue GLCM (10 HU bins, 13
    directions merged), the soft tissue's IBSI intensity peak above its median
    (a focal dense spot, wherever it lies) and the soft-tissue share of the body.
    """
    vol = np.nan_to_num(np.asarray(volume, np.float32), nan=CT_HU_RANGE[0])
    if vol.ndim != 3:
        raise ValueError(f"CT array must be (D, H, W), got shape {vol.shape}")
    vol = np.clip(vol, *CT_HU_RANGE)
    body = ct_body_mask(vol)
    out = np.zeros(len(CT_FEATURE_NAMES), np.float32)
    if body.sum() < MIN_REGION_VOXELS:
        return out
    n_fo = len(FIRST_ORDER_NAMES)
    out[:n_fo] = _ct_first_order(vol[body], CT_HU_RANGE[0], CT_BODY_BIN_HU, CT_HU_RANGE[1])
    tissue = body & (vol >= SOFT_TISSUE_HU[0]) & (vol <= SOFT_TISSUE_HU[1])
    out[-1] = tissue.sum() / body.sum()
    if tissue.sum() < MIN_REGION_VOXELS:
        return out
    out[n_fo:2 * n_fo] = _ct_first_order(vol[tissue], SOFT_TISSUE_HU[0], CT_TISSUE_BIN_HU, SOFT_TISSUE_HU[1])
    n_levels = int(np.ceil((SOFT_TISSUE_HU[1] - SOFT_TISSUE_HU[0]) / CT_TISSUE_BIN_HU))
    levels = np.where(tissue, discretise(vol, SOFT_TISSUE_HU[0], CT_TISSUE_BIN_HU, n_levels), 0)
    out[2 * n_fo:2 * n_fo + len(GLCM_NAMES)] = glcm_features(glcm(levels, n_levels))
    out[-2] = _peak_above_median(vol, tissue, CT_PEAK_WINDOW) / 100.0
    return out


def _peak_above_median(values: np.ndarray, region: np.ndarray, window: tuple[int, ...]) -> float:
    """IBSI global intensity peak of ``region`` minus its median: a focal dense spot wherever it lies; 0 if none."""
    peak = intensity_peak(values, region, window)
    return 0.0 if np.isnan(peak) else peak - float(np.median(values[region]))


# -- X-ray --------------------------------------------------------------------------
XRAY_LEVELS = 32
"""Grey levels of the X-ray histogram and GLCM (fixed bin width 1/32 on the [0, 1] scale)."""
XRAY_PEAK_WINDOW: tuple[int, int] = (5, 5)
"""Neighbourhood of the lung-field intensity peak, in pixels of the normalised radiograph."""
MIN_LUNG_COMPONENT = 0.01
"""A dark component inside the body counts as lung field when it covers at least 1 % of the body."""

XRAY_FEATURE_NAMES: tuple[str, ...] = (
    *(f"body {n}" for n in FIRST_ORDER_NAMES),
    *(f"lung field {n}" for n in FIRST_ORDER_NAMES),
    *(f"lung field {n}" for n in GLCM_NAMES),
    "lung field peak above median",
    "lung field fraction of body",
)
"""Names of the X-ray block's columns, in order."""


def _touching_border(labels: np.ndarray) -> np.ndarray:
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return np.unique(edges[edges > 0])


def xray_regions(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body and lung-field masks of a radiograph in [0, 1] (bright = dense), found from the image alone.

    Body: everything but the dark (Otsu) regions connected to the image border
    (air outside the patient, unexposed margins), largest component, holes
    filled. Lung fields: inside the body, the darker class of a second Otsu cut,
    in components that do not touch the border and cover at least 1 % of the
    body. When no such component exists (a film cropped through the lungs) the
    whole darker class inside the body is used, so the block is never empty.
    """
    img = np.asarray(image, np.float32)
    dark = img < otsu_threshold(img)
    labels, _ = ndi.label(dark)
    outside = np.isin(labels, _touching_border(labels))
    body = ndi.binary_fill_holes(_largest_component(~outside))
    if body.sum() < MIN_REGION_VOXELS:
        body = np.ones_like(body, bool)
    darker = body & (img < otsu_threshold(img[body]))
    labels, n = ndi.label(darker)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.flatnonzero(sizes >= MIN_LUNG_COMPONENT * body.sum())
    keep = np.setdiff1d(keep[keep > 0], _touching_border(labels))
    lung = np.isin(labels, keep) if keep.size else darker
    return body, lung


def xray_features(image: np.ndarray) -> np.ndarray:
    """The X-ray block: float32 ``(len(XRAY_FEATURE_NAMES),)``.

    First-order statistics of the body and of the lung fields, the lung fields'
    GLCM (32 levels, 4 directions merged), their intensity peak above their
    median and their share of the body. An
    opacity makes the lung fields denser and more heterogeneous wherever it is;
    no left/right comparison is made (the heart alone makes a chest asymmetric).
    """
    img = np.clip(np.nan_to_num(np.asarray(image, np.float32)), 0.0, 1.0)
    if img.ndim != 2:
        raise ValueError(f"X-ray array must be (H, W), got shape {img.shape}")
    body, lung = xray_regions(img)
    n_fo = len(FIRST_ORDER_NAMES)
    out = np.zeros(len(XRAY_FEATURE_NAMES), np.float32)
    width = 1.0 / XRAY_LEVELS
    out[:n_fo] = first_order(img[body], 0.0, width, XRAY_LEVELS)
    out[-1] = lung.sum() / body.sum()
    if lung.sum() < MIN_REGION_VOXELS:
        return out
    out[n_fo:2 * n_fo] = first_order(img[lung], 0.0, width, XRAY_LEVELS)
    levels = np.where(lung, discretise(img, 0.0, width, XRAY_LEVELS), 0)
    out[2 * n_fo:2 * n_fo + len(GLCM_NAMES)] = glcm_features(glcm(levels, XRAY_LEVELS))
    out[-2] = _peak_above_median(img, lung, XRAY_PEAK_WINDOW)
    return out
