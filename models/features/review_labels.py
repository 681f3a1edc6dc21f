"""Clinician-confirmed outcomes as training labels, with their provenance.

The train and evaluate flows read the confirmed outcomes from the reviews store
(``flows.access.reviews.confirmed_labels``) and hand them to the stages as plain
``(pseudonym, label)`` pairs. They feed training only: :func:`merge_review_labels`
makes a patient's newest confirmed review (positive = 1, negative = 0) its
training label, overriding the cohort's label when they differ (the clinician saw
the outcome; the export may predate it), and the study
(:mod:`models.study_definition`) labels every held-out patient with the cohort's
label. A confirmed outcome is entered right below the model's risk, so judging the
model by it would count the model's own influence (incorporation bias); the
evaluation report shows it apart, as agreement (:func:`agreement_section`). The
returned :class:`LabelProvenance` says how many labels came from where, for MLflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
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


def agreement_section(metrics: Mapping[str, float]) -> str:
    """The report's section comparing held-out patients' confirmed outcomes with the model, apart from the metrics.

    ``metrics`` holds ``review_n`` and, when it is above 0, ``review_agree_model`` and ``review_agree_cohort``
    (``models.evaluation.metrics.review_agreement``).
    """
    n = int(metrics.get("review_n", 0))
    lines = ["## Clinician-confirmed outcomes (agreement only)", "",
             "The metrics above use the cohort table's labels. Confirmed outcomes are entered beside the model's "
             "risk, so they are not used to judge it (incorporation bias); they are compared with it here.", ""]
    if n == 0:
        lines.append("No held-out patient has a confirmed outcome.")
    else:
        lines.append(f"Held-out patients with a confirmed outcome: {n}. The model's class agrees with it for "
                     f"{metrics['review_agree_model']:.1%}, the cohort table's label for "
                     f"{metrics['review_agree_cohort']:.1%}.")
    return "\n".join(lines) + "\n"


def append_agreement(report: Path, metrics: Mapping[str, float]) -> None:
    """Add :func:`agreement_section` at the end of an evaluation's ``report.md``."""
    with Path(report).open("a") as out:
        out.write("\n" + agreement_section(metrics))
