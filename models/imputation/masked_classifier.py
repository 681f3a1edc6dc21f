"""The shared fit/predict machinery of fusion classifiers that handle missing modalities inside their own network.

Why a base: the latent cross-profiling model and the published peers it is
compared with (M3Care, MUSE) differ only in their network and loss. Keeping the
standardisation, the validation split, early stopping, Platt calibration and the
one-thread rule in one place means a comparison between them measures the
networks, not four slightly different training loops.

A subclass gives ``_network(dims, n_cov)`` (a module whose ``forward(xs, mask,
cov)`` returns one logit per patient) and may override ``_loss`` (extra terms,
e.g. a contrastive loss). When the network has a ``bank`` attribute, it is set
to the standardised training patients, so a model that borrows from other
patients at prediction time borrows from those only: a patient's score never
depends on who else is in the batch.
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

Tensors = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]


class MaskedTorchClassifier(BaseEstimator):
    """Base estimator: ``fit(features)`` then ``predict_risk(features)`` gives calibrated probabilities."""

    epochs: int
    lr: float
    batch_size: int
    modality_dropout: float
    patience: int
    val_fraction: float
    seed: int
    score_rows_alone: bool = False
    """Score one patient per forward pass: for networks whose output jumps at a hard threshold (M3Care's
    similarity filter), where float32 matmuls of different batch sizes differ by ~1e-7 and could move a
    donor across it, so a score would depend on its batch."""

    def _network(self, dims: list[int], n_cov: int) -> nn.Module:
        raise NotImplementedError

    def _loss(self, net: nn.Module, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(net(xs, mask, cov), y)

    def _tensors(self, fs: FeatureSet) -> Tensors:
        xs = [torch.as_tensor((fs.embeddings[m] - self.center_[m]) / self.scale_[m], dtype=torch.float32)
              * torch.as_tensor(fs.mask[:, [i]], dtype=torch.float32)  # a missing modality stays exactly zero
              for i, m in enumerate(fs.modalities)]
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

    def fit(self, features: FeatureSet) -> "MaskedTorchClassifier":
        from models.fusion.inputs import torch_threads

        with torch_threads(1):  # tiny matrices: one thread beats contention
            return self._fit(features)

    def _fit(self, features: FeatureSet) -> "MaskedTorchClassifier":
        from models.training.train import modality_dropout, patient_split

        torch.manual_seed(self.seed)
        tr, va = patient_split(features, self.val_fraction, self.seed)
        train_fs, val_fs = features.subset(tr), features.subset(va)
        self._standardise(train_fs)
        xs, mask, cov = self._tensors(train_fs)
        y = torch.as_tensor(np.asarray(train_fs.labels), dtype=torch.float32)
        net = self._network([x.shape[1] for x in xs], cov.shape[1])
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-3)
        gen = torch.Generator().manual_seed(self.seed)
        if hasattr(net, "bank"):
            net.bank = (tuple(xs), mask, cov)
        best, state, waited = -np.inf, copy.deepcopy(net.state_dict()), 0
        for _ in range(self.epochs):
            net.train()
            order = torch.randperm(len(y), generator=gen)
            for s in range(0, len(order), self.batch_size):
                b = order[s:s + self.batch_size]
                m = modality_dropout(mask[b], self.modality_dropout, gen)
                loss = self._loss(net, [x[b] * m[:, [i]] for i, x in enumerate(xs)], m, cov[b], y[b])
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

    def _logits(self, net: nn.Module, fs: FeatureSet) -> np.ndarray:
        net.eval()
        xs, mask, cov = self._tensors(fs)
        step = 1 if self.score_rows_alone else 512
        with torch.no_grad():
            return np.concatenate([net([x[s:s + step] for x in xs], mask[s:s + step], cov[s:s + step]).numpy()
                                   for s in range(0, len(fs), step)])

    def predict_risk(self, features: FeatureSet) -> np.ndarray:
        from models.fusion.inputs import torch_threads

        if not hasattr(self, "network_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(features) first")
        with torch_threads(1):
            return self.calibrator_.transform(self._logits(self.network_, features))
