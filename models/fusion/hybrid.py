"""Hybrid (intermediate) fusion: modality-specific layers, merged at a hidden layer."""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionConfig, FusionModule, indicator_width, masked
from models.fusion.heads import ClassifierHead


class HybridFusion(FusionModule):
    """Two modality-specific layers each, merged by masked mean (``pool="mean"``/"sum"/"max")
    or concatenation (``pool="concat"``), then shared layers and the head.

    Unlike early fusion the merge happens after each modality has its own
    non-linear encoder, so the masked mean is over comparable representations.
    """

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__(dims, config)
        h = config.hidden
        self.enc = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
                                  for m, d in dims.items()})
        self.merge = "concat" if config.pool == "concat" else "mean"
        merged = h * len(dims) if self.merge == "concat" else h
        side = indicator_width(len(dims), config.n_covariates)
        self.shared = nn.Sequential(nn.Linear(merged + side, h), nn.ReLU(), nn.Dropout(config.dropout))
        self.head = ClassifierHead(h, h, config.layers, config.dropout)

    def fuse(self, xs, mask, side, imputed):
        hs = torch.stack([masked(self.enc[m](x), mask[:, i]) for i, (m, x) in enumerate(zip(self.modalities, xs))], 1)
        if self.merge == "concat":
            merged = hs.flatten(1)
        else:
            count = mask.float().sum(-1, keepdim=True).clamp(min=1.0)
            merged = hs.sum(1) / count
        return self.head(self.shared(torch.cat([merged, side], -1)))
