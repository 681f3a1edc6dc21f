"""Where a new fusion kind, imputation method or modality goes: one class plus one registry entry each.

These tests are the worked examples that docs/ARCHITECTURE.md points to: each
adds a toy one through the registry and runs it through training, saving,
loading and scoring, exactly as the built-in ones run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from models.features.feature_set import FeatureSet
from models.simulation.phantom_features import synthetic_cohort
from models.fusion import FUSIONS
from models.fusion.base import FusionConfig, FusionModule, indicator_width, masked
from models.fusion.heads import ClassifierHead
from models.imputation.methods import MeanImputer
from models.imputation.registry import IMPUTERS
from models.training.train import TrainConfig, train
from models.training.trained_model import TrainedModel

FAST = dict(epochs=4, hidden=8, patience=4, seed=1)


class MeanPoolFusion(FusionModule):
    """Toy fusion: the mean of the present modalities' projections, plus the mask/covariate indicators."""

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__(dims, config)
        self.proj = nn.ModuleDict({m: nn.Linear(d, config.hidden) for m, d in dims.items()})
        self.head = ClassifierHead(config.hidden + indicator_width(len(dims), config.n_covariates), config.hidden,
                                   config.layers, config.dropout)

    def fuse(self, xs, mask, side, imputed):
        blocks = torch.stack([masked(self.proj[m](x), mask[:, i]) for i, (m, x) in enumerate(zip(self.modalities, xs))])
        pooled = blocks.sum(0) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(torch.cat([pooled, side], -1))


class MedianImputer(MeanImputer):
    """Toy imputation: the training patients' per-dimension median instead of the mean."""

    method = "toy_median"

    def fit(self, features: FeatureSet) -> "MedianImputer":
        super().fit(features)
        for i, m in enumerate(self.modalities_):
            rows = features.embeddings[m][features.mask[:, i]]
            if len(rows):
                self.mean_[m] = np.median(rows, 0).astype(np.float32)
        return self


@pytest.fixture
def cohort() -> FeatureSet:
    return synthetic_cohort(120, dim=8, missing_rate=0.3, seed=5).features


def _round_trip(features: FeatureSet, config: TrainConfig, tmp_path) -> np.ndarray:
    model = train(features.subset(np.arange(96)), config)
    held = features.subset(np.arange(96, len(features)))
    loaded = TrainedModel.load(model.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict_risk(held), model.predict_risk(held), atol=1e-6)
    return loaded.predict_risk(held)


def test_a_new_fusion_kind_is_one_class_and_one_registry_entry(cohort, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(FUSIONS, "mean_pool", MeanPoolFusion)
    risk = _round_trip(cohort, TrainConfig(fusion="mean_pool", impute="mean", **FAST), tmp_path)
    assert risk.shape == (24,) and np.isfinite(risk).all() and risk.std() > 0
    monkeypatch.delitem(FUSIONS, "mean_pool")
    with pytest.raises(ValueError, match="mean_pool"):  # unregistered: refused by name, never a silent default
        TrainConfig(fusion="mean_pool").validate()


def test_a_new_imputation_method_is_one_class_and_one_registry_entry(cohort, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(IMPUTERS, "toy_median", MedianImputer)
    _round_trip(cohort, TrainConfig(fusion="early", impute="toy_median", **FAST), tmp_path)
    loaded = TrainedModel.load(tmp_path / "model")
    assert isinstance(loaded.imputer, MedianImputer)  # saved by name, rebuilt from the registry
    missing = ~cohort.mask[:, 0]
    filled = loaded.imputer.transform(cohort).features.embeddings["ct"][missing]
    present = cohort.embeddings["ct"][cohort.mask[:, 0]][:96]
    assert np.allclose(filled, filled[0]) and not np.allclose(filled[0], present.mean(0))


def test_a_new_modality_flows_through_fusion_imputation_and_scoring(cohort, tmp_path) -> None:
    """A fifth modality (its encoder's embeddings) needs no change in fusion, imputation or training code."""
    rng = np.random.default_rng(0)
    ecg = (cohort.labels[:, None] * 0.8 + rng.normal(size=(len(cohort), 6))).astype(np.float32)
    present = rng.random(len(cohort)) > 0.25
    wider = replace(cohort, embeddings={**cohort.embeddings, "ecg": np.where(present[:, None], ecg, 0)},
                    mask=np.column_stack([cohort.mask, present]), modalities=(*cohort.modalities, "ecg"))
    for fusion in ("early", "late", "cross_attention"):
        risk = _round_trip(wider, TrainConfig(fusion=fusion, impute="cross_profile", **FAST), tmp_path / fusion)
        assert risk.shape == (24,) and np.isfinite(risk).all()
    assert TrainedModel.load(tmp_path / "early" / "model").modalities[-1] == "ecg"
