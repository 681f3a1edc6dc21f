"""Fixed, hand-crafted feature blocks for the CT and X-ray encoders.

Why: a randomly initialised (or briefly pretrained) 3D/2D ResNet does not reliably
expose the findings a radiologist reads first, a small hyperdense focus in one
hemisphere or a dense opacity in one lung field, and a linear probe on its
embedding hovered near chance on the phantom cohort. These blocks measure those
findings directly on the normalised array (docs/CONTRACTS.md), deterministically
and without learned weights, so every downstream model sees them whether or not
the network has been pretrained (the EEG encoder does the same with band powers).

Laterality: the CT array is ``(D, H, W)`` = (superior, posterior, patient-left),
so columns ``W // 2:`` are the patient's LEFT hemisphere. The X-ray is shown as a
radiograph (columns towards the patient's left for a PA view), so columns
``W // 2:`` are the image's right half. Signed features are ``left - right`` in
those terms; ``ct side`` is ``+1`` for a left, ``-1`` for a right finding, so a fusion
model can learn side concordance with the EEG's hemispheric slowing.

Every value is scaled to roughly unit range (HU / 10, percentages, fractions) so a
fusion model without input standardisation is not swamped by one feature.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# -- CT ---------------------------------------------------------------------------
CT_TISSUE_HU: tuple[float, float] = (-20.0, 150.0)
"""HU band of brain parenchyma, CSF and hyperdense lesions; bone and air fall outside."""
CT_HIST_EDGES: tuple[float, ...] = tuple(float(v) for v in range(0, 121, 20))
"""Brain-window histogram bins (HU): 6 bins of 20 HU from 0 to 120 (coarse: finer bins only add noise)."""
CT_EXCESS_HU: tuple[float, ...] = (8.0, 15.0, 25.0)
"""Thresholds on HU above the median brain tissue that count a voxel as lesion-like."""
CT_SIDE_STATS: tuple[str, ...] = ("p99", "p99.9", *(f"pct>{t:g}HU" for t in CT_EXCESS_HU))

CT_FEATURE_NAMES: tuple[str, ...] = (
    *(f"hist {lo:g}-{hi:g} HU" for lo, hi in zip(CT_HIST_EDGES[:-1], CT_HIST_EDGES[1:])),
    *(f"max {s}" for s in CT_SIDE_STATS),
    *(f"|L-R| {s}" for s in CT_SIDE_STATS),
    "L-R p99", "side", "tissue median HU/100", "tissue fraction",
)
"""Names of the CT block's columns, in order (documentation, plots and tests)."""


def _tissue_masks(vol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels in the tissue HU band (opened), and the same eroded away from bone/air partial-volume edges."""
    tissue = ndi.binary_opening((vol > CT_TISSUE_HU[0]) & (vol < CT_TISSUE_HU[1]), iterations=1)
    return tissue, ndi.binary_erosion(tissue, iterations=2)


def _side_stats(excess: np.ndarray) -> np.ndarray:
    """p99, p99.9 of HU excess (/10) and % of voxels above each threshold, for one hemisphere."""
    if excess.size < 10:
        return np.zeros(len(CT_SIDE_STATS), np.float32)
    p99, p999 = np.percentile(excess, [99.0, 99.9])
    pct = [100.0 * float(np.mean(excess > t)) for t in CT_EXCESS_HU]
    return np.array([p99 / 10.0, p999 / 10.0, *pct], np.float32)


def ct_features(volume: np.ndarray) -> np.ndarray:
    """The CT block: float32 ``(len(CT_FEATURE_NAMES),)``; zeros when no brain tissue is found.

    Lightly smoothed HU (noise would otherwise dominate the upper percentiles) minus
    the median tissue HU gives each voxel's excess density; per hemisphere its upper
    percentiles and the share of lesion-like voxels measure a hyperdense focus; the
    block keeps their max and ``|L - R|`` (the focus whichever side it is on), the
    signed ``L - R`` p99 and ``side`` (which side). Per-side values themselves are
    left out: they add dimensions, not information a linear model can use.
    """
    vol = np.nan_to_num(np.asarray(volume, np.float32), nan=-1024.0)
    if vol.ndim != 3:
        raise ValueError(f"CT array must be (D, H, W), got shape {vol.shape}")
    tissue, mask = _tissue_masks(vol)
    if mask.sum() < 100:
        return np.zeros(len(CT_FEATURE_NAMES), np.float32)
    median = float(np.median(vol[mask]))
    # bone and air are replaced by the median before smoothing, so they cannot bleed into tissue voxels
    smooth = ndi.gaussian_filter(np.where(tissue, vol, median), sigma=(0.5, 1.0, 1.0))
    hist = np.histogram(vol[mask], bins=CT_HIST_EDGES)[0] / mask.sum()
    half = vol.shape[2] // 2
    right = _side_stats(smooth[:, :, :half][mask[:, :, :half]] - median)
    left = _side_stats(smooth[:, :, half:][mask[:, :, half:]] - median)
    lesion_pct = 2  # index of "pct > 8 HU": the most reliable side indicator on the phantom
    side = float(np.sign(left[lesion_pct] - right[lesion_pct]))
    return np.concatenate([
        hist, np.maximum(left, right), np.abs(left - right),
        [left[0] - right[0], side, median / 100.0, mask.mean()],
    ]).astype(np.float32)


# -- X-ray --------------------------------------------------------------------------
XRAY_HIST_BINS = 8
XRAY_DENSE_LEVELS: tuple[float, ...] = (0.5, 0.65, 0.8)
"""Intensity levels (bright = dense) whose exceeded-area fraction is reported."""
XRAY_ASYM_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.2)
"""Left/right density differences whose area (%) is reported."""

XRAY_FEATURE_NAMES: tuple[str, ...] = (
    *(f"hist {i}/{XRAY_HIST_BINS}" for i in range(XRAY_HIST_BINS)),
    *(f"area>{t:g}" for t in XRAY_DENSE_LEVELS),
    "|asym| p99", "|asym| p99.9", "|asym| max",
    *(f"pct |asym|>{t:g}" for t in XRAY_ASYM_LEVELS),
    "L-R asym", "local contrast sd", "local contrast p99",
)
"""Names of the X-ray block's columns, in order."""


def xray_features(image: np.ndarray) -> np.ndarray:
    """The X-ray block: float32 ``(len(XRAY_FEATURE_NAMES),)``.

    Intensity histogram and dense-area fractions capture added density anywhere;
    the mirror asymmetry ``smooth - smooth[:, ::-1]`` compares each lung field with
    its contralateral twin (as a reader does), which cancels the symmetric anatomy
    (mediastinum, ribs, body outline) and leaves a one-sided opacity; local contrast
    (image minus a wide blur) summarises focal structure. Assumes a roughly centred,
    frontal radiograph; an off-centre film raises the asymmetry of every image alike.
    """
    img = np.clip(np.nan_to_num(np.asarray(image, np.float32)), 0.0, 1.0)
    if img.ndim != 2:
        raise ValueError(f"X-ray array must be (H, W), got shape {img.shape}")
    hist = np.histogram(img, bins=XRAY_HIST_BINS, range=(0.0, 1.0))[0] / img.size
    dense = [float(np.mean(img > t)) for t in XRAY_DENSE_LEVELS]
    smooth = ndi.gaussian_filter(img, sigma=2.0)
    half = img.shape[1] // 2
    diff = (smooth - smooth[:, ::-1])[:, img.shape[1] - half:]  # image-right half vs its mirror
    mag = np.abs(diff)
    asym = [*(10.0 * np.percentile(mag, [99.0, 99.9])), 10.0 * mag.max(),
            *(100.0 * float(np.mean(mag > t)) for t in XRAY_ASYM_LEVELS)]
    signed = 100.0 * float(np.mean(np.where(mag > XRAY_ASYM_LEVELS[0], diff, 0.0)))
    local = smooth - ndi.gaussian_filter(img, sigma=10.0)
    contrast = [10.0 * float(local.std()), 10.0 * float(np.percentile(local, 99.0))]
    return np.concatenate([hist, dense, asym, [signed], contrast]).astype(np.float32)
