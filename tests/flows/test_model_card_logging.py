"""The model card's candidate count comes from the registry: every version compared on the same held-out patients.

Two models (different epochs, so different ids) are trained and evaluated by the
real stages on one synthetic cohort and logged by the real train run; the second
card must say 2 candidates, the champion's evaluate run must count both, and the
card MLflow holds must be the one in the report folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

N_PATIENTS = 160


@pytest.mark.slow
def test_second_candidate_on_the_same_held_out_patients_counts_two(tmp_path: Path) -> None:
    import mlflow

    from flows.settings import Settings
    from flows.tracking import runs as tracking
    from flows.tracking.model_card_log import log_model_card, registry_looks
    from flows.tracking.train_run import log_training_run
    from models import stages
    from models.held_out import split_held_out

    home = tmp_path / "home"
    settings = Settings(home=home)
    settings.ensure_dirs()
    _, held_out = split_held_out(stages.stage_features(home, (), N_PATIENTS, settings.seed), 0.2, settings.seed)
    before = mlflow.get_tracking_uri()
    runs = []
    try:
        for epochs in (6, 9):
            trained = stages.train(stages.TrainStageConfig(home=home, synthetic=N_PATIENTS, epochs=epochs,
                                                           impute="zero", seed=settings.seed))
            evaluation = stages.evaluate(stages.EvaluateConfig(home=home, model_dir=trained.model_dir,
                                                               synthetic=N_PATIENTS, n_boot=50, seed=settings.seed))
            runs.append((evaluation, log_training_run(
                trained.model_dir, held_out, settings=settings, config={"epochs": epochs}, evaluation=evaluation,
                encoders={}, n_train=trained.n_train, held_out_fraction=0.2)))
        (first, first_run), (second, second_run) = runs
        assert json.loads((first.out_dir / "model_card.json").read_text())["candidates"]["count"] == 1
        card = json.loads((second.out_dir / "model_card.json").read_text())
        assert card["candidates"]["count"] == 2 and "2 candidate(s) compared" in (
            second.out_dir / "model_card.md").read_text()
        client = mlflow.MlflowClient(settings.tracking_uri)
        logged = client.download_artifacts(second_run["run_id"], "evaluation/model_card.json", str(tmp_path / "dl"))
        assert json.loads(Path(logged).read_text()) == card
        assert client.get_run(second_run["run_id"]).data.metrics["model_card.candidates_compared"] == 2
        assert client.get_run(second_run["run_id"]).data.tags["clinfuse.model_card"] == "not validated"

        # The champion's evaluate run counts every version with the champion's held-out tag.
        champion = client.get_model_version_by_alias("clinfuse", "champion").version
        assert registry_looks(champion, client) == 2
        with tracking.stage_run("evaluate", settings, run_name="card-check") as run:
            assert log_model_card(first.out_dir, registry_looks(champion, client))["candidates"]["count"] == 2
        assert client.get_run(run.info.run_id).data.metrics["model_card.candidates_compared"] == 2
        assert registry_looks("99", client) is None  # no such version: nothing to count, no crash
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before)
