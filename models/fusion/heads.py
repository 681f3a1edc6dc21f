"""The classifier that sits on top of every fusion: 1-2 hidden layers to one logit."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """``in_dim -> [hidden -> ReLU -> Dropout] x layers -> 1`` logit.

    ``layers`` is 1 or 2: small cohorts overfit deeper heads, and the fused
    representation is already non-linear.
    """

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if layers not in (1, 2):
            raise ValueError(f"classifier layers must be 1 or 2, got {layers}")
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
