"""A feature-level simulator of the phantom cohort: embeddings drawn from the phantom's own signal model.

Why it exists: unit tests and parameter sweeps need features with a known
answer in milliseconds, where the files take minutes to generate, ingest and
encode. The latents come from :func:`ingestion.phantom.sample_latents` (same
severity, evidence channels, sides, shared-information parameter, missingness
and exact oracles as the files). Each modality's embedding is a random linear
mixture of what that modality's files show -- its evidence, the side it shows
(CT lesion, X-ray opacity, EEG slowing; the note's stated side, 0 when none)
and two nuisance factors -- plus noise, so a model must learn to unmix them.
Nothing only the answers know (``z``, ``interaction``, ``concordant``, the
lesion-load factor) enters any embedding or covariate; the answers table
carries them for evaluation alone.

It lives apart from ``models.features``: feature code must not know how the
phantom is drawn; only the ``--synthetic N`` cohorts, tests and benchmarks use it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ingestion.deid.pseudonym import pseudonymise
from ingestion.modalities import PHANTOM_MODALITIES as MODALITIES  # the phantom's draws, not ECG
from ingestion.phantom.signal_model import SignalModel, lab_values, sample_latents
from models.features.feature_set import FeatureSet

COVARIATES = ("age", "sex", "crp", "wbc", "lactate")
SIDE_COLUMNS = {"ct": "ct_side", "xray": "xray_side", "eeg": "eeg_side", "note": "note_side"}
"""The side each modality's files show (what an encoder can read), never the concordance itself."""


@dataclass(frozen=True)
class SyntheticCohort:
    """Features as a model sees them, plus the answers only evaluation may read."""

    features: FeatureSet
    answers: pd.DataFrame  # patient_id (pseudonym), label, oracle risks, interaction, latents, present_<m>


def signal_model_for(interaction_fraction: float | None, shared: float) -> SignalModel:
    """The phantom's model, or one where the CT x EEG concordance decides a share of the label.

    ``interaction_fraction`` 0 removes the interaction term, 1 makes the label
    depend on the concordance alone (severity weight 0); None keeps the
    phantom's defaults.
    """
    base = SignalModel(shared=shared)
    if interaction_fraction is None:
        return base
    f = float(np.clip(interaction_fraction, 0.0, 1.0))
    return replace(base, intercept=base.intercept * (1 - f), severity_weight=base.severity_weight * (1 - f),
                   interaction_weight=3.0 * f)


def _observables(latents: pd.DataFrame, m: str) -> np.ndarray:
    """What modality ``m``'s files show: evidence and side (+1 left, -1 right, 0 not stated)."""
    side = latents[SIDE_COLUMNS[m]].to_numpy(object)
    signed = np.where(side == "L", 1.0, np.where(side == "R", -1.0, 0.0))
    return np.column_stack([latents[f"ev_{m}"].to_numpy(float), signed])


def _covariates(latents: pd.DataFrame) -> np.ndarray:
    """Standardised age, sex (+-1) and log lab values, as the cohort table would give them."""
    labs = np.log(lab_values(latents).to_numpy(float))
    cov = np.column_stack([latents["age"].to_numpy(float), np.where(latents["sex"] == "F", 1.0, -1.0), labs])
    return ((cov - cov.mean(0)) / (cov.std(0) + 1e-9)).astype(np.float32)


def synthetic_cohort(n: int = 500, dim: int | dict[str, int] = 32, missing_rate: float = 0.0,
                     mechanism: str = "mcar", interaction_fraction: float | None = None,
                     shared: float = 0.0, embedding_noise: float = 0.1, seed: int = 0) -> SyntheticCohort:
    """Draw ``n`` patients from the phantom's signal model and embed what each modality shows.

    ``missing_rate``/``mechanism`` use the phantom's own missingness (MNAR:
    sicker patients miss less), so ``oracle_risk_available`` in the answers is
    exact. ``shared`` is :attr:`ingestion.phantom.SignalModel.shared`;
    ``interaction_fraction`` see :func:`signal_model_for`.
    """
    rng = np.random.default_rng([seed, 9])
    model = signal_model_for(interaction_fraction, shared)
    latents = sample_latents(n, seed=seed, missing_rate=missing_rate, mechanism=mechanism, model=model)
    dims = dim if isinstance(dim, dict) else {m: dim for m in MODALITIES}
    embeddings: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        latent = np.column_stack([_observables(latents, m), rng.normal(size=(n, 2))])
        mixing = rng.normal(size=(latent.shape[1], dims[m])) / np.sqrt(latent.shape[1])
        x = latent @ mixing + embedding_noise * rng.normal(size=(n, dims[m]))
        embeddings[m] = x.astype(np.float32)
    mask = np.column_stack([latents[f"present_{m}"].to_numpy(bool) for m in MODALITIES])
    for i, m in enumerate(MODALITIES):
        embeddings[m][~mask[:, i]] = 0.0
    ids = tuple(pseudonymise(f"SYN{seed:04d}{i:06d}", "clinfuse-synthetic") for i in range(n))
    labels = latents["label"].to_numpy(np.int64)
    features = FeatureSet(ids, embeddings, mask, _covariates(latents), labels, modalities=tuple(MODALITIES))
    answers = latents.drop(columns=["patient_id"]).assign(patient_id=list(ids))
    return SyntheticCohort(features, answers)


SYNTHETIC_MISSING_RATE = 0.2
"""Share of modalities missing at random in a synthetic cohort (``--synthetic N``)."""


def synthetic_features(n: int, seed: int) -> tuple[FeatureSet, "pd.DataFrame"]:
    """A synthetic cohort of ``n`` labelled patients and its answers table (``--synthetic N``)."""
    cohort = synthetic_cohort(n, missing_rate=SYNTHETIC_MISSING_RATE, seed=seed)
    return cohort.features, cohort.answers
