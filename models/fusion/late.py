"""Late fusion: one classifier per modality, logits combined by a learned weighted vote."""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionConfig, FusionModule
from models.fusion.heads import ClassifierHead


class LateFusion(FusionModule):
    """``sum_m softmax_present(a)_m * head_m(x_m, imputed_m)``.

    The vote weights are softmax-normalised over the modalities available for
    each patient, so a patient with two modalities is judged by those two
    alone. A covariate head (when covariates exist) always votes. Because each
    head sees one modality, late fusion cannot learn interactions between
    modalities: that is its known weakness, measured on the interaction subset.
    """

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__(dims, config)
        self.heads = nn.ModuleDict({m: ClassifierHead(d + 1, config.hidden, config.layers, config.dropout)
                                    for m, d in dims.items()})
        self.has_cov = config.n_covariates > 0
        if self.has_cov:
            self.cov_head = ClassifierHead(config.n_covariates, config.hidden, config.layers, config.dropout)
        self.vote = nn.Parameter(torch.zeros(len(dims) + int(self.has_cov)))
        self.empty_logit = nn.Parameter(torch.zeros(()))  # prediction when nothing is available

    def fuse(self, xs, mask, side, imputed):
        m_count = len(self.modalities)
        imp = side[:, m_count:2 * m_count]
        logits = [self.heads[m](torch.cat([x, imp[:, i:i + 1]], -1)) for i, (m, x) in enumerate(zip(self.modalities, xs))]
        avail = mask
        if self.has_cov:
            logits.append(self.cov_head(side[:, 2 * m_count:]))
            avail = torch.cat([mask, torch.ones_like(mask[:, :1])], -1)
        stacked = torch.stack(logits, -1)
        scores = self.vote.expand_as(stacked).masked_fill(~avail, float("-inf"))
        any_avail = avail.any(-1, keepdim=True)
        weights = torch.softmax(torch.where(any_avail, scores, torch.zeros_like(scores)), -1)
        weights = torch.where(avail, weights, torch.zeros_like(weights))
        voted = (weights * torch.where(avail, stacked, torch.zeros_like(stacked))).sum(-1)
        return torch.where(any_avail.squeeze(-1), voted, self.empty_logit.expand_as(voted))
