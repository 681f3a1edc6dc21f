"""M3Care peer: learns, is reproducible, borrows a missing modality only from others who have it, batch-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.simulation.phantom_features import synthetic_cohort
from models.peers.m3care import M3CareClassifier, _M3CareNet


@pytest.fixture(scope="module")
def cohort():  # noqa: ANN201 - FeatureSet pair
    fs = synthetic_cohort(320, dim=6, seed=4, missing_rate=0.4, shared=0.6).features
    return fs.subset(np.arange(240)), fs.subset(np.arange(240, 320))


@pytest.fixture(scope="module")
def fitted(cohort) -> M3CareClassifier:  # noqa: ANN001
    return M3CareClassifier(epochs=20, patience=20, seed=2).fit(cohort[0])


def test_learns_beyond_chance_and_is_reproducible(cohort, fitted) -> None:  # noqa: ANN001
    train, test = cohort
    with pytest.raises(RuntimeError, match="not fitted"):
        M3CareClassifier().predict_risk(test)
    a = fitted.predict_risk(test)
    b = M3CareClassifier(epochs=20, patience=20, seed=2).fit(train).predict_risk(test)
    np.testing.assert_allclose(a, b)
    assert ((a > 0) & (a < 1)).all()
    assert roc_auc_score(test.labels, a) > 0.65


def test_score_does_not_depend_on_the_batch(cohort, fitted) -> None:  # noqa: ANN001
    test = cohort[1]
    together = fitted.predict_risk(test)
    alone = np.concatenate([fitted.predict_risk(test.subset(np.array([i]))) for i in range(len(test))])
    np.testing.assert_allclose(alone, together, atol=1e-6)
    reordered = fitted.predict_risk(test.subset(np.arange(len(test))[::-1]))[::-1]
    np.testing.assert_allclose(reordered, together, atol=1e-6)


def _toy() -> tuple[_M3CareNet, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = _M3CareNet([3, 3], 1, 8, dropout=0.0, threshold=0.01)  # a low filter keeps every donor
    xs = [torch.randn(4, 3), torch.randn(4, 3)]
    mask = torch.tensor([[True, False], [True, True], [True, True], [True, False]])
    xs[1] = xs[1] * mask[:, [1]]
    return net, xs, mask, torch.zeros(4, 1)


def test_missing_modality_comes_from_other_patients_who_have_it() -> None:
    net, xs, mask, cov = _toy()
    net.train()
    parts = net.impute(xs, mask, cov)
    w = parts["adj"][1][0]  # patient 0 lacks modality 1: donors are patients 1 and 2, never itself or patient 3
    assert w[0] == 0 and w[3] == 0 and torch.isclose(w[1] + w[2], torch.tensor(1.0))
    assert torch.equal(parts["fused"][1][0], parts["g"][1][0])  # a missing modality is its neighbours' alone
    changed = [xs[0], xs[1].clone()]
    changed[1][[0, 3]] = 5.0  # whatever non-holders carry in that slot never reaches patient 0's imputation
    again = net.impute(changed, mask, cov)
    assert torch.allclose(again["g"][1][0], parts["g"][1][0])
    changed[1][1] += 1.0  # a holder's latent does
    assert not torch.allclose(net.impute(changed, mask, cov)["g"][1][0], parts["g"][1][0])


def test_prediction_donors_are_bank_patients_with_the_modality() -> None:
    net, xs, mask, cov = _toy()
    net.train()
    net(xs, mask, cov)  # one training pass sets the kernel bandwidths
    net.bank = (tuple(xs), mask, cov)
    net.eval()
    query = [torch.randn(1, 3), torch.zeros(1, 3)]
    w = net.impute(query, torch.tensor([[True, False]]), torch.zeros(1, 1))["adj"][1][0]
    assert w[0] == 0 and w[3] == 0 and torch.isclose(w[1] + w[2], torch.tensor(1.0))
    before = net(query, torch.tensor([[True, False]]), torch.zeros(1, 1))
    with torch.no_grad():
        net.gcn1[1].weight.mul_(2.0)  # the cached bank side must follow a weight change
    assert not torch.allclose(net(query, torch.tensor([[True, False]]), torch.zeros(1, 1)), before)
