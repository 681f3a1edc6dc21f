"""The Model page's headline reads the keys a real training run logs (``heldout.auroc``, ...).

The registry is written by the train flow's own steps (train, held-out
evaluation, ``flows.tracking.train_run.log_training_run`` with the champion gate),
not by hand, so a renamed metric breaks this test rather than the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory) -> tuple[Path, dict]:
    import mlflow

    from flows.settings import Settings
    from flows.tracking.train_run import log_training_run
    from models.evaluation.metrics import evaluate_model
    from models.simulation.phantom_features import synthetic_cohort
    from models.training.train import TrainConfig, train

    home = tmp_path_factory.mktemp("model-page") / "home"
    settings = Settings(home=home)
    settings.ensure_dirs()
    fs = synthetic_cohort(160, dim=8, missing_rate=0.2, seed=4).features
    train_fs, held_out = fs.subset(np.arange(120)), fs.subset(np.arange(120, 160))
    config = TrainConfig(epochs=8, hidden=8, patience=8, seed=1)
    model_dir = train(train_fs, config).save(home / "models" / "m")
    from models.training.trained_model import TrainedModel

    from models.stages import EvaluationResult

    raw = evaluate_model(TrainedModel.load(model_dir), held_out, home / "reports" / "m", n_boot=50)
    evaluation = EvaluationResult(dict(raw["metrics"]), Path(raw["out_dir"]), Path(raw["report"]), len(held_out))
    before = mlflow.get_tracking_uri()
    try:
        result = log_training_run(model_dir, held_out, settings=settings, config=config.as_dict(),
                                  evaluation=evaluation, encoders=None, n_train=len(train_fs),
                                  held_out_fraction=0.25)
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before)
    assert result["alias"] == "champion"
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(result["run_id"])
    return home, dict(run.data.metrics)


@pytest.mark.slow
def test_model_page_headline_shows_the_real_runs_held_out_metrics(app_for, trained_home) -> None:
    home, logged = trained_home
    assert "heldout.auroc" in logged and "auroc" not in logged  # what real runs log
    at = app_for(home).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {m.label: m.value for m in at.metric}
    assert shown["AUROC"] == f"{logged['heldout.auroc']:.3f}"
    assert shown["ECE"] == f"{logged['heldout.ece']:.3f}"
    assert shown["Abstained"] == f"{logged['heldout.abstain_rate']:.1%}"


@pytest.mark.slow
def test_model_page_says_when_the_champions_run_has_no_model_card(app_for, trained_home) -> None:
    """This fixture's run logs a report folder written by ``evaluate_model`` alone (no card): the page says so."""
    home, _ = trained_home
    at = app_for(home).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("has no model card" in i.value for i in at.info)
    assert not [e for e in at.error if "Not validated" in e.value]
