"""Clinician reviews: stored with user, time and prediction; newest confirmed outcome becomes the label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.access.reviews import PredictionRef, ReviewStore, confirmed_labels, confirmed_labels_in
from models.features.feature_set import FeatureSet
from models.features.review_labels import merge_review_labels

IDS = tuple(f"P{i:012x}" for i in range(5))


def _features(labels) -> FeatureSet:
    n = len(IDS)
    return FeatureSet(IDS, {m: np.zeros((n, 2), np.float32) for m in ("ct", "xray", "eeg", "note")},
                      np.ones((n, 4), bool), labels=np.asarray(labels, dtype=float))


def test_reviews_store_and_newest_confirmed_outcome(tmp_path: Path) -> None:
    assert confirmed_labels_in(tmp_path / "access") == {} and not (tmp_path / "access").exists()
    store = ReviewStore(tmp_path / "access" / "access.db")
    ref = PredictionRef("run1", "3", "batch-1", 0.71)
    store.add(IDS[0], "positive", "nodule confirmed on follow-up CT", "a.smith", "clinician", ref)
    store.add(IDS[1], "negative", "", "a.smith", "clinician")
    store.add(IDS[1], "positive", "second opinion", "b.jones", "clinician")  # newest wins
    store.add(IDS[2], "positive", "", "a.smith", "clinician")
    store.add(IDS[2], "uncertain", "not sure after all", "a.smith", "clinician")  # withdraws
    assert confirmed_labels(store) == {IDS[0]: 1, IDS[1]: 1}
    first = store.for_patient(IDS[0])[0]
    assert first.username == "a.smith" and first.prediction == ref and first.created_at
    assert [r.username for r in store.for_patient(IDS[1])] == ["b.jones", "a.smith"]
    for bad in (("MRN-1", "positive", ""), (IDS[0], "maybe", ""), (IDS[0], "positive", "x" * 501)):
        with pytest.raises(ValueError):
            store.add(*bad, "a.smith", "clinician")


def test_merge_sets_labels_and_counts_provenance() -> None:
    features = _features([1, 0, np.nan, np.nan, 1])
    merged, prov = merge_review_labels(features, {IDS[1]: 1, IDS[2]: 0, "P00000000ffff": 1})
    np.testing.assert_array_equal(merged.labels[:3], [1, 1, 0])
    assert np.isnan(merged.labels[3]) and merged.labels[4] == 1
    assert prov.as_dict() == {"from_cohort": 2, "from_review": 2, "review_overrides": 1,
                              "reviews_without_features": 1}
    unlabelled = FeatureSet(IDS, features.embeddings, features.mask)
    merged, prov = merge_review_labels(unlabelled, {IDS[3]: 1})
    assert np.isfinite(merged.labels).sum() == 1 and prov.from_review == 1 and prov.from_cohort == 0
