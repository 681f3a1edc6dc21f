"""Clinician-confirmed outcomes as training labels, with their provenance.

The train flow reads the confirmed outcomes from the reviews store
(``flows.access.reviews.confirmed_labels``) and hands them to the training and
evaluation stages as plain ``(pseudonym, label)`` pairs; the stages call
:func:`merge_review_labels` on the features they load from the cohort: a
patient's newest confirmed review (positive = 1, negative = 0) becomes its
label, overriding the cohort's label when they differ (the clinician saw the
outcome; the export may predate it). The returned :class:`LabelProvenance` says
how many labels came from where, for MLflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Mapping

import numpy as np

from models.features.feature_set import FeatureSet


@dataclass(frozen=True)
class LabelProvenance:
    """Counts over the features' patients; ``from_review`` includes the overrides."""

    from_cohort: int
    from_review: int
    review_overrides: int
    reviews_without_features: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def merge_review_labels(features: FeatureSet, confirmed: Mapping[str, int]) -> tuple[FeatureSet, LabelProvenance]:
    """``features`` with reviewed patients' labels set from ``confirmed``; unlabelled patients stay NaN."""
    n = len(features)
    labels = (np.full(n, np.nan) if features.labels is None
              else np.asarray(features.labels, dtype=float).copy())
    cohort_known = np.isfinite(labels)
    from_review = overrides = 0
    index = {pid: i for i, pid in enumerate(features.patient_ids)}
    for pid, label in confirmed.items():
        i = index.get(pid)
        if i is None:
            continue
        from_review += 1
        overrides += bool(cohort_known[i] and labels[i] != label)
        labels[i] = float(label)
    reviewed = np.zeros(n, dtype=bool)
    reviewed[[index[p] for p in confirmed if p in index]] = True
    provenance = LabelProvenance(from_cohort=int((cohort_known & ~reviewed).sum()), from_review=from_review,
                                 review_overrides=overrides,
                                 reviews_without_features=sum(p not in index for p in confirmed))
    merged = replace(features, labels=labels)  # keeps covariate names and encoder keys (the model records them)
    return merged, provenance
