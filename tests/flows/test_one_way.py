"""One way to run a stage: `clinfuse train` runs the train flow, so both give the same model for the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.flows.tasks import tree_sha256

OPTIONS = {"fusion": "late", "impute": "mean", "epochs": 3, "hidden": 8, "layers": 2, "pool": "sum", "lr": 0.01,
           "modality_dropout": 0.1, "synthetic": 80}


def _cli_args(options: dict) -> list[str]:
    return [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.mark.slow
def test_cli_train_and_train_flow_save_the_identical_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_env import prefect_settings
    from flows.settings import Settings, get_settings
    from flows.flows.train import train_flow

    cli_home, flow_home = tmp_path / "cli", tmp_path / "flow"
    monkeypatch.setenv("CLINFUSE_HOME", str(cli_home))
    get_settings.cache_clear()
    try:  # one Prefect API for both runs (two clinfuse homes): one ephemeral server to start
        with prefect_settings(Settings(home=tmp_path / "orchestration")):
            res = CliRunner().invoke(app, ["train", *_cli_args(OPTIONS)], env={"COLUMNS": "200"})
            assert res.exit_code == 0, res.output
            result = train_flow(home=str(flow_home), **OPTIONS)
    finally:
        get_settings.cache_clear()

    cli_models = [p.parent for p in (cli_home / "models").glob("*/model.json")]
    assert [p.name for p in cli_models] == [result.trained.model_id]  # one name, derived from inputs + config
    assert result.trained.model_id in res.output
    assert tree_sha256(cli_models[0]) == tree_sha256(result.trained.model_dir)  # byte-identical model
    assert result.trained.model_dir.parent == flow_home / "models"
    assert result.version == "1" and result.alias == "champion"


def test_cli_train_offers_every_train_flow_parameter() -> None:
    """The command's options are the flow's parameters (the flow has a few more that only flows pass)."""
    import inspect

    from flows.commands.train import train
    from flows.flows.train import train_flow

    flow_params = inspect.signature(train_flow.fn).parameters
    cli_params = inspect.signature(train).parameters
    only_flows = {"home", "answers", "encoder_keys"}
    only_cli = {"force"}  # decided before any flow starts: run although nothing changed since the last run
    assert set(cli_params) - only_cli == set(flow_params) - only_flows
    for name, param in cli_params.items():
        if name in only_cli:
            continue
        assert param.default.default == flow_params[name].default, name
