"""`clinfuse serve` end to end: every server answers on 127.0.0.1; SIGTERM, and kill -9, stop all of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.serve.team import wait_http
from tests.conftest import free_port
from tests.flows.proc_helpers import LOOPBACK, kill_all, listening_sockets, survivors, tree, wait_port_free

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(900)]


PASSWORD = "access-pass-94c1e7"
SECRET = "access-secret-2b8f60"


def _serve(settings, *extra: str, env_extra: dict[str, str] | None = None,
           ) -> tuple[subprocess.Popen, dict[str, int], Path]:
    """`clinfuse serve` in a session of its own, waited for until it prints its table."""
    ports = {"prefect": free_port(), "mlflow": free_port(), "dashboard": free_port()}
    env = {**os.environ, "CLINFUSE_HOME": str(settings.home), **(env_extra or {})}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).parent / "clinfuse"), "serve", "--prefect-port", str(ports["prefect"]),
           "--mlflow-port", str(ports["mlflow"]), "--dashboard-port", str(ports["dashboard"]), *extra]
    out = settings.home / "serve.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{ports['prefect']}/api/health", 400, proc)
    wait_http(f"http://127.0.0.1:{ports['mlflow']}/health", 300, proc)
    if Path("dashboard/app.py").is_file():
        wait_http(f"http://127.0.0.1:{ports['dashboard']}/_stcore/health", 300, proc)
    deadline = time.monotonic() + 240
    while "clinfuse is serving" not in out.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text(errors="replace")[-3000:]
        time.sleep(1)
    return proc, ports, out


def _assert_all_gone(procs, ports: dict[str, int]) -> None:
    assert survivors(procs, timeout_s=45) == []
    for name, port in ports.items():
        assert wait_port_free(port, timeout_s=15), f"{name} port {port} still answers"


def test_serve_starts_everything_on_loopback_only_and_sigterm_stops_everything(settings):
    """Also the exposure check: every listening socket of the tree is loopback, and no secret reaches a log."""
    proc, ports, out = _serve(settings, env_extra={"CLINFUSE_DASHBOARD_PASSWORD": PASSWORD,
                                                   "CLINFUSE_PSEUDONYM_SECRET": SECRET})
    procs = []
    try:
        text = out.read_text(errors="replace")
        assert f"http://127.0.0.1:{ports['mlflow']}" in text and "worker-gpu" in text
        procs = tree(proc.pid)
        assert len(procs) >= 6  # serve, prefect server, mlflow, two workers, dashboard (+ their own children)
        listening = listening_sockets([proc.pid, *(p.pid for p in procs)])
        assert {port for _, _, port in listening} >= set(ports.values()), listening
        assert not [entry for entry in listening if entry[1] not in LOOPBACK], f"listening beyond loopback: {listening}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        _assert_all_gone(procs, ports)
        assert "all services stopped" in out.read_text(errors="replace")
        texts = [out.read_bytes()] + [p.read_bytes() for p in settings.home.rglob("*") if p.is_file() and p.suffix
                                      in (".log", ".txt", ".json", ".yaml", ".toml", ".db", "")]
        for secret in (PASSWORD, SECRET):
            assert not any(secret.encode() in t for t in texts), "a secret was written to the logs or the home"
    finally:
        kill_all(procs)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_serve_killed_outright_takes_its_services_along(settings):
    proc, ports, _ = _serve(settings, "--no-deploy")
    procs = []
    try:
        procs = tree(proc.pid)
        assert len(procs) >= 6
        proc.kill()  # kill -9: no handler runs in serve; the kernel and the watchdog stop the services
        proc.wait(timeout=30)
        _assert_all_gone(procs, ports)
    finally:
        kill_all(procs)


def test_team_mode_refuses_sqlite(settings):
    env = {**os.environ, "CLINFUSE_HOME": str(settings.home)}
    for key in ("CLINFUSE_PREFECT_DATABASE_URL", "CLINFUSE_MLFLOW_BACKEND_STORE_URI", "CLINFUSE_MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    done = subprocess.run([str(Path(sys.executable).parent / "clinfuse"), "serve", "--team"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "CLINFUSE_PREFECT_DATABASE_URL" in done.stdout and "CLINFUSE_MLFLOW_BACKEND_STORE_URI" in done.stdout
