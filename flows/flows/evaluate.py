"""The evaluate flow: a model (the champion, or one named by id) on the held-out patients, logged to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.access.reviews import confirmed_labels_in
from flows.flows.tasks import evaluate_task
from flows.flows.train import current_encoder_keys
from flows.names import MODEL_NAME
from flows.prefect_env import settings_for
from flows.settings import Settings
from flows.tracking import runs as tracking
from flows.tracking.model_card_log import log_model_card, registry_looks
from flows.tracking.registry import require_champion
from models.defaults import N_BOOT
from models.features.stage_inputs import EncoderKeys, as_encoder_keys
from models.held_out import HELD_OUT_FRACTION
from models.stages import EvaluateConfig, EvaluationResult


def champion_model(settings: Settings) -> tuple[Path, str, str]:
    """The champion's model folder, version and run; downloaded by version, so a promotion meanwhile cannot
    swap the model under the stamps."""
    tracking.configure_mlflow(settings)
    current = require_champion()
    bundle = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{current.version}")) / "artifacts"
    return next(p.parent for p in bundle.rglob("model.json")), str(current.version), str(current.run_id)


def model_dir_for_id(settings: Settings, model_id: str) -> Path:
    """``<models_dir>/<model_id>``, or a LookupError that lists the saved ids."""
    path = settings.models_dir / model_id
    if not (path / "model.json").exists():
        saved = sorted(p.name for p in settings.models_dir.glob("*/model.json"))
        raise LookupError(f"no model {model_id!r} under {settings.models_dir}; saved: "
                          f"{', '.join(p.split('/')[0] for p in saved) or 'none'}")
    return path


def evaluation_encoder_keys(settings: Settings, model_dir: Path, synthetic: int) -> EncoderKeys:
    """The embeddings a model is judged on: the encoder versions it recorded, as predict pins them.

    Scoring a model on a newer encoder's embeddings would judge another model than the one registered;
    only a model that recorded no versions falls back to the current encoders.
    """
    recorded = json.loads((model_dir / "model.json").read_text()).get("encoder_keys") or {}
    if synthetic or not any(recorded.values()):
        return current_encoder_keys(str(settings.home), synthetic)
    return as_encoder_keys(recorded)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(home: str | None = None, model_id: str | None = None,
                  held_out_fraction: float = HELD_OUT_FRACTION, answers: str | None = None, n_boot: int = N_BOOT,
                  synthetic: int = 0) -> EvaluationResult:
    """Evaluate ``model_id`` (default: ``models:/clinfuse@champion``); a cache hit when nothing changed.

    A champion evaluation is logged as a run of the ``clinfuse-evaluate`` experiment.
    """
    settings = settings_for(home)
    if model_id:
        model_dir, version = model_dir_for_id(settings, model_id), None
    else:
        model_dir, version, _ = champion_model(settings)
    config = EvaluateConfig(
        home=settings.home, model_dir=model_dir, encoder_keys=evaluation_encoder_keys(settings, model_dir, synthetic),
        held_out_fraction=held_out_fraction, synthetic=synthetic, answers=Path(answers) if answers else None,
        n_boot=n_boot, seed=settings.seed, device=settings.resolved_device(),
        secret=settings.pseudonym_secret.get_secret_value() if answers else "",
        review_labels=() if synthetic else tuple(sorted(confirmed_labels_in(settings.access_dir).items())))
    state = evaluate_task.with_options(refresh_cache=not any(settings.reports_dir.iterdir()))(config, return_state=True)
    evaluation = state.result()
    if version is not None and state.name != "Cached":
        log_champion_evaluation(settings, version, evaluation)
    rows = [{"metric": k, "value": round(v, 4)} for k, v in tracking.numeric_metrics(evaluation.metrics).items()]
    create_table_artifact(table=rows or [{"metric": "none", "value": 0}], key="held-out-evaluation",
                          description=f"{model_id or f'{MODEL_NAME} v{version}'} on the held-out patients")
    get_run_logger().info("evaluated %s: report %s", model_id or f"v{version}", evaluation.report)
    return evaluation


def log_champion_evaluation(settings: Settings, version: str, evaluation: EvaluationResult) -> None:
    """One ``clinfuse-evaluate`` run: the champion's held-out metrics and report."""
    with tracking.stage_run("evaluate", settings, run_name=f"champion-v{version}",
                            tags={"clinfuse.model_version": version}):
        mlflow.log_params({"model_version": version, "n_held_out_patients": evaluation.n_held_out})
        tracking.log_metrics(evaluation.metrics, prefix="heldout.")
        mlflow.log_artifacts(str(evaluation.out_dir), artifact_path="evaluation")
        log_model_card(evaluation.out_dir, registry_looks(version))
