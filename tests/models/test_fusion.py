"""Every fusion kind ignores missing modalities: zero gradient and no effect of placeholder values."""

from __future__ import annotations

import pytest
import torch

from models.fusion import FUSIONS, FusionConfig, build_fusion

DIMS = {"ct": 6, "xray": 5, "eeg": 7, "note": 4}
KINDS = sorted(FUSIONS)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = {m: torch.randn(8, d, generator=g) for m, d in DIMS.items()}
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1],
                         [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    return emb, mask, torch.randn(8, 3, generator=g), mask & torch.tensor([0, 1, 0, 1], dtype=torch.bool)


@pytest.mark.parametrize("pool", ["concat", "sum", "max"])
@pytest.mark.parametrize("kind", KINDS)
def test_missing_modalities_get_zero_gradient(kind: str, pool: str) -> None:
    torch.manual_seed(0)
    model = build_fusion(kind, DIMS, FusionConfig(hidden=16, n_covariates=3, pool=pool)).eval()
    emb, mask, cov, imputed = _batch()
    emb = {m: v.clone().requires_grad_(True) for m, v in emb.items()}
    model(emb, mask, cov, imputed).sum().backward()
    for i, m in enumerate(DIMS):
        grad = emb[m].grad
        assert torch.all(grad[~mask[:, i]] == 0), f"{kind}: gradient leaks into missing {m}"
        assert grad[mask[:, i]].abs().sum() > 0, f"{kind}: present {m} gets no gradient"


@pytest.mark.parametrize("kind", KINDS)
def test_placeholder_values_do_not_change_output(kind: str) -> None:
    torch.manual_seed(0)
    model = build_fusion(kind, DIMS, FusionConfig(hidden=16, n_covariates=3)).eval()
    emb, mask, cov, imputed = _batch()
    base = model(emb, mask, cov, imputed)
    noisy = {m: torch.where(mask[:, [i]], v, torch.randn_like(v) * 100) for i, (m, v) in enumerate(emb.items())}
    nan = {m: torch.where(mask[:, [i]], v, torch.full_like(v, float("nan"))) for i, (m, v) in enumerate(emb.items())}
    torch.testing.assert_close(model(noisy, mask, cov, imputed), base)
    torch.testing.assert_close(model(nan, mask, cov, imputed), base)
    assert torch.isfinite(base).all()
    # ...while a present modality's values do matter
    changed = dict(emb, ct=emb["ct"] + 1.0)
    assert not torch.allclose(model(changed, mask, cov, imputed)[mask[:, 0]], base[mask[:, 0]])


@pytest.mark.parametrize("kind", KINDS)
def test_classifier_depth_and_batch_shape(kind: str) -> None:
    for layers in (1, 2):
        model = build_fusion(kind, DIMS, FusionConfig(hidden=8, layers=layers))
        emb, mask, _, _ = _batch()
        assert model(emb, mask).shape == (8,)
    with pytest.raises(ValueError):
        build_fusion(kind, DIMS, FusionConfig(layers=3))


def test_late_fusion_vote_weights_only_over_present() -> None:
    """A patient with one modality is judged by that modality's head alone."""
    torch.manual_seed(0)
    model = build_fusion("late", DIMS, FusionConfig(hidden=8)).eval()
    emb, mask, _, _ = _batch()
    only_ct = torch.tensor([[True, False, False, False]] * 8)
    out = model(emb, only_ct)
    head = model.heads["ct"](torch.cat([emb["ct"], torch.zeros(8, 1)], -1))
    torch.testing.assert_close(out, head)


def test_unknown_kind_and_pool_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("nope", DIMS)
    with pytest.raises(ValueError, match="pool"):
        build_fusion("cross_attention", DIMS, FusionConfig(pool="median"))


@pytest.mark.slow
def test_cross_attention_learns_interaction_that_late_fusion_cannot() -> None:
    """Label = side_ct * side_eeg for every patient: neither modality alone carries it.

    Late fusion (one head per modality) stays near chance by construction; the
    cross-attention model's pairwise product path must learn the interaction.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from models.simulation.phantom_features import synthetic_cohort
    from models.training.train import TrainConfig, train

    cohort = synthetic_cohort(600, dim=8, seed=3, interaction_fraction=1.0)
    fs = cohort.features
    train_fs, test_fs = fs.subset(np.arange(400)), fs.subset(np.arange(400, 600))
    auc = {}
    for kind in ("cross_attention", "late"):
        model = train(train_fs, TrainConfig(fusion=kind, impute="zero", epochs=60, patience=20, hidden=16))
        auc[kind] = roc_auc_score(test_fs.labels, model.predict_risk(test_fs))
    assert auc["late"] < 0.65, auc
    assert auc["cross_attention"] > 0.85, auc
    assert auc["cross_attention"] - auc["late"] > 0.2, auc
