"""One MLflow training run: config, every evaluation figure, lineage, report and plots, the pyfunc, the gate.

Kept apart from the Prefect task so it can be called (and tested) without an
orchestrator; the task in ``flows.flows.tasks`` only wraps it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from flows.settings import Settings
from flows.tracking import registry, runs as tracking
from flows.tracking.registration import register_once
from flows.tracking.model_card_log import log_model_card
from models.features.feature_set import FeatureSet
from models.stages import EvaluationResult


def encoder_versions(encoder_keys: Mapping[str, tuple[str, str, str] | None]) -> pd.DataFrame:
    """One row per modality: encoder name, version and preprocessing hash (from a stage's encoder keys)."""
    rows = [{"modality": m, "encoder_name": k[0], "encoder_version": k[1], "preprocessing_hash": k[2]}
            for m, k in encoder_keys.items() if k is not None]
    return pd.DataFrame(rows, columns=["modality", "encoder_name", "encoder_version", "preprocessing_hash"])


def log_imputation_choice(model_dir: Path) -> None:
    """With ``--impute auto``: the method chosen (tag) and the nested-validation comparison (table) in the run."""
    selection = json.loads((model_dir / "model.json").read_text()).get("metrics", {}).get("impute_selection")
    if selection:
        mlflow.set_tag("imputation", selection["chosen"])
        mlflow.log_table(pd.DataFrame(selection["table"]), artifact_file="imputation_selection.json")


def log_training_run(model_dir: Path, held_out: FeatureSet, *, settings: Settings, config: dict[str, Any],
                     evaluation: EvaluationResult, encoders: Mapping[str, tuple[str, str, str] | None], n_train: int,
                     held_out_fraction: float, min_gain: float = 0.0,
                     features_for: Callable[[dict], FeatureSet] | None = None) -> dict[str, Any]:
    """Log everything about one trained model in ``clinfuse-train`` and register it through the gate.

    ``features_for(encoder_keys)`` (the train flow passes :class:`models.study_inputs.HeldOutPatients`) gives
    the same held-out patients with other encoders' embeddings, so the gate rescores the champion on its own
    encoder versions; without it a champion trained on other versions is kept, never scored on these.
    """
    with tracking.stage_run("train", settings, run_name=f"{config.get('fusion')}-{config.get('impute')}") as run:
        tracking.log_config(config)
        mlflow.log_params({"n_train_patients": n_train, "n_held_out_patients": len(held_out),
                           "held_out_fraction": held_out_fraction})
        tracking.log_metrics(evaluation.metrics, prefix="heldout.")
        tracking.log_metrics({"auroc": evaluation.metrics["auroc"]}, prefix="heldout_")
        if settings.manifest_path.exists():
            tracking.log_lineage(settings.manifest_path, encoder_versions(encoders))
        mlflow.log_artifacts(str(evaluation.out_dir), artifact_path="evaluation")
        mlflow.log_artifact(str(Path(model_dir) / "model.json"), artifact_path="bundle")
        log_imputation_choice(Path(model_dir))
        info = registry.log_pyfunc(Path(model_dir), held_out)
        decision = register_once(info.model_uri, held_out, model_key=Path(model_dir).name, min_gain=min_gain,
                                 features_for=features_for)
        log_model_card(evaluation.out_dir, decision.looks)
        url = tracking.run_url(settings, run)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "url": url, **asdict(decision)}
