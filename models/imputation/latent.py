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

import copy

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from torch import nn

from models.features.feature_set import FeatureSet
from models.training.calibration import PlattScaler


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


class LatentCrossProfileClassifier(BaseEstimator):
    """Fusion model with latent-space, task-guided cross-profiling (see the module docstring)."""

    method = "latent_cross_profile"

    def __init__(self, hidden: int = 32, tau: float = 0.1, epochs: int = 80, lr: float = 3e-3, batch_size: int = 128,
                 modality_dropout: float = 0.2, patience: int = 15, val_fraction: float = 0.2, seed: int = 7) -> None:
        self.hidden, self.tau, self.epochs, self.lr = hidden, tau, epochs, lr
        self.batch_size, self.modality_dropout, self.patience = batch_size, modality_dropout, patience
        self.val_fraction, self.seed = val_fraction, seed

    def _tensors(self, fs: FeatureSet) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        xs = [torch.as_tensor((fs.embeddings[m] - self.center_[m]) / self.scale_[m], dtype=torch.float32)
              for m in fs.modalities]
        cov = fs.covariates if fs.covariates.shape[1] else np.zeros((len(fs), 1))
        cov = torch.as_tensor(np.nan_to_num((cov - self.cov_center_) / self.cov_scale_), dtype=torch.float32)
        return xs, torch.as_tensor(fs.mask), cov

    def _standardise(self, fs: FeatureSet) -> None:
        self.center_, self.scale_ = {}, {}
        for i, m in enumerate(fs.modalities):
            rows = fs.embeddings[m][fs.mask[:, i]]
            self.center_[m] = rows.mean(0) if len(rows) else 0.0
            self.scale_[m] = (rows.std(0) if len(rows) else 1.0) + 1e-6
        cov = fs.covariates if fs.covariates.shape[1] else np.zeros((len(fs), 1))
        self.cov_center_, self.cov_scale_ = np.nanmean(cov, 0), np.nanstd(cov, 0) + 1e-6

    def fit(self, features: FeatureSet) -> "LatentCrossProfileClassifier":
        from models.fusion.inputs import torch_threads

        with torch_threads(1):  # tiny matrices: one thread beats contention
            return self._fit(features)

    def _fit(self, features: FeatureSet) -> "LatentCrossProfileClassifier":
        from models.training.train import modality_dropout, patient_split

        torch.manual_seed(self.seed)
        tr, va = patient_split(features, self.val_fraction, self.seed)
        train_fs, val_fs = features.subset(tr), features.subset(va)
        self._standardise(train_fs)
        xs, mask, cov = self._tensors(train_fs)
        y = torch.as_tensor(np.asarray(train_fs.labels), dtype=torch.float32)
        net = _LatentNet([x.shape[1] for x in xs], cov.shape[1], self.hidden, self.tau)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-3)
        gen = torch.Generator().manual_seed(self.seed)
        net.bank = (tuple(xs), mask, cov)
        best, state, waited = -np.inf, copy.deepcopy(net.state_dict()), 0
        for _ in range(self.epochs):
            net.train()
            order = torch.randperm(len(y), generator=gen)
            for s in range(0, len(order), self.batch_size):
                b = order[s:s + self.batch_size]
                m = modality_dropout(mask[b], self.modality_dropout, gen)
                loss = nn.functional.binary_cross_entropy_with_logits(net([x[b] for x in xs], m, cov[b]), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            auc = roc_auc_score(val_fs.labels, self._logits(net, val_fs))
            if auc > best + 1e-4:
                best, state, waited = auc, copy.deepcopy(net.state_dict()), 0
            elif (waited := waited + 1) >= self.patience:
                break
        net.load_state_dict(state)
        self.network_ = net
        self.calibrator_ = PlattScaler().fit(self._logits(net, val_fs), np.asarray(val_fs.labels).astype(int))
        return self

    def _logits(self, net: _LatentNet, fs: FeatureSet) -> np.ndarray:
        net.eval()
        xs, mask, cov = self._tensors(fs)
        with torch.no_grad():
            return np.concatenate([net([x[s:s + 512] for x in xs], mask[s:s + 512], cov[s:s + 512]).numpy()
                                   for s in range(0, len(fs), 512)])

    def predict_risk(self, features: FeatureSet) -> np.ndarray:
        from models.fusion.inputs import torch_threads

        if not hasattr(self, "network_"):
            raise RuntimeError("LatentCrossProfileClassifier is not fitted: call fit(features) first")
        with torch_threads(1):
            return self.calibrator_.transform(self._logits(self.network_, features))
