"""Joint and fine-tune training: the CT, X-ray and EEG encoders learn together with a fusion head on the labels.

``strategy="frozen"`` (:func:`models.training.train.train`) fits fusion on embeddings the
encoders computed once. For a small labelled cohort the encoders can instead be
trained end to end through the fusion module:

- ``"joint"``: encoders start from their seeded init (no pretraining) and train
  at the fusion learning rate;
- ``"finetune"``: encoders start from the newest saved weights in
  ``encoders_dir`` (normally ``clinfuse pretrain``'s; after an earlier
  joint/finetune run, that run's) and train at a lower learning rate than the
  fusion head, so the pretrained features are adjusted, not erased.

Batches read the normalised arrays of the manifest (each patient's latest item per
modality), run each present imaging/EEG item through its encoder's network, take the
note embeddings from the store (notes stay frozen), fuse with the availability mask
and minimise class-balanced BCE; the best epoch on a patient-level validation split
is kept. The result must not change anything downstream, so the trained encoders are
saved as new weight files (new versions), the whole manifest is re-encoded into the
embedding store with them, and a normal :class:`~models.training.trained_model.TrainedModel`
is trained on the new embeddings exactly as the frozen strategy does, with the
encoder versions recorded in ``TrainConfig.encoders``. The jointly trained fusion
head itself is discarded: it saw train-mode (augmented, batch-statistics) features.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from models.encoders import EncoderKey, build_encoder
from models.encoders.base import Item, TorchEncoder, latest_weights
from models.features.assemble import EncodeReport, encode_manifest, latest_items, load_features
from models.features.covariates import CovariateScaler
from models.features.feature_set import FeatureSet
from models.fusion import build_fusion
from models.fusion.inputs import torch_threads
from models.stores.embeddings import EmbeddingStore
from models.training.auroc import binary_auroc
from models.training.config import fusion_config
from models.training.pretrain import recalibrate_batchnorm
from models.training.train import TrainConfig, bce_loss, modality_dropout, patient_split, seed_everything, train

if TYPE_CHECKING:
    from models.training.trained_model import TrainedModel

log = logging.getLogger(__name__)

JOINT_STRATEGIES = ("joint", "finetune")
TRAINABLE = ("ct", "xray", "eeg")
"""Modalities whose encoders have a torch network to train; notes stay frozen (store embeddings)."""


@dataclass(frozen=True)
class JointConfig:
    """The encoder side of joint training; the fusion side is the usual :class:`TrainConfig`."""

    epochs: int = 20
    patience: int = 6
    batch_size: int = 16
    encoder_lr: float | None = None
    """None: the fusion ``lr`` for ``joint``, a tenth of it for ``finetune``."""
    augment: bool = True
    """Apply each encoder's MONAI augmentation (noise, small affine, time shift) to training batches."""


@dataclass
class JointResult:
    """The trained model plus what joint training did to the encoders and the store."""

    model: "TrainedModel"
    features: FeatureSet
    """Every cohort patient on the new embeddings (held-out patients included, for evaluation)."""
    encoder_keys: dict[str, EncoderKey | tuple | None]
    weights: dict[str, Path] = field(default_factory=dict)
    """modality -> the new weight file"""
    started_from: dict[str, Path | None] = field(default_factory=dict)
    """modality -> the weight file the encoder was loaded from (None: seeded init)"""
    learning_rates: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    """One row per joint epoch: train_loss, val_loss, val_auroc."""
    skipped: list[str] = field(default_factory=list)
    encode_report: EncodeReport | None = None
    seconds: float = 0.0


def train_joint(features: FeatureSet, manifest: pd.DataFrame, cohort: pd.DataFrame, home: Path,
                store: EmbeddingStore, encoders_dir: Path, config: TrainConfig,
                encoder_keys: Mapping[str, Sequence[str] | None], joint: JointConfig = JointConfig(), *,
                progress: Callable[[int, dict], None] | None = None,
                quarantine_dir: Path | None = None) -> JointResult:
    """Train encoders + fusion on ``features``' patients, save and re-encode, return a TrainedModel.

    ``features`` are the labelled *training* patients as loaded from the store with
    ``encoder_keys`` (they supply labels, covariates and the frozen note embeddings;
    held-out patients must not be in it). ``cohort`` is the whole cohort table, used
    to reload every patient's features with the new encoder versions.
    ``progress(epoch, row)`` is called after each epoch; ``row["stage"]`` is ``"joint"`` (encoders +
    fusion head) or ``"fusion"`` (the final model on the re-encoded embeddings). Arrays that cannot
    be read are listed in ``JointResult.skipped`` (treated as missing) and, with ``quarantine_dir``,
    written there by the re-encoding (``encode_failures_<modality>.parquet``).
    """
    config.validate()
    if config.strategy not in JOINT_STRATEGIES:
        raise ValueError(f"train_joint is for strategies {JOINT_STRATEGIES}, not {config.strategy!r}; "
                         "use models.training.train.train for 'frozen'")
    with torch_threads(config.threads):
        return _train_joint(features, manifest, cohort, Path(home), store, Path(encoders_dir), config,
                            encoder_keys, joint, progress, quarantine_dir)


def _start_encoders(strategy: str, modalities: Sequence[str], encoders_dir: Path, device: str,
                    seed: int) -> dict[str, TorchEncoder]:
    """joint: seeded init; finetune: the newest compatible pretrained weights, which must exist."""
    encoders = {}
    for m in modalities:
        enc = build_encoder(m, encoders_dir=encoders_dir if strategy == "finetune" else None, device=device,
                            seed=seed)
        if not isinstance(enc, TorchEncoder):
            raise TypeError(f"{m} encoder {enc.name} has no torch network to train")
        if strategy == "finetune" and enc.weights_path is None:
            found = latest_weights(encoders_dir, enc.name)
            raise FileNotFoundError(f"finetune needs pretrained {enc.name} weights in {encoders_dir} "
                                    + ("(the ones there are for other preprocessing)" if found else "")
                                    + ": run `clinfuse pretrain` first, or use --strategy joint")
        encoders[m] = enc
    return encoders


def _prepare_items(encoder: TorchEncoder, rows: pd.DataFrame, home: Path, wanted: set[str],
                   skipped: list[str]) -> dict[str, Item]:
    """patient_id -> prepared item for the wanted patients; unreadable arrays are reported, not fatal."""
    out: dict[str, Item] = {}
    for pid, uri in zip(rows["patient_id"], rows["array_uri"]):
        if pid not in wanted:
            continue
        try:
            out[pid] = encoder.prepare(encoder.load(home / uri))
        except Exception as exc:  # noqa: BLE001 - bad input is reported and treated as missing
            skipped.append(f"{encoder.modality} {uri}: {type(exc).__name__}: {exc}; "
                           "treated as missing in joint training")
    return out


class _JointBatcher:
    """Builds fusion inputs for rows of the training table, running the encoders on present items."""

    def __init__(self, features: FeatureSet, encoders: dict[str, TorchEncoder], items: dict[str, dict[str, Item]],
                 augment: dict[str, Callable[[Item], Item]] | None, device: torch.device) -> None:
        self.fs, self.encoders, self.items, self.augment, self.device = features, encoders, items, augment, device
        mask = features.mask.copy()
        for j, m in enumerate(features.modalities):
            if m in encoders:
                mask[:, j] = [p in items[m] for p in features.patient_ids]
        self.mask = torch.as_tensor(mask)
        # raw covariates (NaN = unknown) -> z-scores of these training patients, as models.training.train does
        scaled = CovariateScaler().fit(features.covariates).transform(features.covariates)
        self.covariates = torch.as_tensor(scaled, dtype=torch.float32)
        self.labels = torch.as_tensor(np.asarray(features.labels, np.float32))
        self.dims = {m: (encoders[m].dim if m in encoders else features.embeddings[m].shape[1])
                     for m in features.modalities}

    def embeddings(self, rows: np.ndarray, training: bool) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.fs.modalities:
            if m not in self.encoders:
                out[m] = torch.as_tensor(self.fs.embeddings[m][rows], dtype=torch.float32, device=self.device)
                continue
            enc = self.encoders[m]
            pids = [self.fs.patient_ids[r] for r in rows]
            have = [i for i, p in enumerate(pids) if p in self.items[m]]
            z = torch.zeros(len(rows), self.dims[m], device=self.device)
            if have:
                batch = [self.items[m][pids[i]] for i in have]
                if training and self.augment:
                    batch = [self.augment[m](it) for it in batch]
                enc.net.train(training)
                e = enc.embed_prepared(batch).float()
                z = z.index_copy(0, torch.as_tensor(have, device=self.device), e)
            out[m] = z
        return out

    @torch.no_grad()
    def logits(self, model: torch.nn.Module, rows: np.ndarray, batch_size: int) -> np.ndarray:
        model.eval()
        out = []
        for s in range(0, len(rows), batch_size):
            r = rows[s:s + batch_size]
            out.append(model(self.embeddings(r, False), self.mask[r].to(self.device),
                              self.covariates[r].to(self.device)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _fit_joint(batcher: _JointBatcher, fusion: torch.nn.Module, encoders: dict[str, TorchEncoder],
               tr: np.ndarray, va: np.ndarray, config: TrainConfig, joint: JointConfig, encoder_lr: float,
               progress: Callable[[int, dict], None] | None) -> list[dict]:
    """The joint loop; restores the best validation epoch (AUROC, or loss when AUROC is undefined)."""
    gen = torch.Generator().manual_seed(config.seed)
    groups = [{"params": list(fusion.parameters()), "lr": config.lr}]
    groups += [{"params": list(e.net.parameters()), "lr": encoder_lr} for e in encoders.values()]
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    dev = batcher.device
    loss_fn, val_loss_fn = bce_loss(batcher.labels[tr]), bce_loss(batcher.labels[va])
    modules = {"fusion": fusion, **{m: e.net for m, e in encoders.items()}}
    best, best_state, waited, history = float("inf"), copy.deepcopy({k: v.state_dict() for k, v in modules.items()}), 0, []
    for epoch in range(joint.epochs):
        fusion.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        total = 0.0
        for s in range(0, len(order), joint.batch_size):
            rows = order[s:s + joint.batch_size]
            mask = modality_dropout(batcher.mask[rows], config.modality_dropout, gen).to(dev)
            logits = fusion(batcher.embeddings(rows, True), mask, batcher.covariates[rows].to(dev))
            loss = loss_fn(logits, batcher.labels[rows].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        val_logits = batcher.logits(fusion, va, joint.batch_size)
        y = batcher.labels[va].numpy()
        val_loss = float(val_loss_fn(torch.as_tensor(val_logits), batcher.labels[va]))
        auc = binary_auroc(y, val_logits)
        row = {"epoch": epoch, "train_loss": total / len(tr), "val_loss": val_loss, "val_auroc": auc}
        history.append(row)
        if progress:
            progress(epoch, {**row, "stage": "joint"})
        score = val_loss if config.select_on == "loss" or np.isnan(auc) else -auc
        if score < best - 1e-4:
            best, waited = score, 0
            best_state = copy.deepcopy({k: v.state_dict() for k, v in modules.items()})
        else:
            waited += 1
            if waited >= joint.patience:
                break
    for k, module in modules.items():
        module.load_state_dict(best_state[k])
    return history


def _train_joint(features: FeatureSet, manifest: pd.DataFrame, cohort: pd.DataFrame, home: Path,
                 store: EmbeddingStore, encoders_dir: Path, config: TrainConfig,
                 encoder_keys: Mapping[str, Sequence[str] | None], joint: JointConfig,
                 progress: Callable[[int, dict], None] | None, quarantine_dir: Path | None) -> JointResult:
    t0 = time.perf_counter()
    seed_everything(config.seed)  # with the seeded augmentations and split: same inputs, same weights (CPU)
    latest = latest_items(manifest, [m for m in TRAINABLE if m in features.modalities])
    wanted = set(features.patient_ids)
    present = [m for m in TRAINABLE if m in features.modalities
               and latest.loc[latest["modality"] == m, "patient_id"].isin(wanted).any()]
    if not present:
        raise ValueError("joint training needs CT, X-ray or EEG arrays for the training patients; none found")
    encoders = _start_encoders(config.strategy, present, encoders_dir, config.device, config.seed)
    skipped: list[str] = []
    items = {m: _prepare_items(e, latest[latest["modality"] == m], home, wanted, skipped) for m, e in encoders.items()}
    encoders = {m: e for m, e in encoders.items() if items[m]}
    started_from = {m: e.weights_path for m, e in encoders.items()}
    augment = None
    if joint.augment:
        augment = {m: e.augmentation() for m, e in encoders.items()}
        for i, a in enumerate(augment.values()):
            if hasattr(a, "set_random_state"):
                a.set_random_state(seed=config.seed + i)
    dev = torch.device(config.device)
    batcher = _JointBatcher(features, encoders, items, augment, dev)
    fusion = build_fusion(config.fusion, batcher.dims, fusion_config(config, features.covariates.shape[1])).to(dev)
    encoder_lr = joint.encoder_lr or (config.lr if config.strategy == "joint" else config.lr / 10)
    tr, va = patient_split(features, config.val_fraction, config.seed)
    history = _fit_joint(batcher, fusion, encoders, tr, va, config, joint, encoder_lr, progress)
    weights = {}
    for m, enc in encoders.items():
        recalibrate_batchnorm(enc, list(items[m].values()), joint.batch_size)
        weights[m] = enc.save_weights(encoders_dir)
    report = encode_manifest(manifest, home, store, modalities=list(encoders), encoders=encoders,
                             quarantine_dir=quarantine_dir)
    for f in report.failures:  # an array already reported above is not listed twice
        if not any(line.startswith(f"{f.modality} {f.array_uri}:") for line in skipped):
            skipped.append(f"{f.modality} {f.array_uri}: {f.reason}")
    keys = {**dict(encoder_keys), **{m: report.encoder_keys[m] for m in encoders}}
    everyone = load_features(manifest, cohort, store, keys, modalities=features.modalities)
    pos = {p: i for i, p in enumerate(everyone.patient_ids)}
    missing = [p for p in features.patient_ids if p not in pos]
    if missing:
        raise ValueError(f"{len(missing)} training patients are not in the cohort table (e.g. {missing[0]})")
    train_fs = replace(everyone.subset(np.array([pos[p] for p in features.patient_ids], int)),
                       labels=features.labels)
    versions = {m: tuple(k)[1] for m, k in keys.items() if k is not None}
    model = train(train_fs, replace(config, encoders=versions), None if progress is None else
                  lambda epoch, row: progress(epoch, {**row, "stage": "fusion"}))
    seconds = time.perf_counter() - t0
    log.info("%s training: encoders %s in %.0f s", config.strategy, versions, seconds)
    return JointResult(model=model, features=everyone, encoder_keys=keys, weights=weights,
                       started_from=started_from, learning_rates={"fusion": config.lr, "encoders": encoder_lr},
                       history=history, skipped=skipped, encode_report=report, seconds=seconds)
