"""Cross-fitting over the training patients: out-of-fold scores for calibration, conformal sets and, on
small cohorts, for choosing the epoch and the head.

Why: a calibrator fitted on the 20 % validation slice of a small cohort sees a few dozen patients (Platt
T = 0.21 on 26 patients made ECE worse than none), and early stopping on the same 26 kept epoch 0. Here
every training patient gets a score from a network that did not see it (``k`` patient-level stratified
folds; the imputer is refitted inside each fold so a patient is never its own donor), and those
out-of-fold scores fit the calibrator and the conformal sets. When the validation split is small
(:func:`is_small`), the folds also choose the number of epochs (pooled out-of-fold AUROC per epoch) and
compare the network with a logistic regression on the same fused inputs (:class:`LinearFusion`). The
network is the model only when it beats the linear head on the folds beyond bootstrap noise
(:func:`choose_head`): its fold score is the best of ``epochs`` points of one out-of-fold curve, the linear
head's the best of three C values, so on a few dozen patients the network "wins" by selection alone
(COVID chest X-rays, 55 training patients: network 0.709 vs linear 0.610 on the folds, then 0.32 on the
held-out patients; over 8 study splits in docs/BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

from models.features.feature_set import FeatureSet
from models.fusion.base import FusionConfig, FusionModule, indicator_width, indicators, masked
from models.fusion.inputs import FusionInputs, predict_logits, to_inputs

SMALL_VAL_PATIENTS = 100
"""Below this many validation patients, selection/early stopping/calibration move to inner folds."""
SMALL_VAL_MINORITY = 20
"""... or below this many validation patients of the minority class."""
LINEAR_C = (0.01, 0.1, 1.0)
"""Inverse L2 strengths tried for the logistic-regression head (on standardised fused inputs)."""
LINEAR_CLIP_SD = 4.0
"""Standardised inputs of the logistic-regression head are clipped to +-this many training deviations."""
HEAD_BOOT = 500
"""Patient-bootstrap draws of the network's out-of-fold AUROC gain over the linear head."""
HEAD_ALPHA = 0.05
"""The network is kept when the one-sided ``1 - HEAD_ALPHA`` lower bound of that gain is above 0."""


def is_small(val_labels: np.ndarray) -> bool:
    """True when a validation split this size cannot select epochs or fit a calibrator reliably."""
    y = np.asarray(val_labels).astype(int)
    return len(y) < SMALL_VAL_PATIENTS or min((y == 0).sum(), (y == 1).sum()) < SMALL_VAL_MINORITY


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half); NaN with one class."""
    from models.training.auroc import binary_auroc

    return binary_auroc(y, s)


def choose_head(labels: np.ndarray, network: np.ndarray, linear: np.ndarray, n_boot: int = HEAD_BOOT,
                alpha: float = HEAD_ALPHA, seed: int = 0) -> tuple[str, dict]:
    """("network" | "linear", record) from the two heads' out-of-fold scores of the same patients.

    Why not the higher point: the network's score was picked from many epochs of one curve, so it is biased
    upwards on a small cohort; the simpler head stays unless the network's paired gain clears the noise.
    """
    y = np.asarray(labels).astype(int)
    a, b = np.asarray(network, float), np.asarray(linear, float)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    draws = np.array([_auroc(y[i], a[i]) - _auroc(y[i], b[i]) for i in idx])
    draws = draws[np.isfinite(draws)]
    low = float(np.quantile(draws, alpha)) if len(draws) else float("nan")
    gain = _auroc(y, a) - _auroc(y, b)
    head = "network" if np.isfinite(low) and low > 0 else "linear"
    return head, {"head": head, "oof_auroc_gain_network": gain, "oof_auroc_gain_network_low": low,
                  "head_rule": f"network only if the one-sided {1 - alpha:.0%} lower bound of its paired "
                               f"out-of-fold AUROC gain over the linear head is > 0 ({len(draws)} draws)"}


def patient_folds(features: FeatureSet, k: int, seed: int) -> np.ndarray:
    """Fold index per row: stratified by label, every row of one patient in the same fold."""
    ids = np.array(features.patient_ids)
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    y = np.asarray(features.labels).astype(int)[first]
    k = int(min(k, np.bincount(y, minlength=2).min()))
    if k < 2:
        raise ValueError("cross-fitting needs at least 2 patients of each class")
    fold_of = np.empty(len(uniq), int)
    for f, (_, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(uniq, y)):
        fold_of[test] = f
    return fold_of[inverse]


class LinearFusion(FusionModule):
    """Logistic regression on ``[x_m (0 when missing) for m] + [mask, imputed, covariates]``.

    A fusion module like the others (same inputs, masking and Shapley coalitions), with weights fitted by
    scikit-learn rather than by gradient steps: the candidate a small cohort must beat.
    """

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__(dims, config)
        width = sum(dims.values()) + indicator_width(len(dims), config.n_covariates)
        self.linear = nn.Linear(width, 1)
        # The training patients' standardisation and the clip applied to every standardised input. Defaults
        # (0, 1, inf) are the identity: a head saved before these buffers existed loads and scores as it did.
        self.register_buffer("centre", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("clip", torch.tensor(float("inf")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("centre", "scale", "clip"):  # a head saved before the buffers: folded weights, no clip
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def design(self, inputs: FusionInputs) -> np.ndarray:
        """The fused input matrix, built exactly as ``forward`` builds it."""
        mask = inputs.mask.bool()
        imputed = inputs.imputed.bool() & mask
        xs = [masked(inputs.embeddings[m].float(), mask[:, i]) for i, m in enumerate(self.modalities)]
        return torch.cat(xs + [indicators(mask, imputed, inputs.covariates)], -1).cpu().numpy().astype(float)

    def fuse(self, xs, mask, side, imputed):
        x = torch.cat(list(xs) + [side], -1).float()
        return self.linear(((x - self.centre) / self.scale).clamp(-self.clip, self.clip)).squeeze(-1)

    def fit(self, inputs: FusionInputs, c: float, seed: int) -> "LinearFusion":
        """Standardise on these patients, clip at ``LINEAR_CLIP_SD``, fit an L2 logistic regression.

        Why the clip: folding the standardisation into the weights gave a nearly constant column (an
        embedding dimension almost never active in training) a weight of 1/sd (|w| up to 139 on a 200-patient
        demo), so a held-out patient a few hundredths off that constant got a risk of 0.0004 or 0.999 from a
        model of AUROC 0.62 (held-out ECE 0.33, Brier 0.30, worse than the prevalence). Clipped inputs bound
        any one column's say to what a training patient ``LINEAR_CLIP_SD`` deviations out had.
        """
        x, y = self.design(inputs), inputs.labels.cpu().numpy().astype(int)
        mu, sd = x.mean(0), x.std(0)
        sd[sd < 1e-8] = 1.0
        z = np.clip((x - mu) / sd, -LINEAR_CLIP_SD, LINEAR_CLIP_SD)
        lr = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(z, y)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(lr.coef_, dtype=torch.float32))
            self.linear.bias.copy_(torch.as_tensor(lr.intercept_, dtype=torch.float32))
            self.centre.copy_(torch.as_tensor(mu, dtype=torch.float32))
            self.scale.copy_(torch.as_tensor(sd, dtype=torch.float32))
            self.clip.fill_(LINEAR_CLIP_SD)
        return self.eval()


@dataclass
class FoldData:
    """One fold's training and scored inputs (each imputed by an imputer fitted on the fold's training rows)."""

    train: FusionInputs
    held: FusionInputs
    rows: np.ndarray


def fold_data(features: FeatureSet, folds: np.ndarray, make_imputer: Callable[[FeatureSet], object],
              device: str) -> list[FoldData]:
    out = []
    for f in np.unique(folds):
        tr, held = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        train_fs, held_fs = features.subset(tr), features.subset(held)
        imputer = make_imputer(train_fs)
        if hasattr(imputer, "training_rows"):
            train_fs = train_fs.subset(imputer.training_rows(train_fs))
        out.append(FoldData(to_inputs(imputer.transform(train_fs), device),
                            to_inputs(imputer.transform(held_fs), device), held))
    return out


def oof_fixed_epochs(data: list[FoldData], n: int, build: Callable[[int], torch.nn.Module],
                     fit: Callable[[torch.nn.Module, FusionInputs, FusionInputs, int], list[np.ndarray]],
                     epochs: int) -> tuple[np.ndarray, list[torch.nn.Module]]:
    """(out-of-fold logits, the fold networks) of networks trained for exactly ``epochs`` epochs on each
    fold's training rows. The fold networks are the model's predictors: the calibrator and the conformal
    sets were fitted on exactly their kind of scores (a network trained on every patient is sharper)."""
    out, nets = np.empty(n), []
    for k, d in enumerate(data):
        net = build(k)
        fit(net, d.train, d.held, epochs)
        out[d.rows] = predict_logits(net, d.held)
        nets.append(net.eval())
    return out, nets


def oof_epoch_curve(data: list[FoldData], n: int, build: Callable[[int], torch.nn.Module],
                    fit: Callable[[torch.nn.Module, FusionInputs, FusionInputs, int], list[np.ndarray]],
                    epochs: int) -> np.ndarray:
    """``(epochs, n)`` out-of-fold logits after every epoch (the curve that picks the epoch count)."""
    out = np.full((epochs, n), np.nan)
    for k, d in enumerate(data):
        per_epoch = fit(build(k), d.train, d.held, epochs)
        for e, logits in enumerate(per_epoch):
            out[e, d.rows] = logits
        out[len(per_epoch):, d.rows] = per_epoch[-1] if per_epoch else 0.0  # stopped early: last state holds
    return out


def oof_linear(data: list[FoldData], n: int, dims: dict[str, int], config: FusionConfig,
               seed: int) -> tuple[np.ndarray, float]:
    """(out-of-fold logits, chosen C) of the logistic-regression head; C by pooled out-of-fold AUROC."""
    from models.training.auroc import binary_auroc

    best, best_c, labels = None, LINEAR_C[0], np.empty(n)
    for d in data:
        labels[d.rows] = d.held.labels.cpu().numpy()
    for c in LINEAR_C:
        out = np.empty(n)
        for d in data:
            out[d.rows] = predict_logits(LinearFusion(dims, config).fit(d.train, c, seed), d.held)
        auc = binary_auroc(labels, out)
        if best is None or auc > best[0] + 1e-9:
            best, best_c = (auc, out), c
    return best[1], best_c


def fold_linear(data: list[FoldData], dims: dict[str, int], config: FusionConfig, c: float, seed: int,
                device: str) -> list[LinearFusion]:
    """The logistic-regression head fitted on each fold's training rows (the fold predictors)."""
    return [LinearFusion(dims, config).to(device).fit(d.train, c, seed) for d in data]


def fit_linear(inputs: FusionInputs, dims: dict[str, int], config: FusionConfig, c: float, seed: int,
               device: str) -> LinearFusion:
    return LinearFusion(dims, config).to(device).fit(inputs, c, seed)

