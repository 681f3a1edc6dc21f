"""One training loop for every fusion kind and imputation method, on frozen embeddings.

``train(features, config)`` splits patients (stratified, patient-level), fits
the imputer on the training split only, trains the fusion model with modality
dropout, class-balanced loss and early stopping on the validation split, fits
temperature scaling on the validation split, and returns a
:class:`~models.trained_model.TrainedModel`.

``strategy="frozen"`` (embeddings computed once by the encoders, fusion
trained on top) is this loop alone; ``"joint"`` and ``"finetune"`` train the
encoders too and live in :func:`models.joint_training.train_joint`, which ends
by calling ``train`` on the re-encoded embeddings (``config.encoders`` set).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit

from models.calibration import TemperatureScaler
from models.feature_set import FeatureSet
from models.fusion import FUSIONS, build_fusion, canonical_fusion
from models.fusion.inputs import FusionInputs, predict_logits, to_inputs, torch_threads
from models.imputation import IMPUTERS, build_imputer

if TYPE_CHECKING:
    from models.trained_model import TrainedModel

STRATEGIES = ("frozen", "joint", "finetune")


@dataclass
class TrainConfig:
    """Everything that defines a training run; logged to MLflow as is (``asdict``)."""

    fusion: str = "early"
    impute: str = "cross_profile"
    pool: str = "concat"
    hidden: int = 64
    layers: int = 1
    epochs: int = 150
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 64
    modality_dropout: float = 0.2
    patience: int = 30
    select_on: str = "auroc"  # early stopping / best epoch on validation "auroc" or "loss"
    seed: int = 7
    val_fraction: float = 0.2
    strategy: str = "frozen"
    dropout: float = 0.1
    k_donors: int = 10
    abstain_share: float = 0.5
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads while training/scoring; 0 = torch's default
    encoders: dict = field(default_factory=dict)  # modality -> encoder version the embeddings came from (joint/finetune)

    def validate(self) -> None:
        self.fusion = canonical_fusion(self.fusion)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r} unknown; choose one of {sorted(FUSIONS)}")
        if self.impute not in IMPUTERS:
            raise ValueError(f"impute {self.impute!r} unknown; choose one of {sorted(IMPUTERS)}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r} is not implemented; choose one of {STRATEGIES}")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")
        if self.select_on not in ("auroc", "loss"):
            raise ValueError("select_on must be 'auroc' or 'loss'")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError("modality_dropout must be in [0, 1)")

    def as_dict(self) -> dict:
        return asdict(self)


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
    """Hide each available modality with probability ``p``, keeping at least one per patient."""
    if p <= 0:
        return mask
    drop = torch.rand(mask.shape, generator=generator, device=mask.device) < p
    kept = mask & ~drop
    emptied = ~kept.any(-1) & mask.any(-1)
    return torch.where(emptied[:, None], mask, kept)


def _loss_fn(labels: torch.Tensor) -> torch.nn.BCEWithLogitsLoss:
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
    loss_fn = _loss_fn(train_in.labels)
    val_loss_fn = _loss_fn(val_in.labels)
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
          progress: Callable[[int, dict], None] | None = None) -> "TrainedModel":
    """Split, impute, train, calibrate: the whole recipe behind ``clinfuse train``."""
    from models.trained_model import TrainedModel

    config.validate()
    if config.strategy != "frozen" and not config.encoders:
        raise ValueError(f"strategy {config.strategy!r} is not implemented by train() on stored embeddings: it "
                         "trains the encoders from the arrays; call models.joint_training.train_joint")
    with torch_threads(config.threads):
        return _train(features, config, progress)


def _train(features: FeatureSet, config: TrainConfig, progress: Callable[[int, dict], None] | None) -> "TrainedModel":
    from models.trained_model import TrainedModel

    seed_everything(config.seed)
    tr_idx, va_idx = patient_split(features, config.val_fraction, config.seed)
    train_fs, val_fs = features.subset(tr_idx), features.subset(va_idx)
    params = {"k": config.k_donors} if config.impute == "cross_profile" else {}
    imputer = build_imputer(config.impute, **params).fit(train_fs)
    train_in = to_inputs(imputer.transform(train_fs), config.device)
    val_in = to_inputs(imputer.transform(val_fs), config.device)
    model = build_fusion(config.fusion, features.dims(), _fusion_config(config, features)).to(config.device)
    history = fit_network(model, train_in, val_in, config, progress)
    val_logits = predict_logits(model, val_in)
    calibrator = TemperatureScaler().fit(val_logits, val_fs.labels)
    return TrainedModel(config=config, network=model, imputer=imputer, calibrator=calibrator,
                        modalities=tuple(features.modalities), n_covariates=features.covariates.shape[1],
                        history=history, val_patient_ids=tuple(val_fs.patient_ids))


def _fusion_config(config: TrainConfig, features: FeatureSet):
    from models.fusion import FusionConfig

    return FusionConfig(hidden=config.hidden, layers=config.layers, pool=config.pool, dropout=config.dropout,
                        n_covariates=features.covariates.shape[1])
