"""The held-out split: which labelled patients no model is ever trained on.

One definition, used by training (to keep them out), by evaluation (to score
on them) and by the champion gate (to compare two models on the same patients).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from models.features.feature_set import FeatureSet

HELD_OUT_FRACTION = 0.2
"""Share of labelled patients kept out of every training run by default."""


def held_out_mask(patient_ids: tuple[str, ...], fraction: float, seed: int) -> np.ndarray:
    """True for held-out patients, decided per patient by a keyed hash of the pseudonym.

    Why a hash rather than a random split: a patient stays on the same side as the
    cohort grows, so today's champion and tomorrow's candidate are compared on
    patients neither was trained on.
    """
    cut = int(fraction * 10_000)
    return np.array([int(hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:8], 16) % 10_000 < cut
                     for p in patient_ids], dtype=bool)


def split_held_out(features: FeatureSet, fraction: float, seed: int) -> tuple[FeatureSet, FeatureSet]:
    """``(training patients, held-out patients)`` by :func:`held_out_mask`."""
    mask = held_out_mask(features.patient_ids, fraction, seed)
    return features.subset(~mask), features.subset(mask)


def labelled(features: FeatureSet) -> FeatureSet:
    """Patients with a known label only (prediction-only patients have none), labels as int64."""
    if features.labels is None:
        raise ValueError("the cohort has no labels: training needs a cohort table with a 'label' column")
    keep = np.isfinite(np.asarray(features.labels, dtype=float))
    out = features.subset(keep)
    return replace(out, labels=np.asarray(out.labels).astype(np.int64))
