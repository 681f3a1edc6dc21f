"""`clinfuse serve` end to end: every server answers on 127.0.0.1, SIGTERM stops all of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from flows.serve import wait_http
from tests.conftest import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(900)]


def test_serve_starts_everything_and_sigterm_stops_everything(settings):
    ports = {"prefect": free_port(), "mlflow": free_port(), "dashboard": free_port()}
    env = {**os.environ, "CLINFUSE_HOME": str(settings.home)}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).parent / "clinfuse"), "serve", "--prefect-port", str(ports["prefect"]),
           "--mlflow-port", str(ports["mlflow"]), "--dashboard-port", str(ports["dashboard"])]
    log = open(settings.home / "serve.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        wait_http(f"http://127.0.0.1:{ports['prefect']}/api/health", 400, proc)
        wait_http(f"http://127.0.0.1:{ports['mlflow']}/health", 300, proc)
        if Path("dashboard/app.py").is_file():
            wait_http(f"http://127.0.0.1:{ports['dashboard']}/_stcore/health", 300, proc)
        out = settings.home / "serve.out"
        for _ in range(120):
            if "clinfuse is serving" in out.read_text(errors="replace"):
                break
            import time

            time.sleep(2)
        text = out.read_text(errors="replace")
        assert "clinfuse is serving" in text, text[-3000:]
        assert f"http://127.0.0.1:{ports['mlflow']}" in text and "worker-gpu" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5  # prefect server, mlflow, two workers, dashboard (+ their own children)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert "all services stopped" in out.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
