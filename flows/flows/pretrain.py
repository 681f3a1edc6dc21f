"""The pretrain flow: contrastive pretraining of the home's CT, X-ray and EEG encoders."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.flows.tasks import pretrain_task
from flows.prefect_env import settings_for
from models.stages import PretrainResult, PretrainStageConfig
from models.training.pretrain_config import PretrainConfig


@flow(name="pretrain", log_prints=True)
def pretrain_flow(home: str | None = None, epochs: int = PretrainConfig.epochs,
                  batch_size: int = PretrainConfig.batch_size, lr: float = PretrainConfig.lr,
                  device: str | None = None) -> PretrainResult:
    """Train the encoders on every ingested patient; the next encode embeds with the new versions."""
    settings = settings_for(home)
    config = PretrainStageConfig(
        home=settings.home, device=device or settings.resolved_device(), note_encoder=settings.note_encoder,
        pretrain=PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=settings.seed))
    result = pretrain_task(config)
    rows = [{"encoder": name, "version": version} for name, version in result.versions.items()]
    create_table_artifact(table=rows or [{"encoder": "none", "version": "nothing trained"}],
                          key="pretrain-versions", description="New encoder versions")
    get_run_logger().info("pretrain: %s", rows)
    return result
