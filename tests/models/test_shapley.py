"""Exact modality Shapley values: efficiency, dummies, and agreement with a hand-computed game."""

from __future__ import annotations

import numpy as np
import torch

from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.fusion import FusionConfig, build_fusion
from models.fusion.inputs import predict_logits, to_inputs
from models.training.shapley import exact_modality_shapley


def test_additive_game_gives_each_player_its_own_term() -> None:
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    mask = np.array([[True, True, True, True], [True, False, True, False]])
    res = exact_modality_shapley(lambda mk: 1.0 + mk.astype(float) @ weights, mask)
    np.testing.assert_allclose(res.contributions[0], weights)
    np.testing.assert_allclose(res.contributions[1], [0.1, np.nan, 0.3, np.nan])
    np.testing.assert_allclose(res.baseline, [1.0, 1.0])


def test_interaction_game_splits_the_product_equally() -> None:
    mask = np.ones((1, 4), bool)
    res = exact_modality_shapley(lambda mk: (mk[:, 0] & mk[:, 2]).astype(float), mask)
    np.testing.assert_allclose(res.contributions[0], [0.5, 0, 0.5, 0])


def test_fusion_contributions_sum_to_prediction_minus_baseline() -> None:
    torch.manual_seed(0)
    fs = apply_missingness(synthetic_cohort(40, dim=6, seed=1).features, 0.4, "mcar", 0)
    model = build_fusion("cross_attention", fs.dims(), FusionConfig(hidden=8, n_covariates=5)).eval()
    inputs = to_inputs(fs)
    res = exact_modality_shapley(lambda mk: predict_logits(model, inputs.with_mask(torch.as_tensor(mk))), fs.mask)
    np.testing.assert_allclose(np.nansum(res.contributions, 1), res.prediction - res.baseline, atol=1e-5)
    np.testing.assert_allclose(res.prediction, predict_logits(model, inputs), atol=1e-6)
    assert np.isnan(res.contributions[~fs.mask]).all()
    assert np.isfinite(res.contributions[fs.mask]).all()
