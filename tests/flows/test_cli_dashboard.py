"""`clinfuse dashboard`: the command line it builds, a real server on loopback, and no server outliving it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.serve.dashboard_process import APP, streamlit_command
from tests.conftest import REPO_ROOT, free_port
from tests.flows.proc_helpers import kill_all, survivors, tree, wait_port_free


def test_streamlit_command_binds_and_is_headless() -> None:
    cmd = streamlit_command("127.0.0.1", 8765)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(cmd[4]) == APP and APP.is_file()
    pairs = dict(zip(cmd[5::2], cmd[6::2]))
    assert pairs["--server.address"] == "127.0.0.1" and pairs["--server.port"] == "8765"
    assert pairs["--server.headless"] == "true"


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_cli_serves_dashboard_and_it_stops_with_the_command(tmp_path: Path, sig: int) -> None:
    """The dashboard answers on 127.0.0.1; after SIGTERM (exit 0) or kill -9 of `clinfuse dashboard`,
    no process it started is left and the port is free (issue 19: a Streamlit server outlived it)."""
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(tmp_path / "home")}
    log = tmp_path / "dashboard.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "clinfuse"), "dashboard", "--port", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    procs = []
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read().decode().strip() == "ok"
                    break
            except OSError:
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "dashboard did not answer within 90 s"
                time.sleep(0.3)
        procs = tree(proc.pid)
        assert any("streamlit" in " ".join(p.cmdline()) for p in procs)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert survivors(procs, timeout_s=30) == []
        assert wait_port_free(port, timeout_s=10), f"port {port} still answers"
    finally:
        kill_all(procs)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
