"""What every fusion architecture shares: its configuration and the masking of missing inputs.

The one rule: a missing modality's placeholder must never reach the model as if
it were data. Inputs go through ``torch.where(mask, x, 0)`` (not ``x * mask``,
which turns a NaN placeholder into NaN), so the placeholder gets exactly zero
gradient and its values cannot change the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FusionConfig:
    """Architecture knobs common to all fusion kinds (a subset of ``TrainConfig``)."""

    hidden: int = 64
    layers: int = 1
    pool: str = "concat"  # cross-attention pooling: concat | sum | max
    dropout: float = 0.1
    n_covariates: int = 0
    tokens: int = 4  # cross-attention: tokens per modality
    heads: int = 1  # cross-attention: attention heads
    token_dim: int = 16  # cross-attention: width of tokens (small: a few hundred patients train it)
    product_rank: int = 4  # cross-attention: factors per modality in the pairwise product features


def masked(x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``x`` where the modality is present, 0 elsewhere; gradient to placeholders is 0."""
    return torch.where(present.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def indicators(mask: torch.Tensor, imputed: torch.Tensor | None,
               covariates: torch.Tensor | None) -> torch.Tensor:
    """``[mask, imputed, covariates]`` as floats: the always-known side information."""
    imp = torch.zeros_like(mask) if imputed is None else imputed
    parts = [mask.float(), imp.float()]
    if covariates is not None and covariates.shape[-1] > 0:
        parts.append(covariates.float())
    return torch.cat(parts, -1)


def indicator_width(n_modalities: int, n_covariates: int) -> int:
    return 2 * n_modalities + n_covariates


class FusionModule(nn.Module):
    """Base: holds the modality order; subclasses implement ``fuse``.

    ``forward(embeddings, mask, covariates=None, imputed=None) -> logits (B,)``.
    ``mask`` is True where a modality is available to the model (present or
    imputed); ``imputed`` flags which of those were rebuilt by an imputer.
    """

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.dims = dict(dims)
        self.config = config

    def forward(self, embeddings: dict[str, torch.Tensor], mask: torch.Tensor,
                covariates: torch.Tensor | None = None, imputed: torch.Tensor | None = None) -> torch.Tensor:
        if mask.shape[-1] != len(self.modalities):
            raise ValueError(f"mask has {mask.shape[-1]} columns, model expects {len(self.modalities)}")
        mask = mask.bool()
        if imputed is not None:
            imputed = imputed.bool() & mask
        xs = [masked(embeddings[m], mask[:, i]) for i, m in enumerate(self.modalities)]
        return self.fuse(xs, mask, indicators(mask, imputed, covariates), imputed)

    def fuse(self, xs: list[torch.Tensor], mask: torch.Tensor, side: torch.Tensor,
             imputed: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
