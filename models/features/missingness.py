"""Hiding modalities of any FeatureSet, for missingness sweeps and robustness studies.

MCAR hides uniformly at random; MNAR hides a modality with a probability driven by
the value that goes missing (its own first principal component), so it works on any
FeatureSet, simulated or real.
"""

from __future__ import annotations

import numpy as np

from models.features.feature_set import FeatureSet


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def missingness_mask(scores: np.ndarray, rate: float, mechanism: str,
                     rng: np.random.Generator, strength: float = 1.5) -> np.ndarray:
    """Boolean "hide" vector with mean close to ``rate``.

    MCAR hides uniformly at random; MNAR hides with probability
    ``sigmoid(b + strength * z)`` where ``z`` is the standardised ``scores``
    (the value that goes missing), ``b`` solved by bisection so the mean is ``rate``.
    """
    n = len(scores)
    if rate <= 0:
        return np.zeros(n, bool)
    if mechanism == "mcar":
        return rng.random(n) < rate
    if mechanism != "mnar":
        raise ValueError(f"unknown missingness mechanism {mechanism!r}: use 'mcar' or 'mnar'")
    z = (scores - scores.mean()) / (scores.std() + 1e-9)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(mid + strength * z).mean() < rate:
            lo = mid
        else:
            hi = mid
    return rng.random(n) < _sigmoid((lo + hi) / 2 + strength * z)


def _first_pc(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[0]


def apply_missingness(features: FeatureSet, rate: float | dict[str, float], mechanism: str = "mcar",
                      seed: int = 0) -> FeatureSet:
    """Hide extra modalities at ``rate`` (per modality) on top of what is already missing.

    MNAR uses each modality's own first principal component (computed on the
    rows where it is present) as the value that drives its missingness, so it
    works on any FeatureSet, synthetic or real.
    """
    rng = np.random.default_rng(seed)
    mask = features.mask.copy()
    for i, m in enumerate(features.modalities):
        r = rate[m] if isinstance(rate, dict) else rate
        present = mask[:, i]
        if r <= 0 or present.sum() < 3:
            continue
        scores = np.zeros(len(features))
        scores[present] = _first_pc(features.embeddings[m][present])
        hide = missingness_mask(scores[present], r, mechanism, rng)
        idx = np.flatnonzero(present)[hide]
        mask[idx, i] = False
    return features.with_mask(mask)
