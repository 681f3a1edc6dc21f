"""The logistic-regression head bounds what one nearly constant column can do to a patient's risk.

Why: the head used to fold its standardisation into the weights, so a column almost constant in training
(sd 1e-3) got weight ~1/sd; on a 200-patient demo a held-out patient a few hundredths off that constant got
a risk of 0.0004 or 0.999 from a model of AUROC 0.62 (held-out ECE 0.33, Brier 0.30).
"""

from __future__ import annotations

import numpy as np
import torch

from models.features.feature_set import FeatureSet
from models.fusion.base import FusionConfig
from models.fusion.inputs import predict_logits, to_inputs
from models.training.crossfit import LINEAR_CLIP_SD, LinearFusion


def _inputs(x: np.ndarray, y: np.ndarray):
    n = len(y)
    fs = FeatureSet(patient_ids=tuple(f"p{i:03d}" for i in range(n)), embeddings={"xray": x.astype(np.float32)},
                    mask=np.ones((n, 1), bool), labels=y.astype(np.int64), modalities=("xray",))
    return to_inputs(fs)


def _training() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    signal = rng.normal(size=120) + 1.0 * y
    nearly_constant = 0.5 + 1e-3 * rng.normal(size=120) + 2e-3 * y  # tiny spread, tied to the label
    return np.column_stack([signal, nearly_constant]), y


def test_a_far_value_of_a_nearly_constant_column_moves_the_risk_only_as_far_as_the_clip() -> None:
    x, y = _training()
    head = LinearFusion({"xray": 2}, FusionConfig(n_covariates=0)).fit(_inputs(x, y), c=1.0, seed=0)
    probe = np.array([[0.0, 0.5], [0.0, 0.6], [0.0, 5.0]])  # 0.1 and 4.5 off a column whose training sd is ~1e-3
    logits = predict_logits(head, _inputs(probe, np.zeros(3, int)))
    weight = float(head.linear.weight[0, 1])
    assert abs(logits[1] - logits[2]) < 1e-5  # both beyond the clip: the same say
    assert abs(logits[1] - logits[0]) <= abs(weight) * (LINEAR_CLIP_SD + 1) + 1e-5
    assert np.all(np.abs(logits) < 20), logits  # unclipped, 0.1 off would be ~100 training deviations


def test_a_head_saved_before_the_clip_loads_and_scores_as_before() -> None:
    x, y = _training()
    head = LinearFusion({"xray": 2}, FusionConfig(n_covariates=0))
    with torch.no_grad():
        head.linear.weight.zero_()  # the mask/imputed indicator columns after the two embedding columns
        head.linear.weight[0, :2] = torch.tensor([0.7, -3.0])
        head.linear.bias.copy_(torch.tensor([0.2]))
    old = {k: v for k, v in head.state_dict().items() if k.startswith("linear.")}  # what older models saved
    fresh = LinearFusion({"xray": 2}, FusionConfig(n_covariates=0))
    fresh.load_state_dict(old)
    want = x @ np.array([0.7, -3.0]) + 0.2
    got = predict_logits(fresh.eval(), _inputs(x, y))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
