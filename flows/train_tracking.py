"""One MLflow training run: config, every evaluation figure, lineage, report and plots, the pyfunc, the gate.

Kept apart from the Prefect task so it can be called (and tested) without an
orchestrator; the task in ``flows.tasks`` only wraps it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from flows import registry, tracking
from flows.settings import Settings
from models.feature_set import FeatureSet


def basic_metrics(risk: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC and Brier on the held-out split (used when ``models.evaluation`` is not installed)."""
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return {"n": float(len(labels)), "brier": float(brier_score_loss(labels, risk, pos_label=1))}
    return {"n": float(len(labels)), "auroc": float(roc_auc_score(labels, risk)),
            "auprc": float(average_precision_score(labels, risk)), "brier": float(brier_score_loss(labels, risk))}


def held_out_auroc(metrics: dict[str, Any]) -> float:
    """The gate's number from an evaluation result (``auroc``, possibly nested as ``{"value": ..}``)."""
    value = metrics.get("auroc", float("nan"))
    if isinstance(value, dict):
        value = value.get("value", value.get("point", float("nan")))
    return float(value)


def encoder_versions(encode_reports: dict[str, Any]) -> pd.DataFrame:
    """One row per modality: encoder name, version and preprocessing hash (from EncodeReport.encoder_keys)."""
    rows = []
    for modality, report in encode_reports.items():
        key = getattr(report, "encoder_keys", {}).get(modality)
        if key is not None:
            name, version, prep = tuple(key)[:3]
            rows.append({"modality": modality, "encoder_name": name, "encoder_version": version,
                         "preprocessing_hash": prep})
    return pd.DataFrame(rows, columns=["modality", "encoder_name", "encoder_version", "preprocessing_hash"])


def log_imputation_choice(model_dir: Path) -> None:
    """With ``--impute auto``: the method chosen (tag) and the nested-validation comparison (table) in the run."""
    selection = json.loads((model_dir / "model.json").read_text()).get("metrics", {}).get("impute_selection")
    if selection:
        mlflow.set_tag("imputation", selection["chosen"])
        mlflow.log_table(pd.DataFrame(selection["table"]), artifact_file="imputation_selection.json")


def log_training_run(model_dir: Path, held_out: FeatureSet, *, settings: Settings, config: dict[str, Any],
                     evaluation: dict[str, Any], encoders: pd.DataFrame | None, n_train: int,
                     held_out_fraction: float, min_gain: float = 0.0) -> dict[str, Any]:
    """Log everything about one trained model in ``clinfuse-train`` and register it through the gate."""
    with tracking.stage_run("train", settings, run_name=f"{config.get('fusion')}-{config.get('impute')}") as run:
        tracking.log_config(config)
        mlflow.log_params({"n_train_patients": n_train, "n_held_out_patients": len(held_out),
                           "held_out_fraction": held_out_fraction})
        tracking.log_metrics(evaluation.get("metrics", {}), prefix="heldout.")
        tracking.log_metrics({"auroc": held_out_auroc(evaluation.get("metrics", {}))}, prefix="heldout_")
        if settings.manifest_path.exists():
            tracking.log_lineage(settings.manifest_path, encoders)
        report_dir = evaluation.get("out_dir")
        if report_dir and Path(report_dir).is_dir():
            mlflow.log_artifacts(str(report_dir), artifact_path="evaluation")
        mlflow.log_artifact(str(Path(model_dir) / "model.json"), artifact_path="bundle")
        log_imputation_choice(Path(model_dir))
        info = registry.log_pyfunc(Path(model_dir), held_out)
        decision = registry.register_with_gate(info.model_uri, None, held_out, min_gain=min_gain)
        url = tracking.run_url(settings, run)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "url": url, **asdict(decision)}
