"""What the phantom's modalities share beyond disease severity, and the exact oracle over it.

One parameter, ``SignalModel.shared`` (``rho`` in [0, 0.9]), sets how much the
four modalities tell about each other, as real ones do:

* **one lesion seen by every modality**: each modality channel's noise is
  ``sqrt(rho) * w + sqrt(1 - rho) * eps_k`` with a common lesion-load factor
  ``w`` (not the severity, so it carries no label information of its own);
  the correlation of two modality channels' noise is ``rho``;
* **CT and X-ray see the same lesion**: the X-ray opacity lies on the CT
  lesion's side for a share ``rho`` of patients, on a fair coin's side for the rest;
* **the radiology note describes the imaging**: it states the lesion side for
  a share ``rho`` of patients (omitted otherwise), wrongly for ``NOTE_SIDE_ERROR``
  of those; its lesion size and density words render the note's own evidence;
* **EEG focal slowing follows the lesion's hemisphere** for a share ``rho / 2``
  of patients (a fair coin for the rest), so CT and EEG sides concord with
  prior probability ``1/2 + rho/4``.

``rho = 0`` is the original, conditionally independent model. Sides and ``w``
are independent of severity, so the oracle factorises into a Gaussian
posterior of severity (correlated noise: one small linear solve per
missingness pattern) and a posterior of the CT x EEG concordance from the side
reports present; both are exact, and :func:`mnar_risk` integrates the
missingness pattern's own likelihood so the oracle over the modalities each
patient has is exact under MNAR too.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, ndtr

NOTE_SIDE_ERROR = 0.1
"""Share of notes that state the lesion side wrongly (a realistic transcription error)."""
MAX_SHARED = 0.9
"""Above this the modality noise covariance becomes near-singular (copies of one another)."""


def eeg_follow_share(shared: float) -> float:
    """Share of patients whose EEG slowing side is the lesion side (not a coin)."""
    return shared / 2.0


def concordance_prior(shared: float) -> float:
    """``P(CT side == EEG side)`` before any side is seen."""
    return 0.5 + eeg_follow_share(shared) / 2.0


def noise_cov(noise_sd: np.ndarray, is_modality: np.ndarray, shared: float) -> np.ndarray:
    """Covariance of the channels' noise: modality channels share ``shared`` of it, labs none."""
    corr = np.where(is_modality[:, None] & is_modality[None, :], shared, 0.0)
    np.fill_diagonal(corr, 1.0)
    return corr * noise_sd[:, None] * noise_sd[None, :]


def gaussian_posterior(evidence: np.ndarray, seen: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of severity ``z ~ N(0,1)`` given ``e = z + noise`` on the seen channels, per row.

    ``evidence`` and ``seen`` are ``(n, K)``; one solve per distinct pattern of seen channels.
    """
    n = len(evidence)
    mean, var = np.zeros(n), np.ones(n)
    patterns, inverse = np.unique(seen, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse.ravel() == p)
        idx = np.flatnonzero(pattern)
        if len(idx) == 0:
            continue
        w = np.linalg.solve(cov[np.ix_(idx, idx)], np.ones(len(idx)))
        precision = 1.0 + w.sum()
        mean[rows] = evidence[np.ix_(rows, idx)] @ w / precision
        var[rows] = 1.0 / precision
    return mean, var


def concordance_posterior(shared: float, ct_side: np.ndarray | None, xray_side: np.ndarray | None,
                          note_side: np.ndarray | None, eeg_side: np.ndarray | None) -> np.ndarray:
    """``P(CT side == EEG side | the side reports given)``, per row.

    Each argument is an array of 'L'/'R' (note: also '' = not stated), or None
    where that report is unseen (a per-row absence is passed as ''). The lesion
    side has a fair prior; the EEG side matches it with probability
    :func:`concordance_prior`; CT shows it exactly; the X-ray matches it with
    probability ``(1 + shared) / 2``; a stated note side with ``1 - NOTE_SIDE_ERROR``.
    """
    prior = concordance_prior(shared)
    n = next(len(a) for a in (ct_side, xray_side, note_side, eeg_side, np.zeros(1)) if a is not None)
    if eeg_side is None:
        return np.full(n, prior)
    logodds = np.zeros(n)  # log P(lesion = L | reports) / P(lesion = R | reports)

    def add(report: np.ndarray | None, p_match: float) -> None:
        nonlocal logodds
        if report is None:
            return
        step = np.log(p_match) - np.log1p(-p_match) if p_match < 1.0 else 50.0
        report = np.asarray(report)
        logodds = logodds + np.where(report == "L", step, np.where(report == "R", -step, 0.0))

    add(ct_side, 1.0)
    add(xray_side, (1.0 + shared) / 2.0)
    add(note_side, 1.0 - NOTE_SIDE_ERROR)
    add(eeg_side, prior)
    p_left = expit(logodds)
    eeg = np.asarray(eeg_side)
    p_conc = np.where(eeg == "L", p_left, np.where(eeg == "R", 1.0 - p_left, prior))
    return np.clip(p_conc, 0.0, 1.0)


def mixture_risk(a: float, b: float, g: float, mean: np.ndarray, var: np.ndarray, p_conc: np.ndarray) -> np.ndarray:
    """``P(y=1)`` for ``z ~ N(mean, var)`` and concordance ``+1`` with probability ``p_conc`` (else ``-1``)."""
    scale = np.sqrt(1.0 + b * b * var)
    base = a + b * mean
    return p_conc * ndtr((base + g) / scale) + (1.0 - p_conc) * ndtr((base - g) / scale)


def mnar_risk(a: float, b: float, g: float, mean: np.ndarray, var: np.ndarray, p_conc: np.ndarray,
              present: np.ndarray, offset: float, slope: float, nodes: int = 60) -> np.ndarray:
    """:func:`mixture_risk` that also conditions on the missingness pattern under MNAR (quadrature over z).

    ``P(modality missing | z) = expit(offset - slope * z)``, and a patient who
    would miss every modality has one put back at random: the pattern's
    likelihood is ``prod p^miss (1-p)^present`` plus, for a single present
    modality, ``p^M / M``.
    """
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    z = mean[:, None] + np.sqrt(var)[:, None] * t[None, :]
    p = expit(offset - slope * z)
    n_present = present.sum(1)[:, None]
    n_mod = present.shape[1]
    like = p ** (n_mod - n_present) * (1.0 - p) ** n_present
    like = like + np.where(n_present == 1, p ** n_mod / n_mod, 0.0)
    weight = w[None, :] * like
    risk = p_conc[:, None] * ndtr(a + b * z + g) + (1.0 - p_conc[:, None]) * ndtr(a + b * z - g)
    return (weight * risk).sum(1) / weight.sum(1)
