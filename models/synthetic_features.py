"""A synthetic FeatureSet with a known answer, for unit tests and benchmarks before real embeddings exist.

The latent model mimics the phantom cohort (``ingestion/phantom``): a shared
severity ``s`` seen by every modality, weak modality-specific evidence
``u_m``, and a subset of "interaction" patients whose label depends only on
the concordance of a CT "side" and an EEG "side" (``side_ct * side_eeg``),
which neither modality carries alone. Embeddings are random linear mixtures of
these latents plus noise, so a model must learn to unmix them. The oracle risk
(the Bayes-optimal probability given the latents) is returned so benchmarks can
report model AUROC / oracle AUROC.

``apply_missingness`` hides modalities of any FeatureSet (MCAR, or MNAR driven
by the modality's own first principal component), for missingness sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingestion.modalities import MODALITIES
from ingestion.pseudonym import pseudonymise
from models.feature_set import FeatureSet

COVARIATES = ("age", "sex", "crp", "wbc", "lactate")


@dataclass(frozen=True)
class SyntheticCohort:
    """Features as a model sees them, plus the answers only evaluation may read."""

    features: FeatureSet
    answers: pd.DataFrame  # patient_id, oracle_risk, interaction, latents, present_<m>


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


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


def synthetic_cohort(n: int = 500, dim: int | dict[str, int] = 32, missing_rate: float = 0.0,
                     mechanism: str = "mcar", interaction_fraction: float = 0.3,
                     specific: float = 0.8, embedding_noise: float = 0.1,
                     seed: int = 0) -> SyntheticCohort:
    """Draw ``n`` patients from the latent model; see the module docstring.

    Each modality's evidence is ``v_m = s + specific * e_m``: correlated across
    modalities through the shared severity ``s`` (what cross-profiling can
    rebuild) plus a part only that modality sees. The label logit is a weak
    function of each ``v_m`` (strong only summed over modalities), or, for
    interaction patients, of ``side_ct * side_eeg``. Embeddings encode the
    latents almost noiselessly (``embedding_noise`` per dimension), so the
    oracle risk is also close to the best achievable from the embeddings.
    """
    rng = np.random.default_rng(seed)
    dims = dim if isinstance(dim, dict) else {m: dim for m in MODALITIES}
    s = rng.normal(size=n)
    v = {m: s + specific * rng.normal(size=n) for m in MODALITIES}
    side = {"ct": rng.choice([-1.0, 1.0], n), "eeg": rng.choice([-1.0, 1.0], n)}
    interaction = rng.random(n) < interaction_fraction
    evidence = sum(v.values()) / 2.0
    logit = np.where(interaction, -0.2 + 0.3 * evidence + 3.5 * side["ct"] * side["eeg"], -0.4 + 1.5 * evidence)
    oracle = _sigmoid(logit)
    labels = (rng.random(n) < oracle).astype(np.int64)

    embeddings: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        cols = [v[m], rng.normal(size=n), rng.normal(size=n)]  # evidence + two nuisance factors
        if m in side:
            cols += [side[m], interaction.astype(float) * 2 - 1]
        latent = np.stack(cols, 1)
        mixing = rng.normal(size=(latent.shape[1], dims[m])) / np.sqrt(latent.shape[1])
        x = latent @ mixing + embedding_noise * rng.normal(size=(n, dims[m]))
        embeddings[m] = x.astype(np.float32)

    cov = np.stack([
        0.4 * s + rng.normal(size=n),            # age
        rng.choice([-1.0, 1.0], n),              # sex
        0.6 * s + 0.8 * rng.normal(size=n),      # crp
        0.3 * s + rng.normal(size=n),            # wbc
        0.5 * s + 0.9 * rng.normal(size=n),      # lactate
    ], 1)
    cov = ((cov - cov.mean(0)) / cov.std(0)).astype(np.float32)

    ids = tuple(pseudonymise(f"SYN{seed:04d}{i:06d}", "clinfuse-synthetic") for i in range(n))
    features = FeatureSet(ids, embeddings, np.ones((n, len(MODALITIES)), bool), cov, labels)
    if missing_rate > 0:
        features = apply_missingness(features, missing_rate, mechanism, seed + 1)
    answers = pd.DataFrame({"patient_id": ids, "oracle_risk": oracle, "interaction": interaction,
                            "s": s, **{f"v_{m}": v[m] for m in MODALITIES},
                            "side_ct": side["ct"], "side_eeg": side["eeg"],
                            **{f"present_{m}": features.mask[:, i] for i, m in enumerate(MODALITIES)}})
    return SyntheticCohort(features, answers)
