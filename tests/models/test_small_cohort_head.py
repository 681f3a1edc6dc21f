"""Small cohorts: the network head replaces the logistic regression only when it wins beyond the folds' noise.

Why: on 55 COVID chest X-ray patients the network's out-of-fold AUROC (the best of 100 epochs of one curve)
beat the linear head's on every study split by 0.03-0.12, while on the held-out patients it ranked no better
than a plain logistic regression on the same embeddings: the fold advantage was selection, not signal.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.features.feature_set import FeatureSet
from models.training.crossfit import choose_head
from models.training.train import TrainConfig, train


def _cohort(n: int, x: np.ndarray, y: np.ndarray) -> FeatureSet:
    return FeatureSet(patient_ids=tuple(f"p{i:03d}" for i in range(n)), embeddings={"xray": x.astype(np.float32)},
                      mask=np.ones((n, 1), bool), labels=y.astype(np.int64), modalities=("xray",))


def test_choose_head_needs_a_gain_beyond_bootstrap_noise() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(20, int), np.ones(40, int)]
    linear = rng.normal(size=60) + 0.5 * y
    network = rng.normal(size=60) + 0.5 * y  # as good, and ahead on these 60 patients by chance
    head, record = choose_head(y, network, linear)
    assert record["oof_auroc_gain_network"] > 0.05 and head == "linear"
    head, record = choose_head(y, linear + 3.0 * y, linear)
    assert head == "network" and record["oof_auroc_gain_network_low"] > 0
    assert "lower bound" in record["head_rule"]


@pytest.mark.slow
def test_small_cohort_without_signal_keeps_the_linear_head() -> None:
    """60 patients, 32 noise dimensions (2:1 labels, as the COVID set): the network's best epoch scored higher
    on the folds (0.461 vs 0.405) and was the model before; now the linear head is."""
    rng = np.random.default_rng(0)
    y = (np.arange(60) % 3 != 0).astype(int)
    model = train(_cohort(60, rng.normal(size=(60, 32)), y), TrainConfig(epochs=40, hidden=16, seed=7))
    sel = model.metrics["selection"]
    assert sel["small_cohort"] and sel["oof_auroc_network"] > sel["oof_auroc_linear"]
    assert sel["head"] == "linear" and model.head == "linear", sel
    assert sel["oof_auroc_gain_network_low"] <= 0


@pytest.mark.slow
def test_small_cohort_keeps_the_network_when_only_it_can_fit_the_signal() -> None:
    """A radial label (inside vs outside a circle) no linear head can rank: the network wins beyond noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4))
    r = x[:, 0] ** 2 + x[:, 1] ** 2
    model = train(_cohort(90, x, (r > np.median(r)).astype(int)), TrainConfig(epochs=40, hidden=16, seed=7))
    sel = model.metrics["selection"]
    assert sel["small_cohort"] and sel["head"] == "network" and model.head == "network", sel
    assert sel["oof_auroc_gain_network_low"] > 0
