"""The comparative study as a stage: every fusion kind, unimodal baselines and sweeps on the run's own split.

Kept beside :mod:`models.stages` (which re-exports it) so each stage module stays small; it reads the
study definition the other stages read, never a split of its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingestion.home_layout import HomeLayout
from models.defaults import N_BOOT
from models.evaluation.answers import read_answers
from models.features.stage_inputs import EncoderKeys, features_sha256
from models.held_out import HELD_OUT_FRACTION
from models.study_inputs import define_run_study, stage_features
from models.training.config import TrainConfig


@dataclass(frozen=True)
class StudyConfig:
    """The comparative study on a home's labelled patients: every fusion kind, unimodal baselines, sweeps."""

    home: Path
    encoder_keys: EncoderKeys = ()
    synthetic: int = 0
    answers: Path | None = None
    epochs: int = TrainConfig.epochs
    n_boot: int = N_BOOT
    seed: int = 7
    device: str = "cpu"
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class StudyOutcome:
    report: Path
    fusion_table: Any
    """one row per fusion kind: AUROC with its interval, AUPRC, Brier, ECE (a DataFrame)"""
    n_patients: int


def study(config: StudyConfig, progress: Callable[[str], None] | None = None) -> StudyOutcome:
    """Run ``models.evaluation.study`` and write its report under ``<reports_dir>/study-<hash>``."""
    from dataclasses import replace

    from models.evaluation.study import StudyConfig as Study
    from models.evaluation.study import run_study, write_study_report
    from models.simulation.phantom_features import synthetic_features

    features = stage_features(config.home, config.encoder_keys, config.synthetic, config.seed)
    answers = read_answers(config.answers, config.secret) if config.answers is not None else (
        synthetic_features(config.synthetic, config.seed)[1] if config.synthetic else None)
    plan = Study(n_boot=config.n_boot, seed=config.seed)
    plan.train = replace(plan.train, epochs=config.epochs, seed=config.seed, device=config.device)
    split = define_run_study(config.home, features, config.synthetic, config.seed, HELD_OUT_FRACTION)
    result = run_study(features, answers, plan, progress=progress, study=split)  # the run's study, not a new split
    key = {k: v for k, v in asdict(config).items() if k != "secret"}
    name = hashlib.sha256(json.dumps([features_sha256(features), key], default=str).encode()).hexdigest()
    out = HomeLayout.at(config.home).ensure().reports_dir / f"study-{name[:12]}"
    report = write_study_report(result, out, title=f"clinfuse study ({len(features)} patients)")
    return StudyOutcome(Path(report), result.fusion_table, len(features))
