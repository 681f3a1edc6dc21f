"""Pretraining hyper-parameters, apart from the pretraining code so that reading them imports no torch or MONAI.

``models.stages`` (and through it every Prefect task module, so every ``clinfuse``
command) needs the config's type; a no-op ``clinfuse ingest`` spent most of its
time importing MONAI for it. ``models.training.pretrain`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.defaults import PRETRAIN_BATCH_SIZE, PRETRAIN_EPOCHS, PRETRAIN_LR


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of pretraining (log it as is)."""

    epochs: int = PRETRAIN_EPOCHS
    batch_size: int = PRETRAIN_BATCH_SIZE
    lr: float = PRETRAIN_LR
    weight_decay: float = 1e-4
    temperature: float = 0.1
    proj_dim: int = 32
    intra_weight: float = 0.5
    seed: int = 7
    lr_scale: tuple[tuple[str, float], ...] = (("xray", 0.2),)
    """Per-modality multipliers of ``lr`` for the encoder networks. X-ray at 0.2: at the full lr,
    pretraining lowered its phantom probe AUROC (0.718 -> 0.643); at 0.2 it no longer does (-> 0.733)."""
    fixed_features_in_loss: bool = True
    """Feed the encoders' fixed blocks (EEG band powers, CT/X-ray feature blocks) to the projection
    heads too. Measured on the 120-patient phantom (docs/BENCHMARKS.md "## Encoders"): leaving them
    out made every pretrained probe worse (CT 0.654 -> 0.625, X-ray 0.688 -> 0.659, EEG 0.718 -> 0.666),
    so they stay in by default."""
