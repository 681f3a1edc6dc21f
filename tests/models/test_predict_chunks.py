"""The predict stage scores a large cohort in chunks: the same scores, and memory that does not grow with it.

Before, one ``model.predict`` call held every imputed patient's Monte-Carlo redraws at once
(n_mc x patients x embedding floats), so predict's peak memory grew with the cohort.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.predict_stage import score_in_chunks
from models.training.train import TrainConfig, train
from tests.models.test_invariance import assert_same

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_and_patients():
    fs = apply_missingness(synthetic_cohort(520, dim=32, seed=5).features, 0.4, "mcar", 6)
    model = train(fs.subset(np.arange(120)), TrainConfig(epochs=10, hidden=16, patience=5, seed=3))
    return model, fs.subset(np.arange(120, 520))


def test_chunked_scores_equal_one_call(model_and_patients) -> None:
    model, patients = model_and_patients
    whole = model.predict(patients, n_mc=6, seed=0)
    chunked = score_in_chunks(model, patients, n_mc=6, chunk=37)  # uneven last chunk on purpose
    assert list(chunked["patient_id"]) == list(patients.patient_ids)  # order kept
    assert_same(whole, chunked)


def test_chunked_peak_memory_is_bounded_by_the_chunk(model_and_patients) -> None:
    model, patients = model_and_patients
    imputed = int((~patients.mask).any(1).sum())
    assert imputed > 200  # enough imputed patients that their redraws dominate

    def peak(fn) -> int:
        tracemalloc.start()
        fn()
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    n_mc = 40
    whole = peak(lambda: model.predict(patients, n_mc=n_mc, seed=0))
    chunked = peak(lambda: score_in_chunks(model, patients, n_mc=n_mc, chunk=50))
    draws_all = n_mc * imputed * sum(v.shape[1] for v in patients.embeddings.values()) * 4
    assert whole - chunked > draws_all / 2, (whole, chunked, draws_all)


def test_small_cohort_is_one_call(model_and_patients) -> None:
    model, patients = model_and_patients
    few = patients.subset(np.arange(5))
    assert_same(score_in_chunks(model, few, n_mc=3), model.predict(few, n_mc=3, seed=0))
