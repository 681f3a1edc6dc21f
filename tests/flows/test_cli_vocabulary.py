"""One CLI vocabulary: the same choices and defaults in `train`, `pipeline`, the flows and the deployments;
a typo fails at parse time (exit 2, choices listed) before Prefect or torch load; `clinfuse --version`."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from importlib.metadata import version

import pytest
import typer.main
from typer.testing import CliRunner

from flows.choices import DEFAULT_FUSION, DEFAULT_IMPUTE, Fusion, Impute, Pool, Strategy
from flows.cli import app

PARSE_ONLY = """
import json, sys
from flows.cli import app
try:
    app(sys.argv[1:], prog_name="clinfuse")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("prefect", "mlflow", "torch") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _parse_in_fresh_process(*argv: str) -> tuple[dict, str]:
    """Run the CLI in a new interpreter; report its exit code and which heavy libraries it imported."""
    proc = subprocess.run([sys.executable, "-c", PARSE_ONLY, *argv], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "CLINFUSE_HOME": "/nonexistent-clinfuse"})
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_choices_are_the_models_registry_names() -> None:
    from models.fusion import ALIASES, FUSIONS
    from models.fusion.cross_attention import POOLS
    from models.imputation.registry import IMPUTERS
    from models.training.config import STRATEGIES

    from flows.choices import DEPRECATED_ALIASES

    assert {f.value for f in Fusion} == set(FUSIONS)
    assert {i.value for i in Impute} == set(IMPUTERS) | {"auto"}
    assert tuple(s.value for s in Strategy) == STRATEGIES
    assert tuple(p.value for p in Pool) == POOLS
    assert DEPRECATED_ALIASES == ALIASES


@pytest.mark.parametrize("argv, listed", [
    (["train", "--fusion", "transfomer"], "cross_attention"),
    (["train", "--impute", "median"], "complete_case"),
    (["train", "--strategy", "frozn"], "finetune"),
    (["train", "--pool", "mean"], "concat"),
    (["pipeline", "--source", ".", "--fusion", "attn"], "cross_attention"),
    (["pipeline", "--source", ".", "--impute", "cross-profile"], "cross_profile"),
])
def test_a_typo_fails_at_parse_time_with_the_choices(argv: list[str], listed: str) -> None:
    outcome, stderr = _parse_in_fresh_process(*argv)
    assert outcome["code"] == 2, stderr
    assert "Invalid value" in stderr and listed in stderr and argv[-1] in stderr
    assert outcome["heavy"] == [], f"parsing alone imported {outcome['heavy']}"


def _parsed(command: str, *argv: str) -> dict:
    click_app = typer.main.get_command(app)
    ctx = click_app.commands[command].make_context(command, list(argv))
    return ctx.params


def test_the_old_fusion_name_still_parses_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parsed("train", "--fusion", "attention")["fusion"] is Fusion.cross_attention
    assert "deprecated" in capsys.readouterr().err
    assert _parsed("pipeline", "--source", ".", "--fusion", "intermediate")["fusion"] is Fusion.hybrid
    assert "'hybrid'" in capsys.readouterr().err
    assert _parsed("train", "--fusion", "cross_attention")["fusion"] is Fusion.cross_attention
    assert "deprecated" not in capsys.readouterr().err


def test_train_pipeline_flows_and_deployments_share_defaults() -> None:
    from flows.flows.pipeline import pipeline_flow
    from flows.flows.train import train_flow
    from flows.serve.deployments import DEPLOYMENTS

    for command in ("train", "pipeline"):
        params = _parsed(command, *(["--source", "."] if command == "pipeline" else []))
        assert (params["fusion"], params["impute"]) == (DEFAULT_FUSION, DEFAULT_IMPUTE), command
    for flow in (train_flow, pipeline_flow):
        sig = inspect.signature(flow.fn).parameters
        assert (sig["fusion"].default, sig["impute"].default) == ("early", "auto"), flow.name
    by_flow = {spec.flow: spec.parameters for spec in DEPLOYMENTS}
    for flow in ("train", "pipeline"):
        assert by_flow[flow]["impute"] == "auto" and by_flow[flow]["fusion"] == "early"
    assert DEFAULT_IMPUTE.value == "auto"


def test_version_comes_from_the_package_metadata() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"clinfuse {version('clinfuse')}"
