"""What defines a training run (``TrainConfig``), kept apart so the saved model can read it back.

``models.training.train`` (the loop) and ``models.training.trained_model`` (the saved model) both
import from here, so neither imports the other at module load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from models.defaults import EPOCHS, HIDDEN, LAYERS, LR, MODALITY_DROPOUT, POOL
from models.fusion import FUSIONS, FusionConfig, canonical_fusion
from models.imputation.registry import IMPUTERS

STRATEGIES = ("frozen", "joint", "finetune")


@dataclass
class TrainConfig:
    """Everything that defines a training run; logged to MLflow as is (``asdict``)."""

    fusion: str = "early"
    impute: str = "cross_profile"
    pool: str = POOL
    hidden: int = HIDDEN
    layers: int = LAYERS
    epochs: int = EPOCHS
    lr: float = LR
    weight_decay: float = 1e-3
    batch_size: int = 64
    modality_dropout: float = MODALITY_DROPOUT
    patience: int = 30
    select_on: str = "auroc"  # early stopping / best epoch on validation "auroc" or "loss"
    seed: int = 7
    val_fraction: float = 0.2
    strategy: str = "frozen"
    dropout: float = 0.1
    k_donors: int = 10
    class_weighted: bool = False  # pos_weight in the loss: shifts every logit by a constant (kept for comparison)
    # calibration candidate besides Venn-Abers and none ("platt": temperature + bias; "temperature": scale
    # only); kept only when it beats none on cross-fitted ECE beyond bootstrap noise
    # (models.training.calibration.choose_calibrator)
    calibration: str = "platt"
    abstain_share: float = 0.5
    # largest share of (out-of-fold training) patients the fitted abstain rules may flag together; the safety
    # rules (no modality, empty conformal set) apply regardless (models.training.abstain_policy)
    abstain_budget: float = 0.1
    threshold: float = 0.5  # risk at which the predicted class turns positive
    # nominal coverage of the conformal class set ("90 % nominal"), reported beside the class; abstention is
    # driven by the risk range straddling the threshold (models.training.uncertainty), not by a two-class set
    interval_level: float = 0.9
    cv_folds: int = 5  # cross-fitting folds over the training patients (calibrator, conformal sets, small cohorts)
    n_calibrators: int = 5  # legacy knob: 0 turns cross-fitting off (inner fits of a selection; cv_folds = 0)
    ensemble: int = 0  # extra fusion networks on bootstrap resamples of the training patients (widen the range)
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads while training/scoring; 0 = torch's default
    encoders: dict = field(default_factory=dict)  # modality -> encoder version the embeddings came from (joint/finetune)

    def validate(self) -> None:
        self.fusion = canonical_fusion(self.fusion)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r} unknown; choose one of {sorted(FUSIONS)}")
        if self.impute != "auto" and self.impute not in IMPUTERS:
            raise ValueError(f"impute {self.impute!r} unknown; choose auto or one of {sorted(IMPUTERS)}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r} is not implemented; choose one of {STRATEGIES}")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")
        if self.select_on not in ("auroc", "loss"):
            raise ValueError("select_on must be 'auroc' or 'loss'")
        if self.calibration not in ("platt", "temperature"):
            raise ValueError("calibration must be 'platt' or 'temperature'")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ValueError("cv_folds must be 0 (no cross-fitting) or at least 2")
        if not 0 < self.interval_level < 1:
            raise ValueError("interval_level must be in (0, 1)")
        if not 0 <= self.abstain_budget <= 1:
            raise ValueError("abstain_budget must be in [0, 1]")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError("modality_dropout must be in [0, 1)")

    def as_dict(self) -> dict:
        return asdict(self)


def fusion_config(config: TrainConfig, n_covariates: int) -> FusionConfig:
    """The fusion network's hyper-parameters from a training config."""
    return FusionConfig(hidden=config.hidden, layers=config.layers, pool=config.pool, dropout=config.dropout,
                        n_covariates=n_covariates)
