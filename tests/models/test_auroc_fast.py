"""The training loops' AUROC equals scikit-learn's for two classes, ties and all, and says NaN for one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.training.auroc import binary_auroc


@pytest.mark.parametrize("seed", range(5))
def test_equals_roc_auc_score_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = (0, 1)
    scores = np.round(rng.normal(size=60) + y, 1)  # rounded: many ties across the classes
    assert binary_auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert binary_auroc(y.astype(float), scores.astype(np.float32)) == pytest.approx(
        roc_auc_score(y, scores.astype(np.float32)), abs=1e-12)


def test_one_class_is_nan_and_lengths_must_agree() -> None:
    assert math.isnan(binary_auroc(np.ones(5), np.arange(5.0)))
    assert math.isnan(binary_auroc(np.zeros(5), np.arange(5.0)))
    assert binary_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    with pytest.raises(ValueError, match="4 labels for 3 scores"):
        binary_auroc(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3]))
