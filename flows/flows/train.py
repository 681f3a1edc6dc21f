"""The train flow: features -> model (any strategy) -> held-out evaluation -> MLflow run -> registry gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from flows.access.reviews import confirmed_labels_in
from flows.flows.encode import encode_flow
from flows.flows.tasks import evaluate_task, register_task, train_task
from flows.names import MODEL_NAME
from flows.prefect_env import settings_for
from flows.settings import Settings
from flows.tracking import runs as tracking
from models.defaults import JOINT_EPOCHS
from models.features.review_labels import merge_review_labels
from models.features.stage_inputs import EncoderKeys, as_encoder_keys, home_features
from models.held_out import HELD_OUT_FRACTION
from models.training.train import TrainConfig
from models.stages import EvaluateConfig, EvaluationResult, TrainResult, TrainStageConfig
from models.study_inputs import HeldOutPatients


@dataclass(frozen=True)
class TrainFlowResult:
    """The trained model, its held-out evaluation, and what the champion gate decided."""

    trained: TrainResult
    evaluation: EvaluationResult
    version: str
    alias: str
    reason: str
    run_id: str
    url: str


def registry_is_empty(settings: Settings) -> bool:
    """True before the first registered version (then the register task must run, not hit a stale cache)."""
    tracking.configure_mlflow(settings)
    try:
        return not MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")
    except Exception:  # noqa: BLE001 - no registry database yet
        return True


def current_encoder_keys(home: str, synthetic: int) -> EncoderKeys:
    """The encoders' keys after bringing the store up to date (the encode flow: cache hits when nothing changed)."""
    return () if synthetic else as_encoder_keys(dict(encode_flow(home=home).encoder_keys))


@flow(name="train", log_prints=True)
def train_flow(home: str | None = None, fusion: str = "early", impute: str = "auto",
               epochs: int = TrainConfig.epochs, hidden: int = TrainConfig.hidden, layers: int = TrainConfig.layers,
               pool: str = TrainConfig.pool, lr: float = TrainConfig.lr,
               modality_dropout: float = TrainConfig.modality_dropout, strategy: str = "frozen",
               joint_epochs: int = JOINT_EPOCHS, encoder_lr: float = 0.0, held_out_fraction: float = HELD_OUT_FRACTION,
               synthetic: int = 0, min_gain: float = 0.0, answers: str | None = None,
               encoder_keys: EncoderKeys | None = None) -> TrainFlowResult:
    """Train on the labelled, not held-out patients; evaluate on the held-out; log; register through the gate.

    ``encoder_keys`` (from a pipeline's encode flow) skips the encode subflow.
    ``synthetic`` N trains on a synthetic cohort instead of the home's store.
    """
    settings = settings_for(home)
    keys = encoder_keys if encoder_keys is not None else current_encoder_keys(str(settings.home), synthetic)
    reviewed = () if synthetic else tuple(sorted(confirmed_labels_in(settings.access_dir).items()))
    config = TrainStageConfig(
        home=settings.home, encoder_keys=tuple(keys), fusion=fusion, impute=impute, epochs=epochs, hidden=hidden,
        layers=layers, pool=pool, lr=lr, modality_dropout=modality_dropout, strategy=strategy,
        joint_epochs=joint_epochs, encoder_lr=encoder_lr, held_out_fraction=held_out_fraction,
        synthetic=synthetic, seed=settings.seed, device=settings.resolved_device(), review_labels=reviewed)
    config.train_config()  # unknown fusion/imputation/strategy fail here, before any work
    # A cache hit must not point at a model folder that was deleted: with none saved, recompute.
    trained = train_task.with_options(refresh_cache=not any(settings.models_dir.glob("*/model.json")))(config)
    if trained.study is None:  # a result cached before results carried the study: train finds the model again
        trained = train_task.with_options(refresh_cache=True)(config)
    evaluation = evaluate_task.with_options(refresh_cache=not any(settings.reports_dir.iterdir()))(EvaluateConfig(
        home=settings.home, model_dir=trained.model_dir, encoder_keys=trained.encoder_keys,
        held_out_fraction=held_out_fraction, synthetic=synthetic, answers=Path(answers) if answers else None,
        seed=settings.seed, device=settings.resolved_device(),
        secret=settings.pseudonym_secret.get_secret_value() if answers else "", review_labels=reviewed))
    # The study train made (never rebuilt here); the gate rescores the champion on its own encoder versions
    # through ``features_for``, the candidate on ``held_out``.
    features_for = HeldOutPatients(settings.home, synthetic, settings.seed, trained.study, reviewed,
                                   settings.resolved_device(), settings.note_model_cache_dir)
    held_out = features_for.features(trained.encoder_keys)
    run_args = {"settings": settings, "config": config.train_config().as_dict(), "evaluation": evaluation,
                "encoders": dict(trained.encoder_keys), "n_train": trained.n_train,
                "held_out_fraction": held_out_fraction, "min_gain": min_gain, "features_for": features_for}
    gate = register_task.with_options(refresh_cache=registry_is_empty(settings))(
        str(trained.model_dir), held_out, settings.tracking_uri, run_args)
    result = TrainFlowResult(trained, evaluation, str(gate["version"]), gate["alias"], gate["reason"],
                             gate["run_id"], gate["url"])
    publish_training(result)
    if not synthetic:
        log_label_provenance(result.run_id, settings, trained.encoder_keys, dict(reviewed))
    get_run_logger().info("model %s v%s is %s: %s", MODEL_NAME, result.version, result.alias, result.reason)
    return result


def log_label_provenance(run_id: str, settings: Settings, keys: EncoderKeys, reviewed: dict[str, int]) -> None:
    """Where the labels came from (cohort table vs clinician review) as ``labels.*`` metrics of the run."""
    _, provenance = merge_review_labels(home_features(settings.layout, dict(keys)), reviewed)
    client = MlflowClient()
    for name, value in provenance.as_dict().items():
        client.log_metric(run_id, f"labels.{name}", float(value))


def publish_training(result: TrainFlowResult) -> None:
    """Evaluation table, gate decision and a link to the MLflow run as Prefect artifacts."""
    rows = [{"metric": k, "value": round(v, 4)} for k, v in tracking.numeric_metrics(result.evaluation.metrics).items()]
    create_table_artifact(table=rows or [{"metric": "none", "value": 0}], key="evaluation",
                          description="Held-out evaluation of the trained model")
    create_markdown_artifact(
        key="gate-decision", description="Champion gate",
        markdown=f"# {MODEL_NAME} v{result.version}: **{result.alias}**\n\n{result.reason}\n\n"
                 f"Model `{result.trained.model_id}`; MLflow run: {result.url}")
    if result.url.startswith("http"):
        create_link_artifact(link=result.url, link_text=f"MLflow run {result.run_id}", key="mlflow-run")
