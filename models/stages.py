"""The model-side stages as library calls: one function per stage, a frozen config in, a frozen result out.

``encode``, ``pretrain``, ``train`` (every strategy), ``evaluate`` and ``predict`` (in :mod:`models.predict_stage`)
are what the Prefect tasks in ``flows/flows/tasks.py`` wrap, and so what the CLI, the flows,
the dashboard (through a deployment or a child ``clinfuse`` process) and the
benchmarks run; nothing else calls the encoders, the training loop or the
evaluation for a home. Ingestion's stage is :func:`ingestion.driver.ingest.ingest`.

Every config names its home as a :class:`~ingestion.home_layout.HomeLayout`
root and carries everything that decides the result (so a flow can use it as a
cache key); a ``progress`` callback is the only other argument, because it
changes nothing but what a person sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingestion.home_layout import HomeLayout
from ingestion.modalities import MODALITIES
from models.defaults import JOINT_EPOCHS, N_BOOT
from models.evaluation.answers import read_answers
from models.features.feature_set import FeatureSet
from models.features.review_labels import append_agreement
from models.features.stage_inputs import EncoderKeys, features_sha256
from models.held_out import HELD_OUT_FRACTION
from models.predict_stage import PredictConfig, PredictResult, predict  # noqa: F401 - the predict stage
from models.study_stage import StudyConfig, StudyOutcome, study  # noqa: F401 - the comparative-study stage
from models.study_definition import Study, fit_ids_sha256, study_for_home, write_fitted_on
from models.study_inputs import define_run_study, held_out_set, stage_features  # noqa: F401 - the stages' API
from models.training.config import TrainConfig
from models.training.pretrain_config import PretrainConfig

EpochProgress = Callable[[int, dict], None]
"""``progress(epoch, history_row)`` after each training epoch (``row["stage"]`` is "joint" or "fusion")."""


# -- encode ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodeConfig:
    """Which modalities of a home's manifest to embed, on what, with which encoders."""

    home: Path
    modalities: tuple[str, ...] = MODALITIES
    device: str = "cpu"
    batch_size: int = 0
    """Items per encoder batch; 0 picks one for the device's memory."""
    seed: int = 7
    note_encoder: str = "minilm"
    only: tuple[str, ...] | None = None
    """Content hashes of one fan-out chunk to encode (None: every usable item; ``()``: only build and fit
    the encoders, which the flow does once before its chunks run in parallel)."""
    note_model_cache: Path | None = None
    """Machine-level folder of the int8 MiniLM derived from the packaged weights (None: the home's encoders)."""
    held_out_fraction: float = HELD_OUT_FRACTION
    """with ``seed``, the study split: an encoder fitted here (TF-IDF) sees the training patients only"""


@dataclass(frozen=True)
class EncodeResult:
    """Per modality: the encoder key the embeddings were written under, and the counts."""

    encoder_keys: Mapping[str, tuple[str, str, str] | None]
    dims: Mapping[str, int]
    encoded: Mapping[str, int]
    hits: Mapping[str, int]
    seconds: Mapping[str, float]
    failures: tuple[Any, ...] = ()

    def failed(self, modality: str) -> int:
        return sum(f.modality == modality for f in self.failures)


def encode(config: EncodeConfig, progress: Callable[[str, int, int], None] | None = None) -> EncodeResult:
    """Embed every usable manifest item the store lacks (store hits are skipped); raise without a manifest."""
    from ingestion.manifest import read_manifest
    from models.stores.embeddings import EmbeddingStore
    from models.features.assemble import encode_manifest

    layout = HomeLayout.at(config.home)
    manifest = read_manifest(layout.manifest_path)
    if manifest.empty:
        raise FileNotFoundError(f"no manifest at {layout.manifest_path}: run `clinfuse ingest` first")
    split = study_for_home(config.home, held_out_fraction=config.held_out_fraction, seed=config.seed)
    report = encode_manifest(manifest, layout.root, EmbeddingStore(layout.embeddings_dir), config.modalities,
                             device=config.device, batch_size=config.batch_size, progress=progress,
                             encoders_dir=layout.encoders_dir, seed=config.seed, note_encoder=config.note_encoder,
                             quarantine_dir=layout.quarantine_dir if config.only is None else None,
                             only=config.only, note_model_cache=config.note_model_cache,
                             fit_patients=split.fit_ids if split is not None else None)
    keys = {m: (tuple(k) if k is not None else None) for m, k in report.encoder_keys.items()}
    return EncodeResult(keys, dict(report.dims), dict(report.encoded), dict(report.hits), dict(report.seconds),
                        tuple(report.failures))


# -- pretrain -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainStageConfig:
    """Contrastive pretraining of a home's CT/X-ray/EEG encoders."""

    home: Path
    pretrain: PretrainConfig = PretrainConfig()
    device: str = "cpu"
    note_encoder: str = "minilm"
    held_out_fraction: float = HELD_OUT_FRACTION
    """with ``pretrain.seed``, the study split: only its training patients are pretrained on"""


@dataclass(frozen=True)
class PretrainResult:
    versions: Mapping[str, str]
    """encoder name -> new version"""
    weights: Mapping[str, str]
    """modality -> saved weight file"""
    n_patients: int
    epoch_losses: tuple[float, ...]
    skipped: tuple[str, ...]
    seconds: float
    fit_patients_sha256: str = ""
    """hash of the patients pretrained on (also beside each weight file, ``*.fitted_on.json``)"""


def pretrain(config: PretrainStageConfig, progress: Callable[[int, int, float], None] | None = None
             ) -> PretrainResult:
    """Train the encoders on the study's training patients; save new weight versions under the home's encoders.

    Held-out and prediction-only patients are left out of the contrastive loss and of the
    BatchNorm recalibration: pretraining is a fitted step like any other.
    """
    from ingestion.manifest import read_manifest
    from models.training.pretrain import pretrain as run_pretrain

    layout = HomeLayout.at(config.home)
    manifest = read_manifest(layout.manifest_path)
    if manifest.empty:
        raise FileNotFoundError(f"no manifest at {layout.manifest_path}: run `clinfuse ingest` first")
    split = study_for_home(config.home, held_out_fraction=config.held_out_fraction, seed=config.pretrain.seed)
    if split is None:
        raise FileNotFoundError(f"no cohort table at {layout.cohort_path}: pretraining needs the study split "
                                "(ingest with --cohort) so that held-out patients stay out of it")
    mine = manifest[manifest["patient_id"].astype(str).isin(set(split.fit_ids))]
    report = run_pretrain(mine, layout.root, layout.encoders_dir, config=config.pretrain, device=config.device,
                          note_encoder=config.note_encoder, progress=progress)  # type: ignore[arg-type]
    fitted = sorted(set(mine["patient_id"].astype(str)))
    for path in report.weights.values():
        write_fitted_on(Path(path), fitted, "contrastive pretraining and BatchNorm statistics")
    return PretrainResult(dict(report.versions), {m: str(p) for m, p in report.weights.items()},
                          report.n_patients, tuple(report.epoch_losses), tuple(report.skipped), report.seconds,
                          fit_ids_sha256(fitted))


# -- train ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainStageConfig:
    """A training run on a home's labelled, not held-out patients (or on a synthetic cohort)."""

    home: Path
    encoder_keys: EncoderKeys = ()
    """``((modality, (encoder, version, preprocessing) | None), ...)``: which stored embeddings to train on."""
    fusion: str = "early"
    impute: str = TrainConfig.impute
    epochs: int = TrainConfig.epochs
    hidden: int = TrainConfig.hidden
    layers: int = TrainConfig.layers
    pool: str = TrainConfig.pool
    lr: float = TrainConfig.lr
    modality_dropout: float = TrainConfig.modality_dropout
    strategy: str = "frozen"
    joint_epochs: int = JOINT_EPOCHS
    encoder_lr: float = 0.0
    """joint/finetune encoder learning rate; 0 = ``lr`` (joint) or ``lr``/10 (finetune)."""
    held_out_fraction: float = HELD_OUT_FRACTION
    synthetic: int = 0
    """> 0: train on a synthetic cohort of that many patients instead of the home's embeddings."""
    seed: int = 7
    device: str = "cpu"
    review_labels: tuple[tuple[str, int], ...] = ()
    """``((pseudonym, 0|1), ...)``: clinician-confirmed outcomes overriding cohort labels (models.features.review_labels)."""

    def train_config(self) -> TrainConfig:
        """The training loop's config (validated: unknown fusion/imputation/strategy raise ValueError)."""
        config = TrainConfig(fusion=self.fusion, impute=self.impute, epochs=self.epochs, hidden=self.hidden,
                             layers=self.layers, pool=self.pool, lr=self.lr, modality_dropout=self.modality_dropout,
                             seed=self.seed, device=self.device, strategy=self.strategy)
        config.validate()
        if self.strategy != "frozen" and self.synthetic:
            raise ValueError(f"strategy {self.strategy} trains the encoders from ingested arrays; "
                             "a synthetic cohort has none")
        return config


@dataclass(frozen=True)
class TrainResult:
    """Where the model is, what it saw, and how its training went."""

    model_id: str
    model_dir: Path
    n_train: int
    n_complete: int
    """training patients with every modality"""
    best_epoch: int
    best_val_auroc: float
    temperature: float
    encoder_keys: EncoderKeys
    """the embeddings the model was trained on (joint/finetune: the new encoder versions)"""
    notes: tuple[str, ...] = field(default=())
    """what a person should know: unreadable arrays skipped, which weights an encoder started from"""
    reused: bool = False
    """True when a model with this id was already saved (same features and config): nothing was trained"""
    study: Study | None = None
    """the run's split (training / held-out / excluded patients, label provenance); evaluate and the gate read it"""


def model_id_for(features: FeatureSet, config: TrainStageConfig) -> str:
    """The model's name: a hash of the training patients' features and everything in the config that matters."""
    relevant = {k: v for k, v in asdict(config).items() if k not in ("home", "device")}
    blob = json.dumps([features_sha256(features), relevant], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train(config: TrainStageConfig, progress: EpochProgress | None = None) -> TrainResult:
    """Fit one model on the training patients and save it as ``<models_dir>/<model_id>``.

    Re-running with the same features and config finds the saved model and does no work.
    """
    fit_config = config.train_config()
    layout = HomeLayout.at(config.home).ensure()
    features = stage_features(config.home, config.encoder_keys, config.synthetic, config.seed, config.review_labels)
    split = define_run_study(config.home, features, config.synthetic, config.seed, config.held_out_fraction,
                             config.review_labels)
    train_fs = split.training_features(features)
    model_id = model_id_for(train_fs, config)
    out = layout.models_dir / model_id
    if (out / "model.json").exists():
        from models.training.trained_model import TrainedModel

        return _result(model_id, out, train_fs, TrainedModel.load(out), config.encoder_keys, (), reused=True,
                       split=split)
    notes: tuple[str, ...] = ()
    keys = config.encoder_keys
    if config.strategy == "frozen":
        from models.training.train import train as fit

        model = fit(train_fs, fit_config, progress=progress)
    else:
        model, keys, notes = _train_with_encoders(layout, train_fs, fit_config, config, progress)
    _save_atomically(model, out, train_fs.patient_ids)
    return _result(model_id, out, train_fs, model, keys, notes, split=split)


def _train_with_encoders(layout: HomeLayout, train_fs: FeatureSet, fit_config: TrainConfig,
                         config: TrainStageConfig, progress: EpochProgress | None):
    """joint/finetune: encoders + fusion from the home's arrays; (model, new encoder keys, notes)."""
    from ingestion.cohort import load_cohort
    from ingestion.manifest import read_manifest
    from models.stores.embeddings import EmbeddingStore
    from models.training.joint import JointConfig, train_joint

    result = train_joint(train_fs, read_manifest(layout.manifest_path), load_cohort(layout.cohort_path),
                         layout.root, EmbeddingStore(layout.embeddings_dir), layout.encoders_dir, fit_config,
                         dict(config.encoder_keys),
                         JointConfig(epochs=config.joint_epochs, encoder_lr=config.encoder_lr or None),
                         progress=progress, quarantine_dir=layout.quarantine_dir)
    notes = tuple(f"skipped {line}" for line in result.skipped) + tuple(
        f"{m}: started from {result.started_from.get(m) or 'seeded init'}; new weights {p.name}"
        for m, p in result.weights.items())
    keys = tuple((m, tuple(k) if k is not None else None) for m, k in result.encoder_keys.items())
    return result.model, keys, notes


def _save_atomically(model: Any, out: Path, fitted_on: tuple[str, ...]) -> None:
    """Write the model folder beside its final place, then rename: a crash never leaves half a model."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    write_fitted_on(tmp, fitted_on, "covariate scaler, imputer, network, early stopping and calibrator")
    try:
        os.replace(tmp, out)
    except OSError:  # another run saved the same model id first: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)


def _result(model_id: str, out: Path, train_fs: FeatureSet, model: Any, keys: EncoderKeys,
            notes: tuple[str, ...], reused: bool = False, split: Study | None = None) -> TrainResult:
    history = model.history or [{"epoch": 0, "val_auroc": float("nan"), "val_loss": float("nan")}]
    if model.config.select_on == "auroc":
        best = max(history, key=lambda r: r["val_auroc"])
    else:
        best = min(history, key=lambda r: r["val_loss"])
    return TrainResult(model_id, out, len(train_fs), int(np.sum(train_fs.mask.all(1))), int(best["epoch"]),
                       float(best["val_auroc"]), float(model.calibrator.temperature_), keys, notes, reused, split)


# -- evaluate -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluateConfig:
    """Score a saved model on the home's held-out patients (the same split training kept out)."""

    home: Path
    model_dir: Path
    encoder_keys: EncoderKeys = ()
    held_out_fraction: float = HELD_OUT_FRACTION
    synthetic: int = 0
    answers: Path | None = None
    """a phantom's answers table (evaluation only): model AUROC against the Bayes-optimal oracle"""
    n_boot: int = N_BOOT
    seed: int = 7
    device: str = "cpu"
    secret: str = field(default="", repr=False)
    """pseudonymises the answers table's original ids"""
    review_labels: tuple[tuple[str, int], ...] = ()
    """confirmed outcomes: never a held-out label; the report compares them with the model apart"""


@dataclass(frozen=True)
class EvaluationResult:
    """Held-out metrics (flat numbers, bootstrap 95 % bounds as ``*_low``/``*_high``) and the report."""

    metrics: Mapping[str, float]
    out_dir: Path
    report: Path
    n_held_out: int


def evaluate(config: EvaluateConfig) -> EvaluationResult:
    """Write ``report.md`` with plots under ``<reports_dir>/<held-out hash>-<model id>``; return the metrics."""
    from models.evaluation.metrics import evaluate_model
    from models.evaluation.model_card import write_stage_card
    from models.training.trained_model import TrainedModel

    layout = HomeLayout.at(config.home).ensure()
    features = stage_features(config.home, config.encoder_keys, config.synthetic, config.seed, config.review_labels)
    held_out = define_run_study(config.home, features, config.synthetic, config.seed, config.held_out_fraction,
                                config.review_labels).held_out_features(features)
    if not len(held_out):
        raise ValueError(f"no held-out patients at fraction {config.held_out_fraction}: the cohort is too small")
    answers = None
    if config.answers is not None:
        answers = read_answers(config.answers, config.secret)
    elif config.synthetic:
        from models.simulation.phantom_features import synthetic_features  # the phantom only when asked for

        answers = synthetic_features(config.synthetic, config.seed)[1]
    out = layout.reports_dir / f"{features_sha256(held_out)[:8]}-{Path(config.model_dir).name}"
    model = TrainedModel.load(config.model_dir, device=config.device)
    result = evaluate_model(model, held_out, out, answers=answers, n_boot=config.n_boot, seed=config.seed,
                            confirmed=dict(config.review_labels))  # agreement beside the cohort-label metrics
    if config.review_labels:  # confirmed outcomes: agreement apart from the metrics, never a held-out label
        append_agreement(Path(result["report"]), result["metrics"])
    write_stage_card(config, model, features, held_out, answers, result)  # model_card.md/json beside the report
    return EvaluationResult(dict(result["metrics"]), Path(result["out_dir"]), Path(result["report"]),
                            len(held_out))
