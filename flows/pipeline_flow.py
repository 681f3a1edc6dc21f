"""The whole pipeline in order: ingest -> encode -> train (+ gate) -> evaluate champion -> predict cohort."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.encode_flow import encode_flow, encoder_keys
from flows.evaluate_flow import evaluate_flow
from flows.ingest_flow import ingest_flow
from flows.predict_flow import predict_features
from flows.prefect_env import settings_for, task_runner
from flows.train_flow import train_flow


@flow(name="pipeline", log_prints=True)
def pipeline_flow(source: str, cohort_csv: str | None = None, home: str | None = None, fusion: str = "early",
                  impute: str = "cross_profile", epochs: int = 150, dask: bool = False,
                  n_mc: int = 30, answers: str | None = None) -> dict[str, Any]:
    """Run every stage; each is a subflow whose tasks are cache hits when their inputs did not change.

    ``answers`` (a phantom's evaluation-only table) is kept out of ingestion and
    only used to report model AUROC / oracle AUROC on the held-out patients.
    """
    from ingestion.cohort import load_cohort

    settings = settings_for(home)
    logger = get_run_logger()
    runner = task_runner(settings, dask)
    ingest = ingest_flow.with_options(task_runner=runner)(source=source, cohort_csv=cohort_csv,
                                                          home=str(settings.home),
                                                          exclude=[answers] if answers else None)
    reports = encode_flow.with_options(task_runner=task_runner(settings, dask))(home=str(settings.home))
    trained = train_flow(home=str(settings.home), fusion=fusion, impute=impute, epochs=epochs,
                         encode_reports=reports, answers=answers)
    # A newly promoted champion was just evaluated on these held-out patients inside the train flow;
    # re-evaluate only when the champion is an older model.
    evaluated = (evaluate_flow(home=str(settings.home), encode_reports=reports) if trained["alias"] != "champion"
                 else {"version": trained["version"], "metrics": trained["metrics"], "url": trained["url"]})
    cohort = load_cohort(settings.cohort_path)
    predicted = predict_features((str(settings.home), str(settings.embeddings_dir), encoder_keys(reports)),
                                 cohort, settings, n_mc)
    logger.info("pipeline done: %s v%s (%s), batch %s", trained["model_name"], trained["version"],
                trained["alias"], predicted["path"])
    return {"ingest": {"new": ingest.new, "skipped": ingest.skipped, "quarantined": ingest.n_quarantined},
            "train": {k: trained[k] for k in ("version", "alias", "reason", "run_id", "url")},
            "evaluate": evaluated, "predict": predicted, "manifest": str(settings.manifest_path)}
