"""The batch prediction flow: a cohort folder in, one batch in the predictions store out.

New patients need only ingest and encode: their items join the home's manifest
(content-addressed, so known items are skipped) and the champion scores them.
Encoding is pinned: the champion's recorded encoder versions are used (items the
store lacks are encoded with exactly those weights), never the newest ones that a
later ``clinfuse pretrain`` or joint run saved. Each patient is scored on their own
(raw covariates, the model's training statistics): the batch changes nothing.
The home's cohort table keeps the training patients; the batch's patients are
added with their (possibly empty) labels, so training never loses its cohort.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.flows.encode import encode_flow, encode_options, encoder_keys
from flows.flows.ingest import ingest_flow
from flows.flows.tasks import load_features_task, predict_task
from flows.prefect_env import settings_for
from flows.settings import Settings
from flows.tracking import runs as tracking
from flows.tracking.registry import CHAMPION, MODEL_NAME, require_champion


def batch_cohort(cohort_csv: Path, settings: Settings) -> pd.DataFrame:
    """The batch's cohort, pseudonymised by ingestion's own reader."""
    from ingestion.cohort import read_cohort

    return read_cohort(cohort_csv, settings.pseudonym_secret.get_secret_value()).frame


def keep_training_cohort(previous: pd.DataFrame | None, batch: pd.DataFrame, settings: Settings) -> None:
    """Write back the home cohort as previous rows plus the batch's new patients (ingest replaced it)."""
    from ingestion.cohort import write_cohort

    if previous is None:
        return
    new = batch[~batch["patient_id"].isin(previous["patient_id"])]
    write_cohort(pd.concat([previous, new], ignore_index=True), settings.cohort_path)


def champion_encoder_keys(settings: Settings) -> dict[str, Any]:
    """The encoder keys recorded in the champion's bundle; {} for a model that recorded none."""
    tracking.configure_mlflow(settings)
    require_champion()
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}").unwrap_python_model().model
    return {m: (tuple(k) if k is not None else None) for m, k in model.encoder_keys.items()}


@task(name="encode-pinned", retries=2, retry_delay_seconds=5)
def encode_pinned_task(home: str, keys: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``models.features.assemble.encode_pinned``: the store gets every item's embedding under the champion's keys."""
    from ingestion.manifest import read_manifest
    from models.stores.embeddings import EmbeddingStore
    from models.features.assemble import encode_pinned

    settings = settings_for(home)
    report = encode_pinned(read_manifest(settings.manifest_path), settings.home,
                           EmbeddingStore(settings.embeddings_dir), keys, settings.encoders_dir,
                           device=options["device"], seed=options["seed"], quarantine_dir=settings.quarantine_dir,
                           note_model_cache=options.get("note_model_cache"))
    get_run_logger().info("pinned encode: %s encoded, %s store hits", report.encoded, report.hits)
    return {m: tuple(k) if k is not None else None for m, k in report.encoder_keys.items()}


def predict_features(features_task_args: tuple, cohort: pd.DataFrame, settings: Settings, n_mc: int) -> dict:
    """Score ``cohort`` with the champion and append the batch."""
    tracking.configure_mlflow(settings)
    current = require_champion()
    features = load_features_task(*features_task_args, cohort=cohort)
    refresh = not any(settings.predictions_dir.glob("*.parquet"))
    return predict_task.with_options(refresh_cache=refresh)(
        features, str(current.version), str(current.run_id), str(settings.predictions_dir), n_mc)


@flow(name="predict", log_prints=True)
def predict_flow(source: str, cohort_csv: str | None = None, home: str | None = None, n_mc: int = 30) -> dict[str, Any]:
    """Ingest and encode ``source`` (a cohort export folder), score its patients with the champion, store them."""
    settings = settings_for(home)
    cohort_path = Path(cohort_csv) if cohort_csv else Path(source) / "cohort.csv"
    if not cohort_path.is_file():
        raise FileNotFoundError(f"no cohort table at {cohort_path}: pass --cohort (patient_id[,label,...] CSV)")
    from ingestion.cohort import load_cohort

    previous = load_cohort(settings.cohort_path) if settings.cohort_path.exists() else None
    ingest_flow(source=source, cohort_csv=str(cohort_path), home=str(settings.home))
    cohort = batch_cohort(cohort_path, settings)
    keep_training_cohort(previous, cohort, settings)
    pinned = champion_encoder_keys(settings)
    if pinned:
        keys = encode_pinned_task(str(settings.home), pinned, encode_options(settings))
    else:  # a model that recorded no encoder versions: the current encoders
        keys = encoder_keys(encode_flow(home=str(settings.home)))
    result = predict_features((str(settings.home), keys), cohort, settings, n_mc)
    publish_batch(result)
    from flows.flows.outbox import batch_outbox  # the batch's SRs and FHIR bundle, sent where configured

    return {**result, "encoder_keys": keys, "outbox": batch_outbox(result["path"], source, str(settings.home))}


def publish_batch(result: dict[str, Any]) -> None:
    create_markdown_artifact(
        key="prediction-batch", description="Batch prediction",
        markdown=f"# Batch of {result['n']} patients\n\n{MODEL_NAME} v{result['model_version']} "
                 f"(run {result['run_id']}): {result['abstained']} abstained, mean risk "
                 f"{result['mean_risk'] if result['mean_risk'] is None else round(result['mean_risk'], 3)}.\n\n"
                 f"File: `{Path(result['path']).name}`")
    get_run_logger().info("batch stored: %s", result["path"])
