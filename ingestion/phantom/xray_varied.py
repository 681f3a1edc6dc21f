"""The varied chest radiograph drawing (``--anatomy varied``): an asymmetric chest, posed, with devices.

Why: the standard drawing (:mod:`ingestion.phantom.xray`) is mirror-symmetric
but for the opacity, so comparing the two halves of the film finds it. A real
chest is not symmetric, and here:

* the heart shadow lies mostly on the patient's left (its size varies), with
  the aortic knob above it, so the left lung field is smaller; the right
  hemidiaphragm sits higher than the left by a varying amount;
* the patient is shifted, turned in-plane (+-7 degrees) and rotated about the
  long axis (one lung field wider, the mediastinum off the midline), and body
  size and soft-tissue density vary;
* ribs (spacing and phase vary), clavicles and a smooth lung-marking texture;
* devices drawn independently of the patient's state (they carry no label
  information here, so the oracle stays exact): ECG leads and wires, a central
  venous line, an endotracheal tube, a nasogastric tube, a pacemaker;
* quantum noise (sd 0.008-0.03 of full scale), a heel-effect gradient and an
  exposure curve (a monotone gamma).

What stays exact: the opacity's density is a monotone function of the latent
X-ray evidence (:func:`varied_opacity_density`), on the latent side
('L' = the patient's left, the image's right as a PA film is read), inside that
lung field; nothing else depends on the latents.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

VARIED_XRAY_VERSION = "chest-xr-varied/1"
"""Recorded in the cohort's metadata; bump when the drawing changes."""
METAL = 0.97
"""Density of a metal device (leads, pacemaker can)."""


def varied_opacity_density(evidence: float) -> float:
    """Peak density the opacity adds (fraction of full scale): softplus of the evidence, monotone."""
    return 0.02 + 0.07 * float(np.logaddexp(0.0, evidence))


def _pose(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates ``(u, v)`` of each pixel: u = patient's left (image right), v = down; in [-1, 1] units."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1.0) * 2.0 - 1.0
    angle = np.radians(rng.uniform(-7.0, 7.0))
    scale = rng.uniform(0.88, 1.06)
    x, y = x - rng.uniform(-0.07, 0.07), y - rng.uniform(-0.06, 0.06)
    u = (np.cos(angle) * x + np.sin(angle) * y) / scale
    v = (-np.sin(angle) * x + np.cos(angle) * y) / scale
    return u, v


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float,
             tilt: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius (1 on the boundary), the ellipse turned by ``tilt`` radians."""
    du, dv = u - cu, v - cv
    c, s = np.cos(tilt), np.sin(tilt)
    return np.sqrt(((c * du + s * dv) / au) ** 2 + ((-s * du + c * dv) / av) ** 2)


def _lung_fields(rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                 twist: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Right and left lung fields (bool), each cut below by its hemidiaphragm's dome; and the dome heights."""
    dome_right = rng.uniform(0.30, 0.45)
    dome_left = dome_right + rng.uniform(0.02, 0.14)  # the liver holds the right hemidiaphragm higher
    fields = []
    for sign, dome, width in ((-1.0, dome_right, 0.31), (1.0, dome_left, 0.28)):
        cu = sign * 0.42 + twist * 0.15
        lung = _ellipse(u, v, cu, -0.08, width * (1.0 + sign * twist), 0.66) <= 1.0
        below = v > dome + 0.2 * ((u - cu) / 0.3) ** 2  # the dome falls away to the costophrenic angle
        fields.append(lung & ~below)
    return fields[0], fields[1], (dome_right, dome_left)


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-9)


def _polyline(shape: tuple[int, int], u: np.ndarray, v: np.ndarray, points: np.ndarray, width: float) -> np.ndarray:
    """Soft mask of a polyline through ``points`` ((k, 2) in patient units): 1 on it, fading over ``width``."""
    best = np.full(shape, np.inf)
    for (u0, v0), (u1, v1) in zip(points[:-1], points[1:]):
        du, dv = u1 - u0, v1 - v0
        t = np.clip(((u - u0) * du + (v - v0) * dv) / max(du * du + dv * dv, 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.hypot(u - u0 - t * du, v - v0 - t * dv))
    return np.clip(1.0 - best / width, 0.0, 1.0)


def _devices(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Added density of the devices this film shows (each present by an independent draw)."""
    added = np.zeros(u.shape)
    if rng.random() < 0.5:  # ECG leads: metal buttons and their wires
        for _ in range(int(rng.integers(2, 6))):
            cu, cv, r = rng.uniform(-0.8, 0.8), rng.uniform(-0.7, 0.5), rng.uniform(0.015, 0.028)
            added = np.maximum(added, METAL * (np.hypot(u - cu, v - cv) <= r))
            end = (cu + rng.uniform(-0.6, 0.6), -1.2)
            wire = _polyline(u.shape, u, v, np.array([(cu, cv), ((cu + end[0]) / 2 + rng.normal(0, 0.1), cv - 0.4),
                                                      end]), 0.006)
            added = np.maximum(added, 0.5 * wire)
    if rng.random() < 0.3:  # central venous line: from below a clavicle into the superior vena cava
        s = float(rng.choice([-1.0, 1.0]))
        path = np.array([(s * 0.55, -0.62), (s * 0.25, -0.55), (0.06, -0.42), (0.05, rng.uniform(-0.15, 0.05))])
        added = np.maximum(added, 0.55 * _polyline(u.shape, u, v, path, 0.009))
    if rng.random() < 0.15:  # endotracheal tube down the trachea, its radio-opaque stripe
        tip = rng.uniform(-0.6, -0.35)
        added = np.maximum(added, 0.45 * _polyline(u.shape, u, v, np.array([(0.0, -1.1), (0.01, tip)]), 0.012))
    if rng.random() < 0.15:  # nasogastric tube: midline, then under the left hemidiaphragm
        path = np.array([(-0.02, -1.1), (0.02, 0.1), (0.2, 0.55), (0.4, 0.6)])
        added = np.maximum(added, 0.5 * _polyline(u.shape, u, v, path, 0.008))
    if rng.random() < 0.08:  # pacemaker: a can in the left upper chest, a lead to the right ventricle
        can = (np.abs(u - 0.55) < 0.09) & (np.abs(v + 0.5) < 0.06)
        lead = _polyline(u.shape, u, v, np.array([(0.5, -0.5), (0.1, -0.35), (-0.05, 0.0), (0.1, 0.3)]), 0.008)
        added = np.maximum(added, np.maximum(METAL * can, 0.7 * lead))
    return added


def varied_chest_density(rng: np.random.Generator, size: int, evidence: float, side: str | None) -> np.ndarray:
    """Density image in [0, 1] (1 = dense/bright on MONOCHROME2); see the module docstring.

    ``side`` puts the opacity in the patient's 'L' or 'R' lung field; None leaves it to a coin of ``rng``.
    """
    u, v = _pose(rng, size)
    twist = rng.uniform(-0.12, 0.12)  # rotation about the long axis: one lung field wider, mediastinum off centre
    body = _ellipse(u, v, 0.0, 0.05, rng.uniform(0.86, 0.96), 1.08) <= 1.0
    density = np.where(body, rng.uniform(0.48, 0.62), 0.03)
    right, left, _domes = _lung_fields(rng, u, v, twist)
    lungs = right | left
    lung_level = rng.uniform(0.14, 0.22)
    density = np.where(lungs, lung_level + 0.025 * _smooth(rng, u.shape, size / 40.0), density)
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(24.0, 32.0)
    density += 0.07 * (np.sin((v + 0.12 * u**2) * freq + phase) > 0.55) * lungs
    for sign in (-1.0, 1.0):  # clavicles
        density += 0.12 * _polyline(u.shape, u, v, np.array([(sign * 0.08, -0.62), (sign * 0.6, -0.78)]), 0.035)
    mid = twist * 0.3
    density += 0.25 * np.exp(-((u - mid) / 0.11) ** 2) * (v > -0.7)  # spine and mediastinum
    heart = _ellipse(u, v, mid + rng.uniform(0.1, 0.18), rng.uniform(0.26, 0.34), rng.uniform(0.3, 0.4),
                     rng.uniform(0.2, 0.26), np.radians(rng.uniform(-30.0, -10.0))) <= 1.0
    density = np.where(heart, np.maximum(density, rng.uniform(0.5, 0.62)), density)
    density += 0.12 * (_ellipse(u, v, mid + 0.1, -0.36, 0.07, 0.06) <= 1.0)  # aortic knob

    field = left if (side == "L" or (side is None and rng.random() < 0.5)) else right
    candidates = np.argwhere(field & ~heart)
    cv, cu = candidates[int(rng.integers(len(candidates)))] if len(candidates) else (size // 2, size // 2)
    width = rng.uniform(0.07, 0.15)
    blob = np.exp(-(((u - u[cv, cu]) ** 2 + (v - v[cv, cu]) ** 2) / (2 * width**2)))
    density += varied_opacity_density(evidence) * blob * ndi.gaussian_filter(lungs.astype(float), size / 100.0)

    density = np.maximum(density, _devices(rng, u, v))
    density += rng.uniform(-0.03, 0.03) * np.linspace(-1.0, 1.0, size)[:, None]  # heel effect
    density = np.clip(density, 0.0, 1.0) ** rng.uniform(0.85, 1.15)
    density += rng.normal(0.0, rng.uniform(0.008, 0.03), density.shape)
    return np.clip(density, 0.0, 1.0)
