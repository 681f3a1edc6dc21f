"""Early fusion: concatenate per-modality projections, weighted by learned modality weights."""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionConfig, FusionModule, indicator_width, masked
from models.fusion.heads import ClassifierHead


class EarlyFusion(FusionModule):
    """``concat(w_m * proj_m(x_m) for m) + [mask, imputed, covariates] -> head``.

    Missing modalities contribute a zero block; the mask indicators tell the
    head that the zeros mean "absent", not "measured as zero".
    """

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__(dims, config)
        h = config.hidden
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, h), nn.ReLU()) for m, d in dims.items()})
        self.weight = nn.Parameter(torch.zeros(len(dims)))  # softplus(0)*... starts near equal weights
        width = h * len(dims) + indicator_width(len(dims), config.n_covariates)
        self.head = ClassifierHead(width, h, config.layers, config.dropout)

    def modality_weights(self) -> torch.Tensor:
        return torch.nn.functional.softplus(self.weight) / torch.nn.functional.softplus(torch.zeros(()))

    def fuse(self, xs, mask, side, imputed):
        w = self.modality_weights()
        blocks = [masked(self.proj[m](x), mask[:, i]) * w[i] for i, (m, x) in enumerate(zip(self.modalities, xs))]
        return self.head(torch.cat(blocks + [side], -1))
