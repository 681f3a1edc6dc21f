"""The varied head CT drawing (``--anatomy varied``): a head that sits, turns and tilts as patients do.

Why: the standard drawing (:mod:`ingestion.phantom.ct`) centres every head,
keeps it upright, gives each patient exactly one lesion at least +8 HU on a
uniform 40 HU brain, so a feature can find the lesion by a fixed HU offset or
the array's centre line. Here nothing of that holds:

* the head is shifted (+-20 mm in-plane, +-10 mm along z), turned in-plane
  (+-20 degrees), tilted (pitch +-15 degrees) and rolled (+-6 degrees);
* scalp, skull (3.5-9 mm, thicker at the back), a CSF rim, a cortical grey
  matter ribbon, white matter, deep grey nuclei and ventricles, with grey and
  white matter levels and their contrast (6-14 HU) drawn per patient;
* cupping (beam hardening: the brain's centre 0-12 HU darker), a smooth
  inhomogeneity field and quantum noise (sd 3-9 HU) drawn per patient;
* 0, 1 or 2 lesions. The lesion contrast is 3-45 HU over the tissue it lies in,
  so a faint lesion is within the grey/white difference and the noise.

What stays exact: the image renders only the latent CT evidence and side. The
contrast is a monotone function of the evidence (:func:`varied_lesion_contrast_hu`),
the same for every lesion of a patient; a patient has no lesion exactly when the
evidence is below :data:`NO_LESION_BELOW`, and a second lesion (same
hemisphere, a fair draw) carries no further evidence. Everything else is drawn
independently of the latents, so the oracle of :mod:`ingestion.phantom.signal_model`
stays the best risk any reader of the files can reach. (A patient without a lesion
shows no side: for them the CT cannot report the side the oracle conditions on.)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

VARIED_CT_VERSION = "head-ct-varied/1"
"""Recorded in the cohort's metadata; bump when the drawing changes."""
NO_LESION_BELOW = -1.2
"""CT evidence under which a patient has no lesion (about a quarter of patients at the default model)."""
SECOND_LESION_SHARE = 0.4
"""Share of patients with a lesion who have a second one (a fair draw: it adds no evidence)."""
AIR_HU = -1000.0


def varied_lesion_contrast_hu(evidence: float) -> float:
    """Lesion brightness over the tissue it lies in: softplus of the evidence, 3 HU upward, monotone."""
    return 3.0 + 9.0 * float(np.logaddexp(0.0, evidence))


def lesion_count(rng: np.random.Generator, evidence: float) -> int:
    """0 below :data:`NO_LESION_BELOW`, else 1 or (a fair draw) 2."""
    if evidence < NO_LESION_BELOW:
        return 0
    return 2 if rng.random() < SECOND_LESION_SHARE else 1


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head-to-scanner rotation: roll about y (posterior), pitch about x (left), then yaw about z."""
    cz, sz, cx, sx, cy, sy = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return rz @ rx @ ry


def _head_frame(rng: np.random.Generator, n_slices: int, size: int, pixel_mm: float,
                slice_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scanner grid -> head coordinates ``(u, v, w)`` (patient left, posterior, superior) after a random pose.

    Also returns the in-plane distance from the head's centre (for cupping), all float32 ``(D, H, W)``.
    """
    zc = (np.arange(n_slices) - (n_slices - 1) / 2.0) * slice_mm
    xy = (np.arange(size) - (size - 1) / 2.0) * pixel_mm
    shift = np.array([rng.uniform(-20, 20), rng.uniform(-20, 20), rng.uniform(-10, 10)])
    rot = _rotation(*np.radians([rng.uniform(-20, 20), rng.uniform(-15, 15), rng.uniform(-6, 6)]))
    z, y, x = np.meshgrid(zc - shift[2], xy - shift[1], xy - shift[0], indexing="ij", sparse=True)
    # head = R^T (scanner - shift): row j of R^T is column j of R
    u, v, w = (np.float32(rot[0, j]) * x + np.float32(rot[1, j]) * y + np.float32(rot[2, j]) * z for j in range(3))
    radial = np.sqrt(x**2 + y**2).astype(np.float32)
    return (np.broadcast_to(u, (n_slices, size, size)).astype(np.float32),
            np.broadcast_to(v, (n_slices, size, size)).astype(np.float32),
            np.broadcast_to(w, (n_slices, size, size)).astype(np.float32),
            np.broadcast_to(radial, (n_slices, size, size)))


def _ellipsoid(u: np.ndarray, v: np.ndarray, w: np.ndarray, centre: tuple[float, float, float],
               axes: tuple[float, float, float]) -> np.ndarray:
    """Normalised ellipsoid radius (1 on the surface) in head coordinates."""
    return np.sqrt(((u - centre[0]) / axes[0]) ** 2 + ((v - centre[1]) / axes[1]) ** 2
                   + ((w - centre[2]) / axes[2]) ** 2)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int) -> np.ndarray:
    """A smooth random field of unit-ish amplitude: coarse Gaussian noise zoomed to ``shape``."""
    grid = rng.standard_normal(tuple(max(2, s // coarse + 2) for s in shape))
    return ndi.zoom(grid, [s / g for s, g in zip(shape, grid.shape)], order=1)[tuple(slice(0, s) for s in shape)]


def _place_lesions(rng: np.random.Generator, count: int, side: str, brain: tuple[float, float, float],
                   ) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """Centres and semi-axes (mm, head frame) of ``count`` lesions in the ``side`` hemisphere, apart."""
    sign = 1.0 if side == "L" else -1.0
    lesions: list[tuple[tuple[float, float, float], tuple[float, float, float]]] = []
    for _ in range(count):
        radius = rng.uniform(6.0, 13.0)
        axes = tuple(float(radius * rng.uniform(0.75, 1.3)) for _ in range(3))
        for _attempt in range(50):  # bounded: accept the last draw if none fits
            centre = (sign * rng.uniform(0.15, 0.6) * brain[0], rng.uniform(-0.55, 0.55) * brain[1],
                      rng.normal(0.0, 0.12) * brain[2])
            inside = np.sqrt(sum((c / a) ** 2 for c, a in zip(centre, brain))) < 0.8
            apart = all(np.hypot(np.hypot(centre[0] - c[0], centre[1] - c[1]), centre[2] - c[2])
                        > max(axes) + max(a) + 10.0 for c, a in lesions)  # distinct lesions, not one
            if inside and apart:
                break
        lesions.append((centre, axes))
    return lesions


def varied_head_volume(rng: np.random.Generator, n_slices: int, size: int, pixel_mm: float, slice_mm: float,
                       evidence: float, side: str) -> np.ndarray:
    """HU volume ``(n_slices, size, size)`` of a posed, layered head with 0-2 lesions (see the module docstring)."""
    u, v, w, radial = _head_frame(rng, n_slices, size, pixel_mm, slice_mm)
    head = (70.0 + rng.normal(0, 4), 88.0 + rng.normal(0, 4), 0.6 * n_slices * slice_mm)
    scalp, skull = rng.uniform(3.0, 7.0), rng.uniform(3.5, 9.0)
    csf_rim, cortex = rng.uniform(1.0, 4.0), rng.uniform(2.5, 4.5)
    skull_in = tuple(a - scalp - skull * k for a, k in zip(head, (1.0, 1.25, 1.0)))
    brain = tuple(a - csf_rim for a in skull_in)
    white_hu = rng.normal(28.0, 2.0)
    grey_hu = white_hu + rng.uniform(6.0, 14.0)
    csf_hu = rng.uniform(2.0, 12.0)

    vol = np.full(u.shape, AIR_HU, np.float32)
    vol[_ellipsoid(u, v, w, (0, 0, 0), head) <= 1.0] = rng.uniform(10.0, 40.0)  # scalp
    vol[_ellipsoid(u, v, w, (0, 0, 0), tuple(a - scalp for a in head)) <= 1.0] = rng.uniform(650.0, 1100.0)
    vol[_ellipsoid(u, v, w, (0, 0, 0), skull_in) <= 1.0] = csf_hu
    r_brain = _ellipsoid(u, v, w, (0, 0, 0), brain)
    in_brain = r_brain <= 1.0
    ribbon = 1.0 - (cortex + 1.5 * _smooth_field(rng, u.shape, 6)) / min(brain[:2])  # gyri: thickness varies
    vol[in_brain] = np.where(r_brain[in_brain] > ribbon[in_brain], grey_hu, white_hu)
    for sign in (-1.0, 1.0):  # deep grey nuclei, then ventricles (bilateral, not quite symmetric)
        nucleus = _ellipsoid(u, v, w, (sign * rng.uniform(16, 24), rng.uniform(-8, 6), rng.normal(0, 4)),
                             (rng.uniform(6, 9), rng.uniform(11, 16), rng.uniform(8, 12)))
        vol[(nucleus <= 1.0) & in_brain] = grey_hu + rng.normal(0, 1.5)
    for sign in (-1.0, 1.0):
        ventricle = _ellipsoid(u, v, w, (sign * rng.uniform(6, 11), rng.uniform(-4, 4), rng.normal(0, 3)),
                               (rng.uniform(4, 8), rng.uniform(18, 26), 0.25 * head[2]))
        vol[ventricle <= 1.0] = csf_hu

    contrast = varied_lesion_contrast_hu(evidence)
    for centre, axes in _place_lesions(rng, lesion_count(rng, evidence), side, brain):
        d = _ellipsoid(u, v, w, centre, axes)
        profile = np.clip((1.0 - d) * min(axes) / 2.0 + 0.5, 0.0, 1.0)  # ~2 mm soft edge (partial volume)
        vol += np.where(in_brain, contrast * profile, 0.0).astype(np.float32)

    inside = _ellipsoid(u, v, w, (0, 0, 0), skull_in) <= 1.0
    cupping = rng.uniform(0.0, 12.0) * np.clip(1.0 - (radial / max(head[:2])) ** 2, 0.0, 1.0)
    drift = rng.uniform(0.5, 2.5) * _smooth_field(rng, u.shape, 10)
    vol -= np.where(inside, cupping - drift, 0.0).astype(np.float32)
    vol += rng.normal(0.0, rng.uniform(3.0, 9.0), vol.shape).astype(np.float32)
    return vol
