"""Latent-space cross-profiling (M3Care-style): learns, is reproducible, never uses a patient as its own donor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.simulation.phantom_features import synthetic_cohort
from models.imputation.latent import LatentCrossProfileClassifier, _LatentNet


def test_learns_beyond_chance_and_is_reproducible() -> None:
    fs = synthetic_cohort(320, dim=6, seed=4, missing_rate=0.4, shared=0.6).features
    train, test = fs.subset(np.arange(240)), fs.subset(np.arange(240, 320))
    with pytest.raises(RuntimeError, match="not fitted"):
        LatentCrossProfileClassifier().predict_risk(test)
    a = LatentCrossProfileClassifier(epochs=12, patience=12, seed=3).fit(train).predict_risk(test)
    b = LatentCrossProfileClassifier(epochs=12, patience=12, seed=3).fit(train).predict_risk(test)
    np.testing.assert_allclose(a, b)
    assert ((a > 0) & (a < 1)).all()
    assert roc_auc_score(test.labels, a) > 0.65


def test_missing_latent_comes_from_other_patients_who_have_it() -> None:
    torch.manual_seed(0)
    net = _LatentNet([3, 3], 1, 8, tau=0.1).train()
    xs = [torch.randn(4, 3), torch.randn(4, 3)]
    mask = torch.tensor([[True, False], [True, True], [True, True], [True, False]])
    filled, _, weights = net.impute(xs, mask, torch.zeros(4, 1))
    w = weights[1][0]  # patient 0 lacks modality 1: donors are patients 1 and 2, never itself or patient 3
    assert w[0] < 1e-12 and w[3] < 1e-12 and torch.isclose(w[1] + w[2], torch.tensor(1.0))
    h1, _ = net.latents(xs, torch.zeros(4, 1))
    assert torch.allclose(filled[1][0], w @ h1[1], atol=1e-6)
    assert torch.equal(filled[1][1], h1[1][1])  # a present modality keeps its own latent
