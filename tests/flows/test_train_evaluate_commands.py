"""`clinfuse train` and `clinfuse evaluate` on a synthetic cohort: model folder, report and plots land in home."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app


@pytest.fixture
def home(cli_home: Path) -> Path:
    return cli_home


@pytest.mark.slow
def test_train_then_evaluate_synthetic(home: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--synthetic", "160", "--epochs", "3", "--hidden", "8"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    (model_dir,) = [p.parent for p in (home / "models").glob("*/model.json")]
    assert f"model {model_dir.name} is clinfuse v1 (champion" in res.output
    res = runner.invoke(app, ["evaluate", "--synthetic", "160", "--model-id", model_dir.name, "--n-boot", "20"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    (report,) = (home / "reports").glob(f"*-{model_dir.name}/report.md")
    assert "AUROC" in res.output and str(report) in res.output.replace("\n", "")
    assert (report.parent / "reliability.png").stat().st_size > 1000
    res = runner.invoke(app, ["evaluate", "--synthetic", "160", "--n-boot", "20"])  # the champion, by the registry
    assert res.exit_code == 0 and "held-out patients: AUROC" in res.output, res.output


def test_train_refuses_unknown_fusion_and_missing_inputs(home: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--synthetic", "50", "--fusion", "transformer"])
    assert res.exit_code == 2 and "'transformer' is not one of" in res.output
    res = runner.invoke(app, ["train"])  # no ingest/encode yet, no --synthetic
    assert res.exit_code == 2 and "clinfuse ingest" in res.output
    res = runner.invoke(app, ["evaluate", "--synthetic", "50", "--model-id", "nope"])
    assert res.exit_code == 2 and "no model 'nope'" in res.output
