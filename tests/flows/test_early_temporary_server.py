"""A command starts Prefect's temporary server while it imports the flows, and the flow runs on that server.

Why: in a new home the temporary server migrates its SQLite database (20-27 s on 2 cores) and used to start
only when the first flow ran, after the command had imported torch and the flows (~11 s); make demo spent
40.8 s before its pipeline flow began (docs/BENCHMARKS.md, make demo stages).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = r'''
import json, urllib.request
from rich.console import Console
from flows.commands import flow_runner

settings = flow_runner.prepare(Console())
started = [t.name for t in flow_runner._EARLY_SERVER]
flow_runner._wait_for_temporary_server()
from prefect.server.api.server import SubprocessASGIServer
server = SubprocessASGIServer._instances[None]
health = urllib.request.urlopen(server.api_url + "/health", timeout=10).status
pid = server.server_process.pid

from prefect import flow
@flow
def tiny() -> int:
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        return str(client.api_url)

used = flow_runner.run_flow(Console(), "tiny", tiny)
print(json.dumps({"started": started, "health": health, "api": server.api_url, "used": used,
                  "same_process": SubprocessASGIServer._instances[None].server_process.pid == pid,
                  "instances": len(SubprocessASGIServer._instances)}))
'''
CONFIGURED = r'''
from rich.console import Console
from flows.commands import flow_runner
flow_runner.prepare(Console())
flow_runner._wait_for_temporary_server()
import sys
print("server-module-loaded" if "prefect.server.api.server" in sys.modules else "no-temporary-server")
'''


def _run(code: str, home: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and not k.startswith("CLINFUSE_PREFECT")}
    env.update(CLINFUSE_HOME=str(home), PYTHONPATH=str(REPO_ROOT), **extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)


@pytest.mark.slow
@pytest.mark.server
def test_the_temporary_server_starts_before_the_flow_and_the_flow_uses_it(tmp_path: Path) -> None:
    import json

    out = _run(SCRIPT, tmp_path / "home")
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["started"] == ["prefect-temporary-server"] and got["health"] == 200
    assert got["used"].rstrip("/") == got["api"].rstrip("/")  # the flow's client found the early server
    assert got["same_process"] and got["instances"] == 1  # not a second server


def test_no_temporary_server_when_a_prefect_server_is_configured(tmp_path: Path) -> None:
    out = _run(CONFIGURED, tmp_path / "home", PREFECT_API_URL="http://127.0.0.1:9/api")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "no-temporary-server"
