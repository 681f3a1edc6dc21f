"""The batch prediction flow: a cohort folder in, one batch in the predictions store out.

A thin wrapper of the predict stage (``models.stages.predict``), which the pipeline
runs too: new patients' items join the home's manifest (content-addressed, so known
items are skipped), then the champion scores them on embeddings from its own
recorded encoder versions (items the store lacks are encoded with exactly those
weights), never the newest ones that a later ``clinfuse pretrain`` or joint run
saved. The home's cohort table keeps the training patients; the batch's patients
are added with their (possibly empty) labels, so training never loses its cohort.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.flows.evaluate import champion_model
from flows.flows.ingest import ingest_flow
from flows.flows.tasks import predict_task
from flows.prefect_env import settings_for
from flows.settings import Settings
from flows.tracking.registry import MODEL_NAME
from models.stages import PredictConfig


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


def predict_champion(settings: Settings, cohort_csv: Path | None, n_mc: int) -> dict[str, Any]:
    """The predict stage with the champion: ``cohort_csv``'s patients (None: the home's cohort), one batch stored."""
    model_dir, version, run_id = champion_model(settings)
    config = PredictConfig(
        home=settings.home, model_dir=model_dir, model_name=MODEL_NAME, model_version=version, run_id=run_id,
        cohort_csv=cohort_csv, n_mc=n_mc, seed=settings.seed, device=settings.resolved_device(),
        note_model_cache=settings.note_model_cache_dir,
        secret=settings.pseudonym_secret.get_secret_value() if cohort_csv else "")
    refresh = not any(settings.predictions_dir.glob("*.parquet"))  # a cache hit must not name a deleted batch
    return predict_task.with_options(refresh_cache=refresh)(config).as_dict()


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
    result = predict_champion(settings, cohort_path, n_mc)
    publish_batch(result)
    from flows.flows.outbox import batch_outbox  # the batch's SRs and FHIR bundle, sent where configured

    return {**result, "outbox": batch_outbox(result["path"], source, settings)}


def publish_batch(result: dict[str, Any]) -> None:
    create_markdown_artifact(
        key="prediction-batch", description="Batch prediction",
        markdown=f"# Batch of {result['n']} patients\n\n{MODEL_NAME} v{result['model_version']} "
                 f"(run {result['run_id']}): {result['abstained']} abstained, mean risk "
                 f"{result['mean_risk'] if result['mean_risk'] is None else round(result['mean_risk'], 3)}.\n\n"
                 f"File: `{Path(result['path']).name}`")
    get_run_logger().info("batch stored: %s", result["path"])
