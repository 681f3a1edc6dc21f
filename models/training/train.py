"""One training loop for every fusion kind and imputation method, on frozen embeddings.

``train(features, config)`` splits patients (stratified, patient-level), fits
the covariate scaler and the imputer on the training patients only, trains the
fusion model with modality dropout, an unweighted loss (a class-weighted loss
shifts every logit by a constant) and early stopping on the validation split;
the calibrator is chosen on folds of the validation scores (Platt, Venn-Abers or
none: the lowest cross-fitted ECE, so calibration never makes ECE worse there)
and the conformal class sets are fitted on the cross-calibrated scores. When the
validation split is small (< 100 patients or < 20 of the minority class), it is
replaced by cross-fitting over every training patient
(:mod:`models.training.crossfit`): the folds pick the epoch count, compare the
network with a logistic regression on the same fused inputs (the network only
when it wins beyond bootstrap noise), and their out-of-fold scores fit the
calibrator and the sets; the fold predictors of the chosen head are the model
(risk = mean of their calibrated risks). Returns a
:class:`~models.training.trained_model.TrainedModel` that carries all of it.
Nothing here sees a patient outside ``features``: the callers pass training
patients only (the held-out split never reaches it).

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
from sklearn.model_selection import StratifiedShuffleSplit

from models.features.covariates import CovariateScaler
from models.features.feature_set import FeatureSet
from models.fusion import build_fusion
from models.fusion.inputs import FusionInputs, predict_logits, to_inputs, torch_threads
from models.imputation.registry import build_imputer
from models.imputation.select import select_imputer, selection_record
from models.training import crossfit
from models.training.abstain_policy import policy_from_folds
from models.training.auroc import binary_auroc
from models.training.calibration import CALIBRATORS, PlattScaler, VennAbersCalibrator, choose_calibrator
from models.training.config import STRATEGIES, TrainConfig, fusion_config
from models.training.trained_model import TrainedModel
from models.training.uncertainty import ConformalSets

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
                progress: Callable[[int, dict], None] | None = None, restore_best: bool = True,
                epoch_logits: list | None = None) -> list[dict]:
    """Train ``model`` in place, restore the best validation epoch; return the history.

    ``restore_best=False`` keeps the last epoch (cross-fitting trains a fixed epoch count);
    ``epoch_logits`` collects the validation logits after every epoch (the inner-fold curve).

    "Best" is the highest validation AUROC by default (``select_on="auroc"``):
    temperature scaling fixes calibration afterwards, and the validation loss
    of the attention models rises from over-confidence long before their
    ranking stops improving (measured: loss 0.53 -> 1.0 while AUROC 0.86 -> 0.90).
    """
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
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
        if epoch_logits is not None:
            epoch_logits.append(val_logits)
        val_loss = float(val_loss_fn(torch.as_tensor(val_logits), val_in.labels.cpu()))
        y = val_in.labels.cpu().numpy()
        auc = binary_auroc(y, val_logits)
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
    if restore_best:
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


def _fixed_epochs(config: TrainConfig) -> Callable[[torch.nn.Module, FusionInputs, FusionInputs, int], list]:
    """``fit(net, train, held, epochs)``: exactly ``epochs`` epochs, no selection; held logits per epoch."""
    def fit(net: torch.nn.Module, train_in: FusionInputs, held_in: FusionInputs, epochs: int) -> list:
        per_epoch: list = []
        fit_network(net, train_in, held_in, replace(config, epochs=epochs, patience=epochs + 1),
                     restore_best=False, epoch_logits=per_epoch)
        return per_epoch
    return fit


def _pooled_auroc(labels: np.ndarray, logits: np.ndarray) -> float:
    return binary_auroc(labels, logits)


def _epoch_from_curve(labels: np.ndarray, curve: np.ndarray) -> tuple[int, list[dict]]:
    """(best epoch, history rows) from the pooled out-of-fold AUROC after each epoch, smoothed over 3 epochs
    (single-epoch maxima on a hundred patients are noise)."""
    aucs = np.array([_pooled_auroc(labels, c) for c in curve])
    smooth = np.nan_to_num(aucs, nan=0.0)
    if len(aucs) >= 3:
        smooth = np.r_[smooth[0], np.convolve(smooth, np.ones(3) / 3, mode="valid"), smooth[-1]]
    best = int(np.nanargmax(smooth))
    rows = [{"epoch": e, "train_loss": float("nan"), "val_loss": float("nan"), "val_auroc": float(aucs[e]),
             "source": "pooled out-of-fold"} for e in range(len(aucs))]
    return best, rows


def _imputer_per_patient_set(config: TrainConfig) -> Callable[[FeatureSet], object]:
    """An imputer factory that fits once per set of patients within one training run (every call gets subsets
    of the same scaled features): the fold imputers the small-cohort folds fit are the ones the abstain
    policy's folds need, and refitting them cost ~20 s of a 200-patient demo."""
    params = {"k": config.k_donors} if config.impute == "cross_profile" else {}
    fitted: dict[tuple[str, ...], object] = {}

    def make_imputer(fs: FeatureSet):
        key = tuple(fs.patient_ids)
        if key not in fitted:
            fitted[key] = build_imputer(config.impute, **params).fit(fs)
        return fitted[key]
    return make_imputer


def _train(features: FeatureSet, config: TrainConfig, progress: Callable[[int, dict], None] | None) -> TrainedModel:
    seed_everything(config.seed)
    tr_idx, va_idx = patient_split(features, config.val_fraction, config.seed)
    scaler = CovariateScaler().fit(features.covariates[tr_idx])
    scaled = replace(features, covariates=scaler.transform(features.covariates))
    make_imputer = _imputer_per_patient_set(config)
    n_cov, dims = scaled.covariates.shape[1], features.dims()

    def build(k: int) -> torch.nn.Module:
        torch.manual_seed(config.seed + 100 + k)
        return build_fusion(config.fusion, dims, fusion_config(config, n_cov)).to(config.device)

    labels = np.asarray(features.labels).astype(int)
    folds_k = 0 if config.n_calibrators == 0 else config.cv_folds  # n_calibrators 0: the legacy "off"
    small = bool(folds_k) and crossfit.is_small(labels[va_idx])
    selection: dict = {"small_cohort": small, "cv_folds": folds_k, "n_training_patients": int(len(labels)),
                       "n_validation_patients": int(len(va_idx))}
    if small:
        model, imputer, history, oof, folds, head, fold_nets = _fit_small(scaled, config, make_imputer, build,
                                                                         folds_k, selection, progress)
        val_ids = ()
    else:
        seed_everything(config.seed)
        train_fs, val_fs = scaled.subset(tr_idx), scaled.subset(va_idx)
        imputer = make_imputer(train_fs)
        if hasattr(imputer, "training_rows"):  # complete-case: the network learns from complete patients only
            train_fs = train_fs.subset(imputer.training_rows(train_fs))
        train_in = to_inputs(imputer.transform(train_fs), config.device)
        val_in = to_inputs(imputer.transform(val_fs), config.device)
        model = build_fusion(config.fusion, dims, fusion_config(config, n_cov)).to(config.device)
        history = fit_network(model, train_in, val_in, config, progress)
        head, val_ids, fold_nets = "network", tuple(val_fs.patient_ids), []
        # A validation split this size calibrates the network that will predict: its own scores. (Cross-fitted
        # fold networks as predictors ranked worse here: 0.78 vs 0.81 held-out AUROC at 800 training
        # patients.) The calibrator is still chosen on folds of it, so it never makes ECE worse there.
        oof = predict_logits(model, val_in)
        folds = crossfit.patient_folds(val_fs, folds_k, config.seed) if folds_k else None
        members = fit_ensemble(config, dims, n_cov, train_in, val_in)
    cal_labels = labels if small else np.asarray(val_fs.labels).astype(int)
    if folds is not None:
        calibrator, record, oof_risk = choose_calibrator(oof, cal_labels, folds, config.calibration)
        record["source"] = ("out-of-fold scores of every training patient" if small else
                            f"the network's scores on the {len(cal_labels)} validation patients, chosen on "
                            f"{len(np.unique(folds))} folds of them")
    else:  # inner fits of a selection (cv_folds 0): nobody reads their calibration, keep it cheap
        calibrator = CALIBRATORS[config.calibration]().fit(oof, cal_labels)
        record = {"chosen": config.calibration, "source": "validation split (no cross-fitting)"}
        oof_risk = calibrator.transform(oof)
    if small:  # bootstrap members of the chosen head's epoch count, sharing its calibrator
        members = _small_ensemble(config, scaled, imputer, build, selection.get("epochs", 1), calibrator) \
            if head == "network" else []
    trained = TrainedModel(config=config, network=model, imputer=imputer, calibrator=calibrator,
                           modalities=tuple(features.modalities), n_covariates=n_cov,
                           history=history, val_patient_ids=val_ids, scaler=scaler,
                           covariate_names=tuple(features.covariate_names),
                           encoder_keys=dict(features.encoder_keys), members=members,
                           range_calibrator=VennAbersCalibrator().fit(oof, cal_labels),
                           conformal=ConformalSets().fit(oof_risk, cal_labels), head=head,
                           fold_networks=fold_nets)
    if folds is not None:  # which abstain rules earn their place on the same out-of-fold patients
        policy_fs = scaled if small else val_fs
        trained.abstain_policy = policy_from_folds(
            config, policy_fs, folds, oof, record["chosen"],
            (lambda f: fold_nets[f]) if small else (lambda f: model),
            (lambda f: make_imputer(scaled.subset(np.flatnonzero(folds != f)))) if small else (lambda f: imputer),
            head)
        trained.metrics["abstain_policy"] = trained.abstain_policy.record
    trained.metrics["calibration"] = record
    trained.metrics["selection"] = selection
    all_in = to_inputs(imputer.transform(scaled), config.device)
    trained.shapley_baseline = float(np.mean(trained.risk(all_in)))
    return trained


def _small_ensemble(config: TrainConfig, scaled: FeatureSet, imputer, build, epochs: int, calibrator) -> list:
    """``config.ensemble`` networks on bootstrap resamples of every training patient (small cohort: no
    validation split), ``epochs`` epochs each, scored through the model's own calibrator."""
    fit_fs = scaled.subset(imputer.training_rows(scaled)) if hasattr(imputer, "training_rows") else scaled
    all_in = to_inputs(imputer.transform(fit_fs), config.device)
    gen, members = np.random.default_rng([config.seed, 17]), []
    for k in range(config.ensemble):
        idx = torch.as_tensor(gen.integers(0, len(all_in), len(all_in)))
        net = build(1000 + k)
        boot = all_in.rows(idx)
        _fixed_epochs(replace(config, seed=config.seed + 1000 + k))(net, boot, boot, epochs)
        members.append((net, calibrator))
    return members


def _best_epoch(history: list[dict], config: TrainConfig) -> int:
    """The epoch ``fit_network`` restored (highest validation AUROC, or lowest loss)."""
    if config.select_on == "loss" or all(np.isnan(r["val_auroc"]) for r in history):
        return int(min(history, key=lambda r: r["val_loss"])["epoch"])
    return int(max(history, key=lambda r: -np.inf if np.isnan(r["val_auroc"]) else r["val_auroc"])["epoch"])


def _fit_small(scaled: FeatureSet, config: TrainConfig, make_imputer, build, k: int, selection: dict,
               progress: Callable[[int, dict], None] | None = None):
    """Small cohort: folds pick the epoch count and the head (network vs logistic regression); the chosen
    head is trained on every training patient. Returns (model, imputer, history, oof logits, folds, head)."""
    labels = np.asarray(scaled.labels).astype(int)
    folds = crossfit.patient_folds(scaled, k, config.seed)
    data = crossfit.fold_data(scaled, folds, make_imputer, config.device)
    curve = crossfit.oof_epoch_curve(data, len(labels), build, _fixed_epochs(config), config.epochs)
    best, history = _epoch_from_curve(labels, curve)
    for row in history if progress else ():  # the folds' pooled curve is this path's epoch record
        progress(row["epoch"], row)
    fcfg = fusion_config(config, scaled.covariates.shape[1])
    lin_oof, c = crossfit.oof_linear(data, len(labels), scaled.dims(), fcfg, config.seed)
    net_auc, lin_auc = _pooled_auroc(labels, curve[best]), _pooled_auroc(labels, lin_oof)
    head, record = crossfit.choose_head(labels, curve[best], lin_oof, seed=config.seed)
    selection.update(epochs=best + 1, oof_auroc_network=net_auc, oof_auroc_linear=lin_auc, linear_c=c, **record)
    imputer = make_imputer(scaled)
    if head == "linear":
        nets = crossfit.fold_linear(data, scaled.dims(), fcfg, c, config.seed, config.device)
        return nets[0], imputer, history, lin_oof, folds, head, nets
    # the fold networks at the chosen epoch count (same seeds: the curve's scores at that epoch)
    oof, nets = crossfit.oof_fixed_epochs(data, len(labels), build, _fixed_epochs(config), best + 1)
    return nets[0], imputer, history, oof, folds, head, nets
