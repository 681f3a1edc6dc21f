"""`clinfuse train --impute auto`: the method is chosen on training patients, kept in the model, logged to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.imputation.select import CANDIDATES


@pytest.fixture
def home(cli_home: Path) -> Path:
    return cli_home


@pytest.mark.slow
def test_cli_train_impute_auto_records_the_choice(home: Path) -> None:
    """The synthetic cohort is drawn from the phantom's signal model (``models.simulation.phantom_features``)."""
    from flows.prefect_env import prefect_settings
    from flows.settings import Settings

    with prefect_settings(Settings(home=home)):  # Prefect is already imported: apply the home's settings here
        res = CliRunner().invoke(app, ["train", "--synthetic", "120", "--epochs", "3", "--hidden", "8",
                                       "--impute", "auto"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    (model_dir,) = [p.parent for p in (home / "models").glob("*/model.json")]
    meta = json.loads((model_dir / "model.json").read_text())
    selection = meta["metrics"]["impute_selection"]
    assert selection["requested"] == "auto" and selection["chosen"] in CANDIDATES
    assert meta["config"]["impute"] == selection["chosen"]  # the saved model uses the chosen imputer
    assert [row["method"] for row in selection["table"]] == list(CANDIDATES)
    assert json.loads((model_dir / "imputer" / "imputer.json").read_text())["method"] == selection["chosen"]


def test_the_choice_and_the_comparison_table_are_logged_to_mlflow(tmp_path: Path) -> None:
    from flows.tracking.train_run import log_imputation_choice

    table = [{"method": m, "fold1_auroc": 0.7 + 0.01 * i, "mean_auroc": 0.7 + 0.01 * i, "chosen": m == "mean"}
             for i, m in enumerate(CANDIDATES)]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps(
        {"metrics": {"impute_selection": {"requested": "auto", "chosen": "mean", "table": table}}}))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "model.json").write_text(json.dumps({"metrics": {}}))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run:
            log_imputation_choice(model_dir)
        with mlflow.start_run() as plain:
            log_imputation_choice(tmp_path / "plain")  # a fixed --impute logs no selection
        assert mlflow.get_run(run.info.run_id).data.tags["imputation"] == "mean"
        logged = mlflow.load_table("imputation_selection.json", run_ids=[run.info.run_id])
        assert list(logged["method"]) == list(CANDIDATES)
        assert "imputation" not in mlflow.get_run(plain.info.run_id).data.tags
    finally:
        mlflow.set_tracking_uri(None)


def test_train_refuses_an_unknown_imputation(home: Path) -> None:
    res = CliRunner().invoke(app, ["train", "--synthetic", "50", "--impute", "median"])
    assert res.exit_code != 0 and "median" in res.output


@pytest.mark.slow
def test_cli_train_defaults_to_auto_on_a_home_of_array_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain ``clinfuse train`` on encoded files (missing modalities, no --impute): auto chooses, and says why."""
    import torch

    from flows.prefect_env import prefect_settings
    from flows.settings import Settings, get_settings
    from ingestion.cohort import write_cohort
    from ingestion.manifest import write_manifest
    from models.features.assemble import encode_manifest
    from models.stores.embeddings import EmbeddingStore
    from tests.models.synthetic_arrays import write_synthetic_home

    torch.set_num_threads(1)
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=60, seed=5, missing_rate=0.3,
                                            modalities=("xray", "eeg", "note"))
    write_manifest(manifest, home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")
    encode_manifest(manifest, home, EmbeddingStore(home / "embeddings"), modalities=("xray", "eeg", "note"),
                    note_encoder="tfidf", encoders_dir=home / "encoders")
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    monkeypatch.setenv("CLINFUSE_NOTE_ENCODER", "tfidf")
    get_settings.cache_clear()
    try:
        with prefect_settings(Settings(home=home)):
            res = CliRunner().invoke(app, ["train", "--epochs", "3", "--hidden", "8"], env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    (saved,) = (home / "models").glob("*/model.json")
    meta = json.loads(saved.read_text())
    selection = meta["metrics"]["impute_selection"]
    assert meta["config"]["impute"] == selection["chosen"] in CANDIDATES
    for row in selection["table"]:  # each candidate scored as it is and with modalities hidden
        assert 0 <= row["mean_auroc_hidden"] <= 1 and 0 <= row["mean_auroc_as_is"] <= 1
