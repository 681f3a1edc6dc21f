"""M3Care (Zhang et al., KDD 2022), reimplemented as a peer on fixed per-modality embeddings.

Zhang, Chu, Ma, Zhu, Wang, Wang, Zhao: "M3Care: Learning with Missing Modalities
in Multimodal Healthcare Data". The imml package's M3Care cannot be installed
here (its ``deep`` extra replaces the CPU torch build and imports torchvision at
load), so this module rebuilds the method from the paper and imml's port of the
authors' code (github.com/choczhang/M3Care; read, not copied), on the same
embeddings, splits and training loop as our own models
(:class:`~models.imputation.masked_classifier.MaskedTorchClassifier`).

Follows the paper / the authors' model:

* unimodal encoders to one latent width, ReLU output;
* per-modality task-guided deep kernel
  ``k_m(i, j) = ((1 - eps_m) G(phi_m(h_i), phi_m(h_j)) + eps_m) * G(h_i, h_j)``
  with ``phi_m`` a learned 3-layer MLP, ``eps_m = sigmoid(learned)``, ``G`` a
  mixture of three Gaussian kernels at bandwidths b/2, b, 2b where b is the mean
  squared pairwise distance (detached), as in the authors' code;
* patient similarity = mean of ``k_m`` over the modalities both patients have;
* adaptive learnable filter: ``S~ = ReLU(S - delta) + [S > delta] * delta``,
  ``delta = sigmoid(learned)``, so dissimilar patients get no weight and delta
  still receives a gradient through the kept entries (the authors start delta
  at sigmoid(2) = 0.88; ours starts at ``threshold`` = 0.5: on the synthetic
  cohort 0.88 kept 0.1% of patient pairs and, with hardly a kept pair to pass
  a gradient, never moved, where 0.5 keeps about 13%);
* per-modality two-layer GCN over the filtered graph, donors restricted to the
  patients who have that modality (the paper's "uncensored" neighbours); a
  missing modality's representation is the GCN output alone, a present one is
  a learned gate ``w * g + (1 - w) * h`` with ``w = s(g) / (s(g) + s'(h))``;
* multimodal interaction: modality tokens plus learned modality-type
  embeddings through two Transformer encoder layers (4 heads, then 1, ReLU after
  each), concatenated, then a two-layer prediction head;
* the stabilisation term of the authors' code, ``| ||phi_m(h)|| - ||h|| |``,
  added to the task loss with weight ``stab_weight`` (a hyperparameter; the
  default 0.01 is ours, not tuned).

Adapted, and why:

* inputs are fixed embedding vectors, not raw images/notes/series, so each
  modality encoder is an MLP (two layers) rather than a CNN/RNN/text encoder;
  the covariates are one more, always-present modality (the paper's
  demographics are one modality too);
* the similarity features are layer-normalised per patient instead of
  batch-normalised, and the Gaussian bandwidth is a running average kept from
  training (like BatchNorm's running statistics): with per-batch statistics a
  patient's score would depend on who else is scored with it;
* GCN rows are normalised by their total similarity (a similarity-weighted
  mean): while training the donors are the other patients of the batch (never
  oneself); when predicting they are all training patients (``bank``), so an
  unnormalised sum would change scale between the two;
* imml's port masks each modality's graph with "both patients have it" and
  keeps self-loops, which leaves a missing modality only the GCN bias; we
  follow the paper's text instead: the donors are the other patients who have
  the modality, whether or not the patient has it;
* the base class's modality dropout, early stopping on validation AUROC and
  Platt calibration are shared with every model of the comparison.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.imputation.masked_classifier import MaskedTorchClassifier


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, differentiable at zero (cdist's gradient is not)."""
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)


class _DeepKernel(nn.Module):
    """One modality's task-guided kernel: a learned-feature Gaussian mixed with a plain one (see module doc)."""

    def __init__(self, hidden: int, n_kernels: int = 3, mul: float = 2.0, momentum: float = 0.1) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden))
        self.eps = nn.Parameter(torch.tensor(1.0))
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.n_kernels, self.mul, self.momentum = n_kernels, mul, momentum
        self.register_buffer("bandwidth", torch.ones(2))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _gaussian(self, a: torch.Tensor, b: torch.Tensor, which: int, pairs: torch.Tensor) -> torch.Tensor:
        d = _sq_dist(a, b)
        if self.training:  # the batch's mean distance over pairs that both have the modality, remembered for eval
            with torch.no_grad():
                bw = (d * pairs).sum() / pairs.sum().clamp(min=1)
                bw = torch.where(bw < 1e-3, torch.ones_like(bw), bw)
                first = self.updates == 0
                self.bandwidth[which] = torch.where(first, bw, (1 - self.momentum) * self.bandwidth[which]
                                                    + self.momentum * bw)
                if which == 1:
                    self.updates += 1
        else:
            bw = self.bandwidth[which]
        base = bw / self.mul ** (self.n_kernels // 2)
        return sum(torch.exp(-d / (base * self.mul ** i)) for i in range(self.n_kernels)) / self.n_kernels

    def forward(self, hq: torch.Tensor, hd: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        deep = self._gaussian(self.norm(F.relu(self.phi(hq))), self.norm(F.relu(self.phi(hd))), 0, pairs)
        plain = self._gaussian(self.norm(hq), self.norm(hd), 1, pairs)
        eps = torch.sigmoid(self.eps)
        return ((1 - eps) * deep + eps) * plain

    def stability(self, h: torch.Tensor) -> torch.Tensor:
        """Per patient ``| ||phi(h)|| - ||h|| |``: keeps the learned features on the latents' scale."""
        return (self.phi(h).norm(dim=1) - h.norm(dim=1)).abs()


class _M3CareNet(nn.Module):
    """The M3Care network; the last "modality" is the always-present covariates."""

    def __init__(self, dims: list[int], n_cov: int, hidden: int, dropout: float, threshold: float) -> None:
        super().__init__()
        if hidden % 4:
            raise ValueError(f"hidden must be a multiple of 4 (4 attention heads), got {hidden}")
        widths = [*dims, max(n_cov, 1)]
        k = len(widths)
        self.enc = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
                                 for d in widths)
        self.kernel = nn.ModuleList(_DeepKernel(hidden) for _ in range(k))
        self.threshold = nn.Parameter(torch.tensor(math.log(threshold / (1 - threshold))))
        self.gcn1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(k))
        self.gcn2 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(k))
        self.gate_g = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(k))
        self.gate_h = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(k))
        self.type_emb = nn.Embedding(k, hidden)
        nn.init.normal_(self.type_emb.weight, std=0.02)
        self.mm = nn.ModuleList(nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True)
                                for heads in (4, 1))
        self.head = nn.Sequential(nn.Linear(hidden * k, 2 * hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(2 * hidden, 1))
        self.bank: tuple | None = None
        self._cache: tuple | None = None

    def encode(self, xs: list[torch.Tensor], mask: torch.Tensor,
               cov: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Latent per modality (covariates last) and the matching presence mask."""
        full = torch.cat([mask, torch.ones(len(mask), 1, dtype=torch.bool)], dim=1)
        return [enc(x) for enc, x in zip(self.enc, [*xs, cov])], full

    def similarity(self, hq: list[torch.Tensor], mq: torch.Tensor, hd: list[torch.Tensor],
                   md: torch.Tensor) -> torch.Tensor:
        """Filtered similarity: kernel mean over the modalities both patients have, below delta set to 0."""
        total = count = 0
        for m, kernel in enumerate(self.kernel):
            both = mq[:, m:m + 1].float() @ md[:, m:m + 1].float().T
            total, count = total + kernel(hq[m], hd[m], both) * both, count + both
        score = total / count  # count >= 1: the covariates are always shared
        delta = torch.sigmoid(self.threshold)
        kept = F.relu(score - delta)
        return kept + (kept > 0).float() * delta.detach()

    @staticmethod
    def adjacency(sim: torch.Tensor, md: torch.Tensor, self_mask: torch.Tensor) -> list[torch.Tensor]:
        """Per modality, row-normalised weights on the donors who have it (never oneself)."""
        out = []
        for m in range(md.shape[1]):
            a = sim * (md[:, m][None, :] & ~self_mask).float()
            out.append(a / a.sum(1, keepdim=True).clamp(min=1e-8))
        return out

    def _bank_side(self) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Bank latents, mask and first GCN layer over the bank's own graph; cached until a weight changes."""
        key = (id(self.bank), tuple(t._version for t in [*self.parameters(), *self.buffers()]))
        if self._cache is None or self._cache[0] != key:
            bx, bm, bc = self.bank
            with torch.no_grad():
                hb, mb = self.encode(list(bx), bm, bc)
                adj = self.adjacency(self.similarity(hb, mb, hb, mb), mb, torch.eye(len(mb), dtype=torch.bool))
                g1 = [F.relu(lin(a @ h)) for lin, a, h in zip(self.gcn1, adj, hb)]
            self._cache = (key, (hb, mb, g1))
        return self._cache[1]

    def train(self, mode: bool = True) -> "_M3CareNet":
        self._cache = None
        return super().train(mode)

    def impute(self, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Latents ``h``, aggregated neighbour information ``g``, fused tokens and the donor weights ``adj``."""
        hq, mq = self.encode(xs, mask, cov)
        if self.training or self.bank is None:  # in-batch donors, never oneself
            hd, md, self_mask = hq, mq, torch.eye(len(mq), dtype=torch.bool)
            adj = self.adjacency(self.similarity(hq, mq, hq, mq), md, self_mask)
            g1d = [F.relu(lin(a @ h)) for lin, a, h in zip(self.gcn1, adj, hd)]
        else:  # donors: the training patients only, so a score does not depend on its batch
            hd, md, g1d = self._bank_side()
            adj = self.adjacency(self.similarity(hq, mq, hd, md), md, torch.zeros(len(mq), len(md), dtype=torch.bool))
        g = [F.relu(lin(a @ h)) for lin, a, h in zip(self.gcn2, adj, g1d)]
        fused = []
        for m, (h, gm) in enumerate(zip(hq, g)):
            wg, wh = torch.sigmoid(self.gate_g[m](gm)), torch.sigmoid(self.gate_h[m](h))
            w = wg / (wg + wh)
            fused.append(torch.where(mq[:, m:m + 1], w * gm + (1 - w) * h, gm))
        return {"h": hq, "g": g, "fused": fused, "adj": adj}

    def run(self, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the stabilisation term (mean over present latents, summed over modalities)."""
        parts = self.impute(xs, mask, cov)
        z = torch.stack(parts["fused"], dim=1) + self.type_emb.weight[None]
        for layer in self.mm:
            z = F.relu(layer(z))
        logits = self.head(z.flatten(1)).squeeze(1)
        present = torch.cat([mask, torch.ones(len(mask), 1, dtype=torch.bool)], dim=1).float()
        stab = sum((k.stability(h) * present[:, m]).sum() / present[:, m].sum().clamp(min=1)
                   for m, (k, h) in enumerate(zip(self.kernel, parts["h"])))
        return logits, stab

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        return self.run(xs, mask, cov)[0]


class M3CareClassifier(MaskedTorchClassifier):
    """M3Care peer (see the module docstring for what follows the paper and what is adapted)."""

    method = "m3care"
    score_rows_alone = True  # the similarity filter is a hard threshold (see MaskedTorchClassifier)

    def __init__(self, hidden: int = 32, epochs: int = 80, lr: float = 3e-3, batch_size: int = 128,
                 modality_dropout: float = 0.2, patience: int = 15, val_fraction: float = 0.2, seed: int = 7,
                 dropout: float = 0.1, threshold: float = 0.5, stab_weight: float = 0.01) -> None:
        self.hidden, self.epochs, self.lr, self.batch_size = hidden, epochs, lr, batch_size
        self.modality_dropout, self.patience = modality_dropout, patience
        self.val_fraction, self.seed = val_fraction, seed
        self.dropout, self.threshold, self.stab_weight = dropout, threshold, stab_weight

    def _network(self, dims: list[int], n_cov: int) -> nn.Module:
        return _M3CareNet(dims, n_cov, self.hidden, self.dropout, self.threshold)

    def _loss(self, net: nn.Module, xs: list[torch.Tensor], mask: torch.Tensor, cov: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
        logits, stab = net.run(xs, mask, cov)
        return F.binary_cross_entropy_with_logits(logits, y) + self.stab_weight * stab
