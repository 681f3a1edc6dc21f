"""`clinfuse pretrain` then `clinfuse encode` on a small ingested-style home, in process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from flows.settings import get_settings
from ingestion.cohort import write_cohort
from ingestion.manifest import read_manifest, write_manifest
from models.stores.embeddings import EmbeddingStore
from tests.models.synthetic_arrays import write_synthetic_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=8, seed=5, modalities=("xray", "eeg", "note"))
    write_manifest(manifest, home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")  # the study split pretraining keeps to
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    monkeypatch.setenv("CLINFUSE_NOTE_ENCODER", "tfidf")
    get_settings.cache_clear()
    before = torch.get_num_threads()
    yield home
    torch.set_num_threads(before)
    get_settings.cache_clear()


@pytest.mark.slow
def test_pretrain_then_encode_twice(home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["pretrain", "--epochs", "1", "--batch-size", "4"])
    assert out.exit_code == 0, out.output
    assert "xray-resnet2d: version" in out.output and "eeg-tcn-bands: version" in out.output
    assert len(list((home / "encoders").glob("*.pt"))) == 2
    out = runner.invoke(app, ["encode", "--device", "cpu"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    n_ok = (read_manifest(home / "manifest.parquet")["status"] == "ok").sum()
    store = EmbeddingStore(home / "embeddings")
    assert len(store) == n_ok  # every ok item encoded once (ct absent from this home)
    again = runner.invoke(app, ["encode", "--modality", "eeg"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert len(EmbeddingStore(home / "embeddings")) == n_ok


def test_encode_without_manifest_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "empty"))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["encode"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 2 and "clinfuse ingest" in out.output
