"""Contrastive (CLIP-style) cross-modal pretraining of the CT, X-ray and EEG encoders.

No weights are downloaded: the imaging and EEG networks start from their seeded
init (or the latest saved weights) and learn here. For a batch of patients, every
pair of modalities that both are present for at least two patients contributes a
symmetric InfoNCE loss that pulls a patient's embeddings of the two modalities
together and pushes other patients' apart; a within-modality term does the same
for two augmented views (MONAI noise/affine/time-shift, never a left-right flip).
The note encoder is frozen (packaged MiniLM or TF-IDF fitted here) and acts as an
anchor, which is how findings written in notes shape the image/signal encoders.
Only the encoders are kept; projection heads are discarded.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from monai.utils import set_determinism
from torch import nn

from ingestion.modalities import MODALITIES
from models.training.pretrain_config import PretrainConfig  # noqa: F401 - re-exported (its home before)
from models.encoders import build_encoder
from models.encoders.base import Item, TorchEncoder
from models.features.assemble import latest_items

log = logging.getLogger(__name__)


@dataclass
class PretrainReport:
    """New encoder versions and weight files, and how the loss went."""

    versions: dict[str, str] = field(default_factory=dict)
    """encoder name (e.g. ``ct-resnet3d``) -> new version"""
    weights: dict[str, Path] = field(default_factory=dict)
    """modality -> saved weight file"""
    epoch_losses: list[float] = field(default_factory=list)
    n_patients: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should match row i of ``b`` among all rows."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _head(dim: int, proj_dim: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, proj_dim))


def _prepare_all(encoder: TorchEncoder, rows: pd.DataFrame, home: Path,
                 skipped: list[str]) -> dict[str, Item]:
    """Preprocess each patient's item once (cache keyed by content hash; epochs reuse it)."""
    by_sha: dict[str, Item] = {}
    out: dict[str, Item] = {}
    for pid, sha, uri in zip(rows["patient_id"], rows["content_sha256"], rows["array_uri"]):
        try:
            if sha not in by_sha:
                by_sha[sha] = encoder.prepare(encoder.load(home / uri))
            out[pid] = by_sha[sha]
        except Exception as exc:  # noqa: BLE001 - bad input is reported, never fatal
            skipped.append(f"{encoder.modality} {uri}: {type(exc).__name__}: {exc}")
    return out


def recalibrate_batchnorm(encoder: TorchEncoder, items: Sequence[Item], batch_size: int) -> None:
    """Recompute BatchNorm running statistics over all clean items so eval mode matches training."""
    bns = [m for m in encoder.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not items:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the pass
    encoder.net.train()
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            encoder.forward(items[i:i + batch_size])
    for bn in bns:
        bn.momentum = 0.1
    encoder.net.eval()


def _prepare_data(encoders: dict, latest: pd.DataFrame, home: Path, encoders_dir: Path,
                  report: "PretrainReport") -> dict[str, dict[str, Item]]:
    """Per modality, each patient's prepared item (trainable encoders) or fixed note embedding (the anchor)."""
    data: dict[str, dict[str, Item]] = {}
    for m, enc in encoders.items():
        rows = latest[latest["modality"] == m]
        if isinstance(enc, TorchEncoder):
            data[m] = _prepare_all(enc, rows, home, report.skipped)
        elif len(rows):  # frozen note anchor: embed once
            notes = {}
            for pid, uri in zip(rows["patient_id"], rows["array_uri"]):
                try:
                    notes[pid] = enc.load(home / uri)
                except (OSError, ValueError) as exc:
                    report.skipped.append(f"note {uri}: {type(exc).__name__}: {exc}")
            if not notes:
                continue
            if not enc.is_ready:
                enc.fit([n.get("text", "") for n in notes.values()])
                report.weights[m] = enc.save_fitted(encoders_dir)
                report.versions[enc.name] = enc.version
            vecs = enc.encode_batch(list(notes.values()))
            data[m] = {pid: {"z": v} for pid, v in zip(notes, vecs)}
    return data


def _loss_terms(project: Callable[[str, list[str]], torch.Tensor], present: dict[str, list[str]],
                modalities: list[str], trainable: list[str], config: PretrainConfig) -> list[torch.Tensor]:
    """InfoNCE between every pair of modalities of a batch, plus each trainable one against a second view."""
    views = {m: dict(zip(present[m], project(m, present[m]))) for m in modalities if len(present[m]) >= 2}
    terms = []
    for a, b in combinations(views, 2):
        both = [p for p in present[a] if p in views[b]]
        if len(both) >= 2:
            terms.append(info_nce(torch.stack([views[a][p] for p in both]),
                                  torch.stack([views[b][p] for p in both]), config.temperature))
    for m in trainable:
        if m in views and config.intra_weight > 0:
            second = project(m, present[m])
            first = torch.stack([views[m][p] for p in present[m]])
            terms.append(config.intra_weight * info_nce(first, second, config.temperature))
    return terms


def pretrain(manifest: pd.DataFrame, home: Path, encoders_dir: Path, *,
             modalities: Sequence[str] = MODALITIES, config: PretrainConfig = PretrainConfig(),
             device: str = "cpu", note_encoder: Literal["minilm", "tfidf"] = "minilm",
             progress: Callable[[int, int, float], None] | None = None) -> PretrainReport:
    """Train the CT/X-ray/EEG encoders contrastively; save ``<name>-<version>.pt``; return versions.

    ``progress(epoch, epochs, mean_loss)`` is called after each epoch.
    """
    t0, home, encoders_dir = time.perf_counter(), Path(home), Path(encoders_dir)
    encoders_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(seed=config.seed)
    rng = np.random.default_rng(config.seed)
    report = PretrainReport()
    latest = latest_items(manifest, modalities)
    encoders = {m: build_encoder(m, encoders_dir=encoders_dir, device=device, seed=config.seed,
                                 note_encoder=note_encoder) for m in modalities}
    dev = next((e.device for e in encoders.values() if isinstance(e, TorchEncoder)), torch.device("cpu"))
    data = _prepare_data(encoders, latest, home, encoders_dir, report)
    trainable = [m for m in data if isinstance(encoders[m], TorchEncoder) and data[m]]
    pids = sorted(set().union(*[set(d) for d in data.values()])) if data else []
    report.n_patients = len(pids)
    if not trainable or len(pids) < 2:
        log.warning("nothing to pretrain: %d patients, trainable modalities %s", len(pids), trainable)
        report.seconds = time.perf_counter() - t0
        return report
    def head_dim(m: str) -> int:
        enc = encoders[m]
        return enc.net_dim if m in trainable and not config.fixed_features_in_loss else enc.dim

    heads = nn.ModuleDict({m: _head(head_dim(m), config.proj_dim) for m in data}).to(dev)
    augment = {m: encoders[m].augmentation() for m in trainable}
    for i, m in enumerate(trainable):
        if hasattr(augment[m], "set_random_state"):
            augment[m].set_random_state(seed=config.seed + i)
    lr_scale = dict(config.lr_scale)
    groups = [{"params": list(heads.parameters()), "lr": config.lr}]
    groups += [{"params": list(encoders[m].net.parameters()), "lr": config.lr * lr_scale.get(m, 1.0)}
               for m in trainable]
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def project(m: str, batch: list[str]) -> torch.Tensor:
        if m not in trainable:
            z = torch.from_numpy(np.stack([data[m][p]["z"] for p in batch])).to(dev)
            return heads[m](z)
        views = [augment[m](data[m][p]) for p in batch]
        enc = encoders[m]
        return heads[m](enc.embed_prepared(views) if config.fixed_features_in_loss else enc.forward(views).float())

    for epoch in range(config.epochs):
        for m in trainable:
            encoders[m].net.train()
        order, losses = rng.permutation(pids), []
        for start in range(0, len(order), config.batch_size):
            batch = list(order[start:start + config.batch_size])
            present = {m: [p for p in batch if p in data[m]] for m in data}
            amp = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
            with amp:
                terms = _loss_terms(project, present, list(data), trainable, config)
            if not terms:
                continue
            loss = torch.stack(terms).mean()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
        report.epoch_losses.append(float(np.mean(losses)) if losses else float("nan"))
        if progress:
            progress(epoch + 1, config.epochs, report.epoch_losses[-1])
    for m in trainable:
        enc = encoders[m]
        recalibrate_batchnorm(enc, list(data[m].values()), config.batch_size)
        report.weights[m] = enc.save_weights(encoders_dir)
        report.versions[enc.name] = enc.version
    report.seconds = time.perf_counter() - t0
    return report
