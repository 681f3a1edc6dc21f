"""MUSE (Wu, Dadu, ..., Faghri, ICLR 2024), reimplemented as a peer: a patient-modality graph with contrastive training.

Why a reimplementation: the packaged MUSE (``imml[deep]``) cannot be installed
here -- it pulls CUDA torch 2.14 wheels over the CPU torch 2.13 the platform
pins, plus torch_geometric and lightning. This module follows "Multimodal
Patient Representation Learning with Missing Modalities and Labels" and the
authors' released code (github.com/zzachw/MUSE), with the graph operations
written densely in plain torch (n patients x M modalities is tiny).

Follows the paper / authors' code:

- a bipartite graph of patient nodes and one learnable node per modality; an
  edge wherever the patient has the modality, its feature the modality
  encoder's output for that patient. A missing modality is no edge: nothing is
  imputed and its (zeroed) input never reaches any node;
- patient nodes start as a vector of ones, modality nodes as learned vectors;
- two GraphSAGE-style layers with edge features and mean aggregation, the same
  weights for both edge directions: message ``relu(W_m [x_src, e])``, update
  ``relu(W_u [mean message, x_dst])``; between layers dropout on the nodes and
  an edge update ``relu(W_e [x_src, x_dst, e])`` per direction;
- augmentation by edge dropping: each patient, with probability ``edge_drop``
  (0.5 in the authors' code) and when it has two or more edges, keeps a
  uniformly drawn number between 1 and (edges - 1) of them;
- the mutual-consistent contrastive loss on ``tanh``-projected, L2-normalised
  patient representations at temperature 0.07: unsupervised, a symmetric
  InfoNCE where the same patient in the original and the augmented graph is
  the positive pair; supervised, patients with the same label are positives
  (the authors' code scores every pair with a binary cross-entropy against
  "same label", within the original view and across the two views, and so do
  we); total ``task + w * (unsupervised + supervised)`` with ``w = 0.5``;
- a prediction head (linear, ReLU, dropout, linear) on the patient node.

Adapted, and why:

- inputs here are fixed per-modality embedding vectors, so each modality
  encoder is an MLP (the paper's ADNI setting uses feed-forward encoders too);
- covariates enter the patient node's initial state as ``1 + W c`` (the paper
  feeds demographics through a modality encoder; here they are not a modality);
- inductive prediction: MUSE is transductive (the authors score a batch as one
  graph, so a patient's score depends on its batch). While training, the batch
  is the graph, as in the paper. When predicting, the modality nodes' states
  at every layer come from the graph of the training patients (``bank``, set
  by the base class) alone, computed once per set of weights; a query patient
  only receives messages and never changes a modality node, so its score is
  the same alone or in any batch;
- the shared training loop (standardisation, validation split, early stopping
  on validation AUROC, AdamW, modality dropout, Platt calibration) is the
  platform's :class:`MaskedTorchClassifier`, so peers differ only in network
  and loss. All patients are labelled here, so the label-missing part of MUSE
  (unsupervised loss on unlabelled patients) has nothing to act on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.imputation.masked_classifier import MaskedTorchClassifier


def _masked_mean(msg: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``msg`` [n, M, h] over ``dim`` where ``mask`` [n, M]; zero with no edge (as PyG's mean)."""
    summed = torch.where(mask[..., None], msg, torch.zeros((), dtype=msg.dtype)).sum(dim)
    return summed / mask.sum(dim).clamp(min=1)[..., None].to(msg.dtype)


class _EdgeSage(nn.Module):
    """One GraphSAGE layer with edge features on the dense bipartite graph (EdgeSAGEConv, mean aggregation)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.message = nn.Linear(2 * hidden, hidden)
        self.update = nn.Linear(2 * hidden, hidden)

    def to_patients(self, xp: torch.Tensor, xm: torch.Tensor, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        msg = F.relu(self.message(torch.cat([xm.expand(len(xp), -1, -1), e], -1)))
        return F.relu(self.update(torch.cat([_masked_mean(msg, mask, 1), xp], -1)))

    def to_modalities(self, xp: torch.Tensor, xm: torch.Tensor, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        msg = F.relu(self.message(torch.cat([xp[:, None].expand(-1, xm.shape[0], -1), e], -1)))
        return F.relu(self.update(torch.cat([_masked_mean(msg, mask, 0), xm], -1)))


class _MuseNet(nn.Module):
    def __init__(self, dims: list[int], n_cov: int, hidden: int, dropout: float, layers: int = 2) -> None:
        super().__init__()
        self.enc = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout),
                                               nn.Linear(hidden, hidden)) for d in dims)
        self.cov = nn.Linear(max(n_cov, 1), hidden)
        self.modality_nodes = nn.Parameter(torch.randn(len(dims), hidden))
        self.convs = nn.ModuleList(_EdgeSage(hidden) for _ in range(layers))
        self.edge_mlps = nn.ModuleList(nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU())
                                       for _ in range(layers - 1))
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.dropout = dropout
        self.bank: tuple | None = None
        self._bank_cache: tuple | None = None

    def edges(self, xs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Edge features [n, M, h]: each modality's encoder output; rows of missing modalities are never read."""
        e = torch.stack([enc(x) for enc, x in zip(self.enc, xs)], 1)
        return F.dropout(e, self.dropout, self.training)  # as the authors' code, after encoding

    def patient_init(self, cov: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.cov(cov)

    def propagate(self, e: torch.Tensor, mask: torch.Tensor, cov: torch.Tensor,
                  modality_states: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Patient representations after all layers, and the modality node states entering each layer.

        With ``modality_states`` given (prediction), those are used and the
        patients here never update a modality node; without, the modality
        nodes are updated from this graph's patients (training, and the bank).
        """
        xp, xm = self.patient_init(cov), self.modality_nodes
        e_to_p = e_to_m = e
        states = [xm]
        for layer, conv in enumerate(self.convs):
            last = layer == len(self.convs) - 1
            new_p = conv.to_patients(xp, xm, e_to_p, mask)
            if modality_states is not None:
                new_m = modality_states[layer + 1] if not last else xm
            else:
                new_m = xm if last else conv.to_modalities(xp, xm, e_to_m, mask)
            xp, xm = new_p, new_m
            if not last:
                xp = F.dropout(xp, self.dropout, self.training)
                if modality_states is None:
                    xm = F.dropout(xm, self.dropout, self.training)
                states.append(xm)
                mlp, n, k = self.edge_mlps[layer], len(xp), xm.shape[0]
                xpe, xme = xp[:, None].expand(-1, k, -1), xm.expand(n, -1, -1)
                e_to_m = mlp(torch.cat([xpe, xme, e_to_m], -1))
                e_to_p = mlp(torch.cat([xme, xpe, e_to_p], -1))
        return xp, states

    def bank_states(self) -> list[torch.Tensor]:
        """Modality node states from the training graph, recomputed only when the weights or the bank change."""
        key = tuple(p._version for p in self.parameters())  # bumped by every in-place update (optimiser, load)
        cache = self._bank_cache
        if cache is None or cache[0] is not self.bank or cache[1] != key:
            bx, bm, bc = self.bank
            with torch.no_grad():
                _, states = self.propagate(self.edges(list(bx), bm), bm, bc)
            self._bank_cache = cache = (self.bank, key, states)
        return cache[2]

    def represent(self, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """Patient node representations: the batch graph while training, the bank's modality nodes otherwise."""
        given = None if self.training or self.bank is None else self.bank_states()
        return self.propagate(self.edges(xs, mask), mask, cov, given)[0]

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        return self.head(self.represent(xs, mask, cov)).squeeze(1)


def edge_drop(mask: torch.Tensor, p: float) -> torch.Tensor:
    """MUSE's augmentation: with probability ``p`` a patient with k >= 2 edges keeps a uniform 1..k-1 of them."""
    count = mask.sum(1)
    thin = (torch.rand(len(mask)) < p) & (count > 1)
    keep = 1 + (torch.rand(len(mask)) * (count - 1).clamp(min=0)).long()
    scores = torch.where(mask, torch.rand(mask.shape), torch.full(mask.shape, 2.0))
    rank = scores.argsort(1).argsort(1)  # present edges in random order first
    return torch.where(thin[:, None], mask & (rank < keep[:, None]), mask)


def contrastive_loss(z: torch.Tensor, az: torch.Tensor, y: torch.Tensor, projection: nn.Module,
                     temperature: float) -> torch.Tensor:
    """Mutual-consistent loss: unsupervised (same patient across views) plus supervised (same label) terms."""
    u = F.normalize(projection(z), dim=-1)
    au = F.normalize(projection(az), dim=-1)
    cross = u @ au.T / temperature
    target = torch.arange(len(u))
    unsup = (F.cross_entropy(cross, target) + F.cross_entropy(cross.T, target)) / 2
    same = (y[:, None] == y[None, :]).float()
    sup = (2 * F.binary_cross_entropy_with_logits(u @ u.T / temperature, same)
           + F.binary_cross_entropy_with_logits(cross, same)
           + F.binary_cross_entropy_with_logits(cross.T, same)) / 4
    return unsup + sup


class MuseClassifier(MaskedTorchClassifier):
    """MUSE peer (see the module docstring): ``fit(features)``, then ``predict_risk(features)``."""

    method = "muse"

    def __init__(self, hidden: int = 32, epochs: int = 80, lr: float = 3e-3, batch_size: int = 128,
                 modality_dropout: float = 0.2, patience: int = 15, val_fraction: float = 0.2, seed: int = 7,
                 edge_drop: float = 0.5, temperature: float = 0.07, contrastive_weight: float = 0.5,
                 dropout: float = 0.25) -> None:
        self.hidden, self.epochs, self.lr, self.batch_size = hidden, epochs, lr, batch_size
        self.modality_dropout, self.patience = modality_dropout, patience
        self.val_fraction, self.seed = val_fraction, seed
        self.edge_drop, self.temperature, self.contrastive_weight = edge_drop, temperature, contrastive_weight
        self.dropout = dropout

    def _network(self, dims: list[int], n_cov: int) -> nn.Module:
        return _MuseNet(dims, n_cov, self.hidden, self.dropout)

    def _loss(self, net: nn.Module, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
        """Task loss on the original graph plus the contrastive loss between it and an edge-dropped copy."""
        e = net.edges(xs, mask)  # one encoding shared by both views, as in the authors' code
        z, _ = net.propagate(e, mask, cov)
        az, _ = net.propagate(e, edge_drop(mask, self.edge_drop), cov)
        task = F.binary_cross_entropy_with_logits(net.head(z).squeeze(1), y)
        return task + self.contrastive_weight * contrastive_loss(z, az, y, net.projection, self.temperature)
