"""Fit a CT volume's body into the contract's array shape, keeping the body and recording what is lost.

Why: a fixed spacing and a crop around the array's centre keep whatever fits in
``shape * spacing`` (128 mm at the defaults), which suits a head and cuts a
chest or abdomen CT to a third of its field of view without a word. Here the
body is found from the volume itself (voxels denser than the midpoint between
air and water, opened, its large connected components), the output window is
centred on the body's bounding box, and when the body does not fit at the
configured spacing every axis is coarsened by the same factor (aspect kept)
until it does. What leaves the window is measured and returned for the
manifest: the share of the acquired field of view kept and the share of
tissue voxels cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

BODY_HU = -500.0
"""Midway between air (-1000 HU) and water (0 HU): the usual air/tissue cut for a body outline."""
KEEP_COMPONENT = 0.1
"""Components at least this share of the largest one are body too (arms beside a chest, two legs)."""


@dataclass(frozen=True)
class Fit:
    """Where the output window sits on the resampled grid and how much it was coarsened."""

    start: tuple[int, ...]
    """First voxel of the window per axis on the resampled grid (may be negative: padding)."""
    window: tuple[int, ...]
    """Window size per axis in resampled voxels (``shape`` times ``scale``, rounded)."""
    scale: float
    """Factor >= 1 by which every axis's spacing was multiplied so the body fits."""


def body_mask(hu: np.ndarray) -> np.ndarray:
    """Tissue denser than :data:`BODY_HU`, opened once, keeping components >= 10 % of the largest."""
    tissue = ndi.binary_opening(np.asarray(hu) > BODY_HU, iterations=1)
    labels, n = ndi.label(tissue)
    if n == 0:
        return tissue
    sizes = np.bincount(labels.ravel())[1:]
    keep = 1 + np.flatnonzero(sizes >= KEEP_COMPONENT * sizes.max())
    return np.isin(labels, keep)


def plan_fit(mask: np.ndarray, shape: Sequence[int]) -> Fit:
    """The window centred on the mask's bounding box, coarsened by one common factor until the box fits."""
    full = np.asarray(mask.shape)
    target = np.asarray(shape, dtype=np.float64)
    if mask.any():
        idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
               for ax in range(mask.ndim)]
        lo = np.array([i[0] for i in idx])
        hi = np.array([i[-1] + 1 for i in idx])
    else:  # nothing denser than air: keep the whole field of view in view
        lo, hi = np.zeros_like(full), full
    extent = hi - lo
    scale = float(max(1.0, float(np.max(extent / target))))
    window = np.maximum(np.ceil(target * scale - 1e-9).astype(int), 1)
    start = np.floor((lo + hi) / 2.0 - window / 2.0).astype(int)
    return Fit(tuple(int(s) for s in start), tuple(int(w) for w in window), scale)


def _place(hu: np.ndarray, fit: Fit, shape: Sequence[int], fill: float) -> np.ndarray:
    """The window's voxels scaled into ``shape``, ``fill`` where the window reaches past the volume.

    Only the part of the window that lies inside the volume is scaled, then put
    at its place: padding is never averaged into tissue (a thin slab scaled along
    its short axis would otherwise fade towards air).
    """
    out = np.full(tuple(int(s) for s in shape), fill, np.float32)
    src, dst, size = [], [], []
    for s, w, n, m in zip(fit.start, fit.window, hu.shape, shape):
        a, b = max(s, 0), min(s + w, int(n))
        ratio = int(m) / w
        offset = min(int(round((a - s) * ratio)), int(m) - 1)
        length = max(1, min(int(round((b - a) * ratio)), int(m) - offset))
        src.append(slice(a, b))
        dst.append(slice(offset, offset + length))
        size.append(length)
    block = hu[tuple(src)]
    if block.shape != tuple(size):
        block = _zoom_area(block, size)
    out[tuple(dst)] = block
    return out


def _zoom_area(block: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Area (box) averaging to ``shape``: every source voxel counts, no aliasing when coarsening."""
    import torch
    from torch.nn import functional as F

    t = torch.from_numpy(np.ascontiguousarray(block, np.float32))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape), mode="area")[0, 0].numpy()


def fit_body(hu: np.ndarray, spacing_mm: Sequence[float], shape: Sequence[int],
             fill: float) -> tuple[np.ndarray, dict]:
    """``hu`` (on ``spacing_mm``) as float32 ``shape`` holding its whole body, and the fit's record.

    The record: ``output_spacing_mm`` (the configured spacing times ``fit_scale``),
    ``fit_scale``, ``body_extent_mm`` (bounding box), ``fov_kept_fraction`` (share of
    the resampled field of view's volume inside the window) and
    ``tissue_cropped_fraction`` (share of voxels denser than :data:`BODY_HU`
    outside it: the table, a limb cut by the scan, 0 when nothing is lost).
    """
    mask = body_mask(hu)
    fit = plan_fit(mask, shape)
    block = _place(hu, fit, shape, fill)
    full = np.asarray(hu.shape, np.float64)
    inside = [(max(s, 0), min(s + w, int(n))) for s, w, n in zip(fit.start, fit.window, hu.shape)]
    kept = float(np.prod([max(0, b - a) for a, b in inside]) / np.prod(full))
    tissue = np.asarray(hu) > BODY_HU
    in_window = tissue[tuple(slice(a, b) for a, b in inside)].sum()
    total = int(tissue.sum())
    if mask.any():
        nz = np.nonzero(mask)
        extent = [float((int(i.max()) - int(i.min()) + 1) * s) for i, s in zip(nz, spacing_mm)]
    else:
        extent = [0.0] * len(shape)
    record = {
        "output_spacing_mm": [round(float(s) * w / int(n), 4) for s, w, n in zip(spacing_mm, fit.window, shape)],
        "fit_scale": round(fit.scale, 4),
        "body_extent_mm": [round(e, 1) for e in extent],
        "fov_kept_fraction": round(kept, 4),
        "tissue_cropped_fraction": round(float(1.0 - in_window / total) if total else 0.0, 4),
    }
    return block.astype(np.float32, copy=False), record
