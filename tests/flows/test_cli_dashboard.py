"""`clinfuse dashboard`: the command line it builds, and a real server answering on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.commands.dashboard import APP, streamlit_command
from tests.conftest import REPO_ROOT, free_port


def test_streamlit_command_binds_and_is_headless() -> None:
    cmd = streamlit_command("127.0.0.1", 8765)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(cmd[4]) == APP and APP.is_file()
    pairs = dict(zip(cmd[5::2], cmd[6::2]))
    assert pairs["--server.address"] == "127.0.0.1" and pairs["--server.port"] == "8765"
    assert pairs["--server.headless"] == "true"


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cli_serves_dashboard_on_loopback(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "clinfuse"), "dashboard", "--port", str(port)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read().decode().strip() == "ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "dashboard did not answer within 60 s"
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
