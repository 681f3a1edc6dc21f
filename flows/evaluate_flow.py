"""The evaluate flow: the current champion on today's held-out patients, logged to ``clinfuse-evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows import tracking
from flows.encode_flow import encode_flow, encoder_keys
from flows.prefect_env import settings_for
from flows.registry import CHAMPION, MODEL_NAME, champion_version
from flows.tasks import evaluate_task, features_sha256, load_features_task
from flows.train_flow import HELD_OUT_FRACTION, labelled, split


@flow(name="evaluate", log_prints=True)
def evaluate_flow(home: str | None = None, held_out_fraction: float = HELD_OUT_FRACTION,
                  encode_reports: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-evaluate ``models:/clinfuse@champion``; a cache hit when neither the champion nor the data changed."""
    settings = settings_for(home)
    tracking.configure_mlflow(settings)
    current = champion_version(mlflow.MlflowClient())
    if current is None:
        raise LookupError(f"no {CHAMPION} version of {MODEL_NAME} in {settings.tracking_uri}: run the train flow first")
    reports = encode_reports if encode_reports is not None else encode_flow(home=str(settings.home))
    features = labelled(load_features_task(str(settings.home), str(settings.embeddings_dir), encoder_keys(reports)))
    _, held_out = split(features, settings, held_out_fraction)
    bundle = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}@{CHAMPION}")) / "artifacts"
    model_dir = next(p.parent for p in bundle.rglob("model.json"))
    key = f"{features_sha256(held_out)[:8]}-champion-v{current.version}"
    out_dir = settings.reports_dir / key
    state = evaluate_task.with_options(refresh_cache=not out_dir.exists())(
        str(model_dir), key, held_out, str(out_dir), {}, return_state=True)
    evaluation = state.result()
    if state.name == "Cached":
        get_run_logger().info("champion v%s already evaluated on these patients (%s)", current.version, out_dir)
        return {"version": str(current.version), "metrics": evaluation["metrics"], "url": None, "cached": True}
    with tracking.stage_run("evaluate", settings, run_name=f"champion-v{current.version}",
                            tags={"clinfuse.model_version": str(current.version)}) as run:
        mlflow.log_params({"model_version": current.version, "model_run_id": current.run_id,
                           "n_held_out_patients": len(held_out)})
        tracking.log_metrics(evaluation["metrics"], prefix="heldout.")
        mlflow.log_artifacts(evaluation["out_dir"], artifact_path="evaluation")
        url = tracking.run_url(settings, run)
    rows = [{"metric": k, "value": round(v, 4)} for k, v in tracking.numeric_metrics(evaluation["metrics"]).items()]
    create_table_artifact(table=rows or [{"metric": "none", "value": 0}], key="champion-evaluation",
                          description=f"{MODEL_NAME} v{current.version} on the held-out patients; {url}")
    get_run_logger().info("champion v%s evaluated: %s", current.version, url)
    return {"version": str(current.version), "metrics": evaluation["metrics"], "url": url, "cached": False}
