"""Cross-profiling in the fusion model's own latent space, trained jointly with it (task-guided similarity).

The embedding-space imputer (:mod:`models.imputation`) rebuilds a missing
modality before the model sees it, with similarities fixed in advance. Here,
as in M3Care (Zhang et al., KDD 2022, "M3Care: Learning with Missing Modalities
in Multimodal Healthcare Data"), each modality is first projected to a latent
vector by a small network; the similarity of two patients is the mean cosine
similarity of their latents over the modalities both have (and their
covariates); a patient's missing modality latent is the similarity-weighted
mean (softmax at temperature ``tau``, patients below the learned similarity
floor get no weight) of the latents of patients who have it. The task loss
flows through the weights, so the similarity is learned for the prediction
("task-guided"), not for reconstruction. While training, donors are the other
patients of the batch; when predicting, the training patients (kept as buffers).

Follows scikit-learn: ``fit(features)`` learns attributes ending in ``_``,
``predict_risk(features)`` returns calibrated probabilities (Platt scaling on
the validation patients).
"""

from __future__ import annotations

import torch
from torch import nn

from models.imputation.masked_classifier import MaskedTorchClassifier


class _LatentNet(nn.Module):
    def __init__(self, dims: list[int], n_cov: int, hidden: int, tau: float) -> None:
        super().__init__()
        self.enc = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                                 for d in dims)
        self.cov = nn.Linear(max(n_cov, 1), hidden)
        self.floor = nn.Parameter(torch.tensor(-1.0))  # similarity below tanh(floor) gives no weight (M3Care's filter)
        self.tau = tau
        width = hidden * (len(dims) + 1) + len(dims)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))
        self.bank: tuple[torch.Tensor, ...] | None = None

    def latents(self, xs: list[torch.Tensor], cov: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [enc(x) for enc, x in zip(self.enc, xs)], self.cov(cov)

    def similarity(self, hq, cq, mq, hb, cb, mb) -> torch.Tensor:  # noqa: ANN001 - tensors
        """Mean cosine similarity over the modalities both patients have, plus covariates."""
        total = nn.functional.normalize(cq, dim=1) @ nn.functional.normalize(cb, dim=1).T
        count = torch.ones_like(total)
        for m in range(len(hq)):
            both = mq[:, m:m + 1].float() @ mb[:, m:m + 1].float().T
            cos = nn.functional.normalize(hq[m], dim=1) @ nn.functional.normalize(hb[m], dim=1).T
            total, count = total + both * cos, count + both
        return total / count

    def impute(self, xs: list[torch.Tensor], mask: torch.Tensor,
               cov: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Per modality the latent (own where present, donors' where missing), the covariate latent, donor weights."""
        hq, cq = self.latents(xs, cov)
        if self.training or self.bank is None:  # in-batch donors, never oneself
            hb, cb, mb, self_mask = hq, cq, mask, torch.eye(len(mask), dtype=torch.bool)
        else:
            bx, bm, bc = self.bank
            hb, cb = self.latents(list(bx), bc)
            mb, self_mask = bm, torch.zeros(len(mask), len(bm), dtype=torch.bool)
        sim = self.similarity(hq, cq, mask, hb, cb, mb)
        keep = sim > torch.tanh(self.floor)
        filled, weights = [], []
        for m in range(len(hq)):
            ok = mb[:, m][None, :] & ~self_mask
            logits = torch.where(ok & keep, sim / self.tau, torch.where(ok, sim / self.tau - 30.0, -1e9))
            w = torch.softmax(logits, dim=1)
            filled.append(torch.where(mask[:, m:m + 1], hq[m], w @ hb[m]))
            weights.append(w)
        return filled, cq, weights

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        filled, cq, _ = self.impute(xs, mask, cov)
        return self.head(torch.cat([*filled, cq, mask.float()], dim=1)).squeeze(1)


class LatentCrossProfileClassifier(MaskedTorchClassifier):
    """Fusion model with latent-space, task-guided cross-profiling (see the module docstring)."""

    method = "latent_cross_profile"

    def __init__(self, hidden: int = 32, tau: float = 0.1, epochs: int = 80, lr: float = 3e-3, batch_size: int = 128,
                 modality_dropout: float = 0.2, patience: int = 15, val_fraction: float = 0.2, seed: int = 7) -> None:
        self.hidden, self.tau, self.epochs, self.lr = hidden, tau, epochs, lr
        self.batch_size, self.modality_dropout, self.patience = batch_size, modality_dropout, patience
        self.val_fraction, self.seed = val_fraction, seed

    def _network(self, dims: list[int], n_cov: int) -> nn.Module:
        return _LatentNet(dims, n_cov, self.hidden, self.tau)
