"""`clinfuse train` and `clinfuse evaluate` on a synthetic cohort: model folder, report and plots land in home."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


@pytest.mark.slow
def test_train_then_evaluate_synthetic(home: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--synthetic", "160", "--epochs", "3", "--hidden", "8", "--run-id", "r1"])
    assert res.exit_code == 0, res.output
    assert (home / "models" / "r1" / "model.json").is_file()
    res = runner.invoke(app, ["evaluate", "--synthetic", "160", "--run-id", "r1", "--n-boot", "20"])
    assert res.exit_code == 0, res.output
    report = home / "reports" / "r1" / "report.md"
    assert "AUROC" in res.output and report.is_file()
    assert (home / "reports" / "r1" / "reliability.png").stat().st_size > 1000


def test_train_refuses_unknown_fusion_and_missing_inputs(home: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--synthetic", "50", "--fusion", "transformer"])
    assert res.exit_code == 2 and "unknown" in res.output
    res = runner.invoke(app, ["train"])  # no ingest/encode yet, no --synthetic
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["evaluate", "--synthetic", "50", "--run-id", "nope"])
    assert res.exit_code == 2 and "no trained model" in res.output
