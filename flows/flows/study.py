"""The study flow: train and compare every fusion kind, unimodal baselines and missingness sweeps."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows import progress
from flows.flows.train import current_encoder_keys
from flows.prefect_env import settings_for
from models.defaults import N_BOOT
from models.stages import StudyConfig, StudyOutcome
from models.training.train import TrainConfig


@task(name="study", persist_result=False)
def study_task(config: StudyConfig) -> StudyOutcome:
    """``models.stages.study``: minutes on a CPU for a few hundred patients; not cached (it is the experiment)."""
    from models.stages import study

    return study(config, progress=progress.callback("study"))


@flow(name="study", log_prints=True)
def study_flow(home: str | None = None, synthetic: int = 0, answers: str | None = None,
               epochs: int = TrainConfig.epochs, n_boot: int = N_BOOT) -> StudyOutcome:
    """The comparative study on the home's labelled patients (or a synthetic cohort); a report with plots."""
    settings = settings_for(home)
    outcome = study_task(StudyConfig(
        home=settings.home, encoder_keys=current_encoder_keys(str(settings.home), synthetic), synthetic=synthetic,
        answers=Path(answers) if answers else None, epochs=epochs, n_boot=n_boot, seed=settings.seed,
        device=settings.resolved_device(), secret=settings.pseudonym_secret.get_secret_value() if answers else ""))
    create_markdown_artifact(key="study", description="Comparative study",
                             markdown=f"# Study of {outcome.n_patients} patients\n\nReport: `{outcome.report}`")
    get_run_logger().info("study report: %s", outcome.report)
    return outcome
