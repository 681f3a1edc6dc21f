"""MUSE peer: learns, is reproducible, scores a patient independently of its batch, never reads a missing modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.simulation.phantom_features import synthetic_cohort
from models.peers.muse import MuseClassifier, _MuseNet, contrastive_loss, edge_drop


@pytest.fixture(scope="module")
def cohort():
    fs = synthetic_cohort(320, dim=6, seed=4, missing_rate=0.4, shared=0.6).features
    return fs.subset(np.arange(240)), fs.subset(np.arange(240, 320))


@pytest.fixture(scope="module")
def fitted(cohort):
    return MuseClassifier(epochs=25, patience=25, seed=7).fit(cohort[0])


def test_learns_beyond_chance_and_is_reproducible(cohort, fitted) -> None:
    train, test = cohort
    with pytest.raises(RuntimeError, match="not fitted"):
        MuseClassifier().predict_risk(test)
    a = fitted.predict_risk(test)
    b = MuseClassifier(epochs=25, patience=25, seed=7).fit(train).predict_risk(test)
    np.testing.assert_allclose(a, b)
    assert ((a > 0) & (a < 1)).all()
    assert roc_auc_score(test.labels, a) > 0.65


def test_score_is_the_same_alone_or_in_a_batch(cohort, fitted) -> None:
    test = cohort[1]
    together = fitted.predict_risk(test)
    for i in (0, 7, 41):
        alone = fitted.predict_risk(test.subset(np.array([i])))
        assert abs(alone[0] - together[i]) < 1e-6
    shuffled = np.random.default_rng(0).permutation(len(test))
    np.testing.assert_allclose(fitted.predict_risk(test.subset(shuffled)), together[shuffled], atol=1e-6)


def _toy_net() -> tuple[_MuseNet, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = _MuseNet([3, 5, 4], 2, 8, dropout=0.25)
    xs = [torch.randn(6, 3), torch.randn(6, 5), torch.randn(6, 4)]
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    xs = [x * mask[:, [i]] for i, x in enumerate(xs)]
    net.bank = (tuple(xs), mask, torch.randn(6, 2))
    return net, xs, mask, torch.randn(6, 2)


def test_a_missing_modality_carries_no_information() -> None:
    net, xs, mask, cov = _toy_net()
    changed = [x.clone() for x in xs]
    changed[1][0] = torch.tensor([5.0, -3.0, 2.0, 9.0, -7.0])  # patient 0 has no modality 1: no edge
    changed[1][4] = float("nan")  # not even a NaN there may leak
    net.eval()
    with torch.no_grad():
        before, after = net.represent(xs, mask, cov), net.represent(changed, mask, cov)
    assert torch.equal(before[[0, 4]], after[[0, 4]])
    assert torch.isfinite(after).all()
    net.train()  # the batch graph of training, too: no missing modality reaches any node
    torch.manual_seed(1)
    t_before = net.propagate(net.edges(xs, mask), mask, cov)[0]
    torch.manual_seed(1)
    t_after = net.propagate(net.edges(changed, mask), mask, cov)[0]
    assert torch.equal(t_before, t_after)
    net.eval()
    changed[1][1] = 9.0  # patient 1 has modality 1: its representation must move
    with torch.no_grad():
        assert not torch.allclose(net.represent(changed, mask, cov)[1], before[1])


def test_contrastive_loss_is_finite_and_trains_the_encoders() -> None:
    net, xs, mask, cov = _toy_net()
    net.train()
    torch.manual_seed(2)
    e = net.edges(xs, mask)
    dropped = edge_drop(mask, 1.0)
    assert (dropped <= mask).all() and (dropped.sum(1) >= 1).all()
    assert (dropped.sum(1)[mask.sum(1) > 1] < mask.sum(1)[mask.sum(1) > 1]).all()
    z, _ = net.propagate(e, mask, cov)
    az, _ = net.propagate(e, dropped, cov)
    loss = contrastive_loss(z, az, torch.tensor([0.0, 1, 1, 0, 1, 0]), net.projection, 0.07)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for enc in net.enc:
        assert enc[0].weight.grad is not None and enc[0].weight.grad.abs().sum() > 0
    assert net.modality_nodes.grad.abs().sum() > 0
    full = MuseClassifier()._loss(net, xs, mask, cov, torch.tensor([0.0, 1, 1, 0, 1, 0]))
    assert torch.isfinite(full)


def test_prediction_uses_the_training_graph_once_per_set_of_weights() -> None:
    net, xs, mask, cov = _toy_net()
    net.eval()
    with torch.no_grad():
        first = net.bank_states()
        assert net.bank_states() is first  # cached: not recomputed per patient or per chunk
        net.modality_nodes.add_(1.0)  # any in-place weight change (optimiser step, load) invalidates it
        assert net.bank_states() is not first
