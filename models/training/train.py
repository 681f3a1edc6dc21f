"""One training loop for every fusion kind and imputation method, on frozen embeddings.

``train(features, config)`` splits patients (stratified, patient-level), fits
the covariate scaler and the imputer on the training split only, trains the
fusion model with modality dropout, an unweighted loss (a class-weighted loss
shifts every logit by a constant) and early stopping on the validation split,
fits Platt scaling (temperature + bias) and its bootstrap replicates on the
validation split, and returns a :class:`~models.training.trained_model.TrainedModel`
that carries all of them. Nothing here sees a patient outside ``features``:
the callers pass training patients only (the held-out split never reaches it).

``strategy="frozen"`` (embeddings computed once by the encoders, fusion
trained on top) is this loop alone; ``"joint"`` and ``"finetune"`` train the
encoders too and live in :func:`models.training.joint.train_joint`, which ends
by calling ``train`` on the re-encoded embeddings (``config.encoders`` set).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit

from models.features.covariates import CovariateScaler
from models.features.feature_set import FeatureSet
from models.fusion import build_fusion
from models.fusion.inputs import FusionInputs, predict_logits, to_inputs, torch_threads
from models.imputation.registry import build_imputer
from models.imputation.select import select_imputer, selection_record
from models.training.calibration import PlattScaler, TemperatureScaler
from models.training.config import STRATEGIES, TrainConfig, fusion_config
from models.training.trained_model import TrainedModel

__all__ = ["STRATEGIES", "TrainConfig", "train", "fit_network", "patient_split", "modality_dropout"]

def seed_everything(seed: int) -> None:
    """Fix torch and numpy randomness (splits, init, dropout, shuffling)."""
    np.random.seed(seed)
    torch.manual_seed(seed)


def patient_split(features: FeatureSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): stratified by label, every row of one patient on the same side."""
    if features.labels is None:
        raise ValueError("training needs labels; this FeatureSet has none")
    ids = np.array(features.patient_ids)
    uniq, first = np.unique(ids, return_index=True)
    y = np.asarray(features.labels)[first]
    if np.bincount(y.astype(int), minlength=2).min() < 2:
        raise ValueError("both classes need at least 2 patients for a stratified split")
    split = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    tr, va = next(split.split(uniq, y))
    val_ids = set(uniq[va])
    is_val = np.array([i in val_ids for i in ids])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def modality_dropout(mask: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Hide each available modality with probability ``p``, keeping at least one per patient.

    The draws come from ``generator`` on its own device (the training loops seed a CPU one) and then move
    to the mask's: asking a CPU generator for CUDA numbers raises, and drawing on the CPU keeps the
    hidden modalities the same on every device for one seed.
    """
    if p <= 0:
        return mask
    drop = torch.rand(mask.shape, generator=generator, device=generator.device).to(mask.device) < p
    kept = mask & ~drop
    emptied = ~kept.any(-1) & mask.any(-1)
    return torch.where(emptied[:, None], mask, kept)


def bce_loss(labels: torch.Tensor, class_weighted: bool = False) -> torch.nn.BCEWithLogitsLoss:
    """Plain BCE; ``class_weighted`` adds ``pos_weight = neg/pos``, which shifts every logit by a constant."""
    if not class_weighted:
        return torch.nn.BCEWithLogitsLoss()
    pos = float(labels.sum())
    neg = float(len(labels) - pos)
    return torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(neg / max(pos, 1.0), device=labels.device))


def fit_network(model: torch.nn.Module, train_in: FusionInputs, val_in: FusionInputs, config: TrainConfig,
                progress: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place, restore the best validation epoch; return the history.

    "Best" is the highest validation AUROC by default (``select_on="auroc"``):
    temperature scaling fixes calibration afterwards, and the validation loss
    of the attention models rises from over-confidence long before their
    ranking stops improving (measured: loss 0.53 -> 1.0 while AUROC 0.86 -> 0.90).
    """
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = bce_loss(train_in.labels, config.class_weighted)
    val_loss_fn = bce_loss(val_in.labels.cpu(), config.class_weighted)  # scores validation logits on the CPU
    best, best_state, waited, history = float("inf"), copy.deepcopy(model.state_dict()), 0, []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_in), generator=gen)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            b = train_in.rows(order[start:start + config.batch_size])
            b = b.with_mask(modality_dropout(b.mask, config.modality_dropout, gen))
            loss = loss_fn(model(b.embeddings, b.mask, b.covariates, b.imputed), b.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        val_logits = predict_logits(model, val_in)
        val_loss = float(val_loss_fn(torch.as_tensor(val_logits), val_in.labels.cpu()))
        y = val_in.labels.cpu().numpy()
        auc = float(roc_auc_score(y, val_logits)) if len(np.unique(y)) == 2 else float("nan")
        row = {"epoch": epoch, "train_loss": total / len(train_in), "val_loss": val_loss, "val_auroc": auc}
        history.append(row)
        if progress:
            progress(epoch, row)
        score = val_loss if config.select_on == "loss" or np.isnan(auc) else -auc
        if score < best - 1e-4:
            best, best_state, waited = score, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.load_state_dict(best_state)
    return history


def train(features: FeatureSet, config: TrainConfig,
          progress: Callable[[int, dict], None] | None = None) -> TrainedModel:
    """Split, scale, impute, train, calibrate: the whole recipe behind ``clinfuse train``."""
    config.validate()
    if config.strategy != "frozen" and not config.encoders:
        raise ValueError(f"strategy {config.strategy!r} is not implemented by train() on stored embeddings: it "
                         "trains the encoders from the arrays; call models.training.joint.train_joint")
    with torch_threads(config.threads):
        if config.impute != "auto":
            return _train(features, config, progress)
        chosen, table = select_imputer(features, config, train)  # nested: training patients only
        trained = _train(features, replace(config, impute=chosen), progress)
        trained.metrics["impute_selection"] = selection_record(table, chosen)
        return trained


def fit_calibrators(config: TrainConfig, val_logits: np.ndarray, labels: np.ndarray):
    """The calibrator and its bootstrap replicates over validation patients (the interval's calibration part)."""
    y = np.asarray(labels).astype(int)
    calibrator = (PlattScaler() if config.calibration == "platt" else TemperatureScaler()).fit(val_logits, y)
    rng = np.random.default_rng(config.seed)
    replicates = []
    for _ in range(config.n_calibrators):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) == 2:
            replicates.append(PlattScaler().fit(val_logits[idx], y[idx]))
    return calibrator, replicates


def fit_ensemble(config: TrainConfig, dims: dict[str, int], n_covariates: int, train_in: FusionInputs,
                 val_in: FusionInputs) -> list[tuple[torch.nn.Module, PlattScaler]]:
    """``config.ensemble`` networks, each on a bootstrap resample of the training patients, Platt-calibrated on
    the validation patients: their spread is the network's own (estimation) uncertainty in the interval."""
    members = []
    gen = np.random.default_rng([config.seed, 17])
    for k in range(config.ensemble):
        idx = torch.as_tensor(gen.integers(0, len(train_in), len(train_in)))
        torch.manual_seed(config.seed + 1000 + k)
        net = build_fusion(config.fusion, dims, fusion_config(config, n_covariates)).to(config.device)
        fit_network(net, train_in.rows(idx), val_in, replace(config, seed=config.seed + 1000 + k))
        members.append((net, PlattScaler().fit(predict_logits(net, val_in), val_in.labels.cpu().numpy())))
    return members


def _train(features: FeatureSet, config: TrainConfig, progress: Callable[[int, dict], None] | None) -> TrainedModel:
    seed_everything(config.seed)
    tr_idx, va_idx = patient_split(features, config.val_fraction, config.seed)
    scaler = CovariateScaler().fit(features.covariates[tr_idx])
    scaled = replace(features, covariates=scaler.transform(features.covariates))
    train_fs, val_fs = scaled.subset(tr_idx), scaled.subset(va_idx)
    params = {"k": config.k_donors} if config.impute == "cross_profile" else {}
    imputer = build_imputer(config.impute, **params).fit(train_fs)
    if hasattr(imputer, "training_rows"):  # complete-case: the network learns from complete patients only
        train_fs = train_fs.subset(imputer.training_rows(train_fs))
    train_in = to_inputs(imputer.transform(train_fs), config.device)
    val_in = to_inputs(imputer.transform(val_fs), config.device)
    model = build_fusion(config.fusion, features.dims(), fusion_config(config, scaled.covariates.shape[1]))
    model = model.to(config.device)
    history = fit_network(model, train_in, val_in, config, progress)
    calibrator, replicates = fit_calibrators(config, predict_logits(model, val_in), val_fs.labels)
    members = fit_ensemble(config, features.dims(), scaled.covariates.shape[1], train_in, val_in)
    trained = TrainedModel(config=config, network=model, imputer=imputer, calibrator=calibrator,
                           modalities=tuple(features.modalities), n_covariates=scaled.covariates.shape[1],
                           history=history, val_patient_ids=tuple(val_fs.patient_ids), scaler=scaler,
                           covariate_names=tuple(features.covariate_names),
                           encoder_keys=dict(features.encoder_keys), calibrator_replicates=replicates,
                           members=members)
    trained.shapley_baseline = float(np.mean(trained.risk(train_in)))
    return trained
