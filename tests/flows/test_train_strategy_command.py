"""`clinfuse train --strategy joint|finetune` on a home of real array files (manifest, cohort, store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from ingestion.cohort import write_cohort
from ingestion.manifest import write_manifest
from models.features.assemble import encode_manifest
from models.stores.embeddings import EmbeddingStore
from tests.models.synthetic_arrays import write_synthetic_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from flows.settings import get_settings

    torch.set_num_threads(1)
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=30, seed=4, modalities=("xray", "note"))
    write_manifest(manifest, home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")
    encode_manifest(manifest, home, EmbeddingStore(home / "embeddings"), modalities=("xray", "note"),
                    note_encoder="tfidf", encoders_dir=home / "encoders")
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    monkeypatch.setenv("CLINFUSE_NOTE_ENCODER", "tfidf")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.mark.slow
def test_train_strategy_joint_saves_encoder_and_model(home: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--strategy", "finetune", "--epochs", "3"])
    assert res.exit_code == 2 and "clinfuse pretrain" in res.output  # nothing pretrained yet
    res = runner.invoke(app, ["train", "--strategy", "joint", "--joint-epochs", "2", "--epochs", "5",
                              "--hidden", "8"])
    assert res.exit_code == 0, res.output
    weights = list((home / "encoders").glob("xray-resnet2d-*.pt"))
    assert len(weights) == 1 and weights[0].name in res.output
    import json

    (saved,) = (home / "models").glob("*/model.json")
    config = json.loads(saved.read_text())["config"]
    assert config["strategy"] == "joint" and config["encoders"]["xray"] == weights[0].stem.split("-")[-1]
    res = runner.invoke(app, ["train", "--strategy", "joint", "--synthetic", "40"])
    assert res.exit_code == 2 and "arrays" in res.output
