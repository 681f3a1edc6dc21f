"""The risk interval and the abstain rule of a trained model, both computed per patient.

Interval: for each patient, risk samples are the patient's logit(s) passed through
the bootstrap replicates of the calibrator (refitted on resamples of the
validation patients: how uncertain the score-to-risk map is) and, where a
modality was imputed, through Monte-Carlo redraws of the imputed embeddings
(each from its estimate plus Gaussian noise of its reported uncertainty); with
an ensemble (``TrainConfig.ensemble``), each member network's deviation from the
main network is added to every sample (the network's estimation uncertainty). The
interval is the central ``level`` quantile range of those samples, widened to
contain the point risk. Every random draw is seeded by the patient's own id, so
the interval never depends on the batch a patient arrives in.

Abstain: a patient is not given a class when no modality was available, when the
imputed modalities flip the class or carry most of the contribution, when the
interval is wider than ``abstain_width``, or when the risk is within
``abstain_band`` of the threshold; the reason says which.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np


def patient_rng(seed: int, patient_id: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the patient (not on its row in a batch)."""
    return np.random.default_rng([int(seed), int(hashlib.sha256(str(patient_id).encode()).hexdigest()[:12], 16)])


def imputation_draws(patient_ids: Sequence[str], rows: np.ndarray, embeddings: dict[str, np.ndarray],
                     uncertainty: np.ndarray, modalities: Sequence[str], n_mc: int,
                     seed: int) -> dict[str, np.ndarray]:
    """``{modality: (n_mc * len(rows), dim)}`` redrawn embeddings, draw-major, patient-seeded noise."""
    out = {m: np.zeros((n_mc, len(rows), embeddings[m].shape[1]), np.float32) for m in modalities}
    for r, row in enumerate(rows):
        rng = patient_rng(seed, patient_ids[row])
        for j, m in enumerate(modalities):
            x = embeddings[m][row]
            sd = float(np.nan_to_num(uncertainty[row, j]))
            out[m][:, r] = x + sd * rng.standard_normal((n_mc, x.shape[0]))
    return {m: v.reshape(n_mc * len(rows), -1) for m, v in out.items()}


def risk_interval(risk: np.ndarray, logit_samples: np.ndarray, replicates: Sequence[Callable[[np.ndarray], np.ndarray]],
                  level: float, member_risks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per patient from ``logit_samples`` (S, N) through every calibrator replicate.

    ``member_risks`` (K, N), the risks of an ensemble of networks fitted on bootstrap
    resamples of the training patients, add their deviation from ``risk`` to every
    sample (the network's own uncertainty on top of calibration and imputation).
    """
    if not len(replicates):
        return risk.copy(), risk.copy()
    samples = np.concatenate([np.asarray(f(logit_samples)) for f in replicates], axis=0)  # (R*S, N)
    if member_risks is not None and len(member_risks):
        deltas = np.concatenate([np.zeros((1, len(risk))), np.asarray(member_risks) - risk[None]], axis=0)
        samples = np.clip(samples[None] + deltas[:, None], 0.0, 1.0).reshape(-1, len(risk))
    q = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [q, 1.0 - q], axis=0)
    return np.minimum(low, risk), np.maximum(high, risk)


def abstain_decisions(*, risk: np.ndarray, low: np.ndarray, high: np.ndarray, present: np.ndarray,
                      imputed: np.ndarray, contrib: np.ndarray, no_imputed_risk: np.ndarray,
                      modalities: Sequence[str], threshold: float, share: float, width: float,
                      band: float) -> tuple[np.ndarray, list[str]]:
    """(abstain flags, reasons): the first rule that applies to each patient, in the order of the docstring."""
    n = len(risk)
    abstain, reasons = np.zeros(n, bool), [""] * n
    c = np.nan_to_num(contrib)
    cls = risk >= threshold
    for i in range(n):
        reason = ""
        if not present[i].any():
            reason = "no modality available: prediction from covariates only"
        elif imputed[i].any():
            total = np.abs(c[i]).sum()
            frac = abs(c[i][imputed[i]].sum()) / total if total > 0 else 0.0
            names = ", ".join(m for m, f in zip(modalities, imputed[i]) if f)
            if (no_imputed_risk[i] >= threshold) != cls[i]:
                reason = f"class flips when imputed modalities ({names}) are removed"
            elif frac > share:
                reason = f"imputed modalities ({names}) carry {frac:.0%} of the contribution (> {share:.0%})"
        if not reason and high[i] - low[i] > width:
            reason = f"risk interval {low[i]:.0%}-{high[i]:.0%} is wider than {width:.0%}"
        if not reason and abs(risk[i] - threshold) < band:
            reason = f"risk {risk[i]:.1%} is within {band:.0%} of the decision threshold {threshold:.0%}"
        abstain[i], reasons[i] = bool(reason), reason
    return abstain, reasons
