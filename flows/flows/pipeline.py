"""The whole pipeline in order: ingest -> encode -> train (+ gate) -> evaluate champion -> predict cohort."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger

from flows.flows.encode import encode_flow
from flows.flows.evaluate import evaluate_flow
from flows.flows.ingest import ingest_flow
from flows.flows.predict import predict_champion
from flows.flows.train import TrainFlowResult, train_flow
from flows.names import CHAMPION
from flows.prefect_env import settings_for, task_runner
from models.features.stage_inputs import as_encoder_keys
from models.stages import EvaluationResult
from models.training.train import TrainConfig


@dataclass(frozen=True)
class PipelineResult:
    """What each stage of one pipeline run produced."""

    ingest: Any
    """the library's IngestReport"""
    train: TrainFlowResult
    evaluation: EvaluationResult
    """the champion on the held-out patients (the new model's own evaluation when it was promoted)"""
    predict: dict[str, Any]
    manifest: str


@flow(name="pipeline", log_prints=True)
def pipeline_flow(source: str, cohort_csv: str | None = None, home: str | None = None, fusion: str = "early",
                  impute: str = "auto", epochs: int = TrainConfig.epochs, dask: bool = False,
                  n_mc: int = 30, answers: str | None = None) -> PipelineResult:
    """Run every stage; each is a subflow whose tasks are cache hits when their inputs did not change.

    ``answers`` (a phantom's evaluation-only table) is kept out of ingestion and
    only used to report model AUROC / oracle AUROC on the held-out patients.
    """
    settings = settings_for(home)
    ingested = ingest_flow.with_options(task_runner=task_runner(settings, dask))(
        source=source, cohort_csv=cohort_csv, home=str(settings.home), exclude=[answers] if answers else None)
    encoded = encode_flow.with_options(task_runner=task_runner(settings, dask))(home=str(settings.home))
    keys = as_encoder_keys(dict(encoded.encoder_keys))
    trained = train_flow(home=str(settings.home), fusion=fusion, impute=impute, epochs=epochs,
                         encoder_keys=keys, answers=answers)
    # A newly promoted champion was just evaluated on these held-out patients inside the train flow.
    evaluation = (trained.evaluation if trained.alias == CHAMPION
                  else evaluate_flow(home=str(settings.home), answers=answers))
    predicted = predict_champion(settings, None, n_mc)  # the champion's own encoder versions, not ``keys``
    from flows.flows.outbox import batch_outbox  # the batch's SRs and FHIR bundle, sent where configured

    predicted = {**predicted, "outbox": batch_outbox(predicted["path"], source, settings)}
    get_run_logger().info("pipeline done: v%s (%s), batch %s", trained.version, trained.alias, predicted["path"])
    return PipelineResult(ingested, trained, evaluation, predicted, str(settings.manifest_path))
