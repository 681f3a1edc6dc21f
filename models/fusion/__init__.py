"""Fusion architectures, one module per kind, built by name with :func:`build_fusion`.

Every model is called as ``model(embeddings, mask, covariates=None, imputed=None)``
and returns one logit per patient; missing modalities never leak in.
"""

from __future__ import annotations

from typing import Any

from models.fusion.base import FusionConfig, FusionModule
from models.fusion.cross_attention import CrossAttentionFusion
from models.fusion.early import EarlyFusion
from models.fusion.hybrid import HybridFusion
from models.fusion.late import LateFusion

FUSIONS: dict[str, type[FusionModule]] = {
    "early": EarlyFusion,
    "late": LateFusion,
    "hybrid": HybridFusion,
    "cross_attention": CrossAttentionFusion,
}


ALIASES = {"attention": "cross_attention", "intermediate": "hybrid"}


def canonical_fusion(kind: str) -> str:
    """The registered name for ``kind`` (accepts the aliases "attention" and "intermediate")."""
    return ALIASES.get(kind, kind)


def build_fusion(kind: str, dims: dict[str, int], config: Any = None) -> FusionModule:
    """A fusion model of ``kind`` for embedding sizes ``dims`` (modality -> D, in modality order).

    ``config`` is a :class:`FusionConfig` or any object with some of its fields
    (e.g. a ``TrainConfig``); missing fields take FusionConfig defaults.
    """
    kind = canonical_fusion(kind)
    if kind not in FUSIONS:
        raise ValueError(f"unknown fusion {kind!r}; choose one of {sorted(FUSIONS)}")
    if config is None:
        config = FusionConfig()
    elif not isinstance(config, FusionConfig):
        fields = FusionConfig.__dataclass_fields__
        config = FusionConfig(**{k: getattr(config, k) for k in fields if hasattr(config, k)})
    return FUSIONS[kind](dims, config)


__all__ = ["ALIASES", "FUSIONS", "canonical_fusion", "FusionConfig", "FusionModule", "build_fusion", "CrossAttentionFusion",
           "EarlyFusion", "HybridFusion", "LateFusion"]
