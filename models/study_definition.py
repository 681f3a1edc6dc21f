"""One study definition per run: who is trained on, who judges the model, who is only scored.

Why one object: the split used to be re-derived by each stage (encode fitted its
TF-IDF on every note, pretraining and its BatchNorm recalibration saw every
ingested patient, train and evaluate each split the features again). Each
derivation is a chance for a held-out or prediction-only patient to shape a
fitted artifact. Here the split is made once, from the cohort table's labels,
the clinician-confirmed outcomes and the keyed held-out hash
(:func:`models.held_out.held_out_mask`), and every stage reads the result:

* ``training``: labelled (by the cohort or by a confirmed review) and not on the
  held-out side of the hash. The only patients anything may be fitted on:
  pretraining, BatchNorm statistics, the TF-IDF vocabulary, the covariate scaler,
  the imputer, the network, early stopping and the calibrator.
* ``held_out``: labelled by the cohort table and on the held-out side: the
  patients the model is judged on, with the cohort's labels only (a confirmed
  review is entered beside the model's risk, so it would judge the model with
  labels the model helped produce).
* ``excluded``: everyone else: prediction-only patients without a label, and
  held-out-side patients whose only label is a review. They are scored, never
  fitted on, never evaluated on.

The fitted patients' hash (:meth:`Study.fit_sha256`) is written beside every
fitted artifact so a test, or an auditor, can check it after the fact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.features.feature_set import FeatureSet
from models.held_out import HELD_OUT_FRACTION, held_out_mask

FITTED_ON_SUFFIX = ".fitted_on.json"
"""Sidecar written beside a fitted artifact (encoder weights, TF-IDF model, model folder) naming its patients."""


@dataclass(frozen=True)
class Study:
    """The split of one run's patients; built by :func:`define_study`, never edited."""

    held_out_fraction: float
    seed: int
    training: tuple[str, ...]
    held_out: tuple[str, ...]
    excluded: tuple[str, ...]
    label_source: tuple[tuple[str, str], ...] = ()
    """``(patient, "cohort" | "review")`` for every labelled training or held-out patient"""
    held_out_labels: tuple[int, ...] = ()
    """the cohort table's label of each held-out patient, in ``held_out`` order (never a review's)"""

    @property
    def fit_ids(self) -> tuple[str, ...]:
        """The patients any fitted step may see (the training patients)."""
        return self.training

    def fit_sha256(self) -> str:
        """A hash of the sorted fitted-on patients: what the sidecars record and a test recomputes."""
        return fit_ids_sha256(self.training)

    def training_features(self, features: FeatureSet) -> FeatureSet:
        """``features`` restricted to the training patients, with their (review-merged) labels as int64."""
        return _labels_as_int(features.subset(np.isin(features.patient_ids, self.training)))

    def held_out_features(self, features: FeatureSet) -> FeatureSet:
        """``features`` restricted to the held-out patients, labelled with the cohort's labels only."""
        from dataclasses import replace

        out = features.subset(np.isin(features.patient_ids, self.held_out))
        cohort = dict(zip(self.held_out, self.held_out_labels))
        return replace(out, labels=np.array([cohort[p] for p in out.patient_ids], dtype=np.int64))

    def summary(self) -> dict[str, Any]:
        """Counts and the fit hash: what a model folder and an MLflow run record (no patient ids)."""
        sources = [s for _, s in self.label_source]
        return {"held_out_fraction": self.held_out_fraction, "seed": self.seed, "n_training": len(self.training),
                "n_held_out": len(self.held_out), "n_excluded": len(self.excluded),
                "labels_from_cohort": sources.count("cohort"), "labels_from_review": sources.count("review"),
                "fit_patients_sha256": self.fit_sha256()}


def fit_ids_sha256(patient_ids: Sequence[str]) -> str:
    """The recorded hash of a set of fitted-on patients (order-free)."""
    return hashlib.sha256("\n".join(sorted(map(str, patient_ids))).encode()).hexdigest()


def _labels_as_int(features: FeatureSet) -> FeatureSet:
    from dataclasses import replace

    if features.labels is None:
        return features
    return replace(features, labels=np.asarray(features.labels, dtype=float).astype(np.int64))


def define_study(patient_ids: Sequence[str], cohort_labels: Sequence[float] | None,
                 review_labels: Mapping[str, int] | None = None, *,
                 held_out_fraction: float = HELD_OUT_FRACTION, seed: int = 7) -> Study:
    """The split of ``patient_ids`` given the cohort's labels (NaN = unknown) and confirmed reviews."""
    ids = tuple(map(str, patient_ids))
    labels = (np.full(len(ids), np.nan) if cohort_labels is None
              else _to_float(cohort_labels))
    reviewed = {str(k): int(v) for k, v in (review_labels or {}).items()}
    held = held_out_mask(ids, held_out_fraction, seed)
    training, held_out, held_labels, excluded, source = [], [], [], [], []
    for pid, label, is_held in zip(ids, labels, held):
        from_cohort = bool(np.isfinite(label))
        if is_held and from_cohort:
            held_out.append(pid)
            held_labels.append(int(label))
            source.append((pid, "cohort"))
        elif not is_held and (from_cohort or pid in reviewed):
            training.append(pid)
            source.append((pid, "review" if pid in reviewed else "cohort"))
        else:
            excluded.append(pid)
    return Study(float(held_out_fraction), int(seed), tuple(training), tuple(held_out), tuple(excluded),
                 tuple(source), tuple(held_labels))


def _to_float(values: Sequence[Any]) -> np.ndarray:
    """Labels as floats with NaN for unknown (pandas' nullable integers and ``None`` included)."""
    import pandas as pd

    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)


def study_for_home(home: Path, *, held_out_fraction: float = HELD_OUT_FRACTION, seed: int = 7,
                   review_labels: Mapping[str, int] | None = None) -> Study | None:
    """The study of a home's pseudonymised cohort table; None when ingest wrote no cohort table."""
    from ingestion.cohort import load_cohort
    from ingestion.home_layout import HomeLayout

    path = HomeLayout.at(home).cohort_path
    if not path.exists():
        return None
    cohort = load_cohort(path)
    return define_study(cohort["patient_id"].astype(str).tolist(), cohort["label"].tolist(), review_labels,
                        held_out_fraction=held_out_fraction, seed=seed)


def study_for_features(features: FeatureSet, review_labels: Mapping[str, int] | None = None, *,
                       held_out_fraction: float = HELD_OUT_FRACTION, seed: int = 7) -> Study:
    """The study of a feature set whose labels are the cohort's (a synthetic cohort, a benchmark's features)."""
    labels = None if features.labels is None else np.asarray(features.labels, dtype=float)
    return define_study(features.patient_ids, labels, review_labels, held_out_fraction=held_out_fraction, seed=seed)


def write_fitted_on(artifact: Path, patient_ids: Sequence[str], what: str) -> Path:
    """Record beside ``artifact`` (a file or a folder) how many and which (hashed) patients fitted it."""
    artifact = Path(artifact)
    path = (artifact / "fitted_on.json") if artifact.is_dir() else artifact.with_name(artifact.name + FITTED_ON_SUFFIX)
    path.write_text(json.dumps({"artifact": artifact.name, "what": what, "n_patients": len(patient_ids),
                                "fit_patients_sha256": fit_ids_sha256(patient_ids)}, indent=1))
    return path


def read_fitted_on(artifact: Path) -> dict[str, Any] | None:
    """The sidecar :func:`write_fitted_on` wrote for ``artifact``, or None."""
    artifact = Path(artifact)
    path = (artifact / "fitted_on.json") if artifact.is_dir() else artifact.with_name(artifact.name + FITTED_ON_SUFFIX)
    return json.loads(path.read_text()) if path.exists() else None
