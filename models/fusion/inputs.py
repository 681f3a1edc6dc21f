"""From a (possibly imputed) FeatureSet to the tensors a fusion model takes, and back to logits."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from models.features.feature_set import FeatureSet
from models.imputation.methods import ImputedFeatures


@dataclass(frozen=True)
class FusionInputs:
    """Tensors of one cohort: what ``FusionModule.forward`` takes, plus labels when known."""

    embeddings: dict[str, torch.Tensor]
    mask: torch.Tensor  # bool (N, M): present or imputed
    imputed: torch.Tensor  # bool (N, M)
    covariates: torch.Tensor  # float (N, C)
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def rows(self, idx: torch.Tensor) -> "FusionInputs":
        return FusionInputs({m: v[idx] for m, v in self.embeddings.items()}, self.mask[idx],
                            self.imputed[idx], self.covariates[idx],
                            None if self.labels is None else self.labels[idx])

    def with_mask(self, mask: torch.Tensor) -> "FusionInputs":
        """Same patients seen through a narrower mask (Shapley coalitions, modality dropout).

        The mask may come from numpy (Shapley coalitions); it moves to these tensors' device (CUDA).
        """
        mask = torch.as_tensor(mask, device=self.mask.device)
        return replace(self, mask=mask, imputed=self.imputed & mask)


def to_inputs(data: FeatureSet | ImputedFeatures, device: str = "cpu") -> FusionInputs:
    """Tensors on ``device``; a plain FeatureSet counts as "nothing imputed"."""
    if isinstance(data, ImputedFeatures):
        fs, imputed = data.features, data.imputed
    else:
        fs, imputed = data, np.zeros(data.mask.shape, bool)
    labels = None if fs.labels is None else torch.as_tensor(np.asarray(fs.labels, np.float32), device=device)
    return FusionInputs(
        {m: torch.as_tensor(np.nan_to_num(fs.embeddings[m]), dtype=torch.float32, device=device)
         for m in fs.modalities},
        torch.as_tensor(fs.mask, device=device),
        torch.as_tensor(imputed, device=device),
        torch.as_tensor(fs.covariates, dtype=torch.float32, device=device),
        labels,
    )


@torch.no_grad()
def predict_logits(model: torch.nn.Module, inputs: FusionInputs, batch_size: int = 1024) -> np.ndarray:
    """Logits in eval mode (no dropout), batched to bound memory."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(inputs), batch_size):
        b = inputs.rows(torch.arange(start, min(start + batch_size, len(inputs))))
        out.append(model(b.embeddings, b.mask, b.covariates, b.imputed).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads (0: leave as is), then restore.

    Fusion nets on frozen embeddings are tiny; on a busy CPU, torch's default
    thread pool spends far more time synchronising than computing (measured
    100x slower per step on 2 loaded cores), so training and scoring use one.
    """
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
