"""The train flow: features -> fusion model -> held-out evaluation -> MLflow run -> registry gate."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np
from mlflow import MlflowClient
from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from flows import tracking
from flows.access.review_labels import LabelProvenance, merge_review_labels
from flows.access.reviews import confirmed_labels_in
from flows.encode_flow import encode_flow, encoder_keys
from flows.prefect_env import settings_for
from flows.registry import MODEL_NAME
from flows.settings import Settings
from flows.tasks import (
    evaluate_task, features_sha256, load_features_task, model_dir_for, register_task, train_task,
)
from flows.train_tracking import encoder_versions
from models.feature_set import FeatureSet

HELD_OUT_FRACTION = 0.2


def held_out_mask(patient_ids: tuple[str, ...], fraction: float, seed: int) -> np.ndarray:
    """True for held-out patients, decided per patient by a keyed hash of the pseudonym.

    Why a hash rather than a random split: a patient stays on the same side as the
    cohort grows, so today's champion and tomorrow's candidate are compared on
    patients neither was trained on.
    """
    cut = int(fraction * 10_000)
    return np.array([int(hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:8], 16) % 10_000 < cut
                     for p in patient_ids], dtype=bool)


def labelled(features: FeatureSet) -> FeatureSet:
    """Patients with a known label only (prediction-only patients have none)."""
    if features.labels is None:
        raise ValueError("the cohort has no labels: training needs a cohort table with a 'label' column")
    keep = np.isfinite(np.asarray(features.labels, dtype=float))
    out = features.subset(keep)
    # replace() keeps covariate names and encoder keys: the model records them (raw covariates, pinned encoders)
    return replace(out, labels=np.asarray(out.labels).astype(np.int64))


def split(features: FeatureSet, settings: Settings, fraction: float) -> tuple[FeatureSet, FeatureSet]:
    mask = held_out_mask(features.patient_ids, fraction, settings.seed)
    return features.subset(~mask), features.subset(mask)


def registry_is_empty(settings: Settings) -> bool:
    tracking.configure_mlflow(settings)
    try:
        return not MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")
    except Exception:  # noqa: BLE001 - no registry yet
        return True


@flow(name="train", log_prints=True)
def train_flow(home: str | None = None, fusion: str = "early", impute: str = "auto",
               epochs: int = 150, hidden: int = 64, held_out_fraction: float = HELD_OUT_FRACTION,
               min_gain: float = 0.0, encode_reports: dict[str, Any] | None = None,
               answers: str | None = None) -> dict[str, Any]:
    """Train on the labelled, not held-out patients; evaluate on the held-out; log; register through the gate."""
    from models.train import TrainConfig

    settings = settings_for(home)
    logger = get_run_logger()
    reports = encode_reports if encode_reports is not None else encode_flow(home=str(settings.home))
    features, provenance = merge_review_labels(
        load_features_task(str(settings.home), str(settings.embeddings_dir), encoder_keys(reports)),
        confirmed_labels_in(settings.access_dir))
    features = labelled(features)
    train_fs, held_out = split(features, settings, held_out_fraction)
    config = TrainConfig(fusion=fusion, impute=impute, epochs=epochs, hidden=hidden, seed=settings.seed,
                         device=settings.resolved_device()).as_dict()
    out_root = settings.home / "models"
    model_dir = train_task.with_options(refresh_cache=not model_dir_for(train_fs, config, out_root).exists())(
        train_fs, config, str(out_root))
    key = features_sha256(held_out)[:8] + "-" + model_dir.rsplit("/", 1)[-1]
    eval_dir = settings.reports_dir / key
    evaluation = evaluate_task.with_options(refresh_cache=not eval_dir.exists())(
        model_dir, key, held_out, str(eval_dir),
        {"answers": answers, "secret": settings.pseudonym_secret.get_secret_value()} if answers else {})
    run_args = {"settings": settings, "config": config, "evaluation": evaluation,
                "encoders": encoder_versions(reports), "n_train": len(train_fs),
                "held_out_fraction": held_out_fraction, "min_gain": min_gain}
    result = register_task.with_options(refresh_cache=registry_is_empty(settings))(
        model_dir, held_out, settings.tracking_uri, run_args)
    publish_training(result, evaluation)
    log_label_provenance(result["run_id"], provenance)
    logger.info("model %s v%s is %s: %s", MODEL_NAME, result["version"], result["alias"], result["reason"])
    return {**result, "model_dir": model_dir, "metrics": evaluation["metrics"]}


def log_label_provenance(run_id: str, provenance: LabelProvenance) -> None:
    """Where the labels came from (cohort table vs clinician review) as ``labels.*`` metrics of the run."""
    client = MlflowClient()
    for name, value in provenance.as_dict().items():
        client.log_metric(run_id, f"labels.{name}", float(value))


def publish_training(result: dict[str, Any], evaluation: dict[str, Any]) -> None:
    """Evaluation table, gate decision and a link to the MLflow run as Prefect artifacts."""
    rows = [{"metric": k, "value": round(v, 4)} for k, v in tracking.numeric_metrics(evaluation["metrics"]).items()]
    create_table_artifact(table=rows or [{"metric": "none", "value": 0}], key="evaluation",
                          description="Held-out evaluation of the trained model")
    create_markdown_artifact(
        key="gate-decision", description="Champion gate",
        markdown=f"# {result['model_name']} v{result['version']}: **{result['alias']}**\n\n{result['reason']}\n\n"
                 f"MLflow run: {result['url']}")
    if result["url"].startswith("http"):
        create_link_artifact(link=result["url"], link_text=f"MLflow run {result['run_id']}", key="mlflow-run")
