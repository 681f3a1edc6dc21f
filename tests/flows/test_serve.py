"""Services: started in their own process groups, waited for, and all stopped (children included)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from pydantic import SecretStr

from flows.serve.team import Service, Services, mlflow_server, prefect_server, team_problems, wait_http
from tests.conftest import free_port


def _http_service(port: int, name: str = "web") -> Service:
    # A parent that also starts a child: stopping must take the whole group.
    code = (f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            f"import http.server; http.server.HTTPServer(('127.0.0.1', {port}), "
            f"http.server.SimpleHTTPRequestHandler).serve_forever()")
    return Service(name, [sys.executable, "-c", code], health_url=f"http://127.0.0.1:{port}/",
                   url=f"http://127.0.0.1:{port}")


def test_start_waits_for_health_and_stop_kills_the_group(tmp_path):
    services = Services(tmp_path / "logs", startup_timeout_s=60)
    with services:
        svc = services.start(_http_service(free_port()))
        time.sleep(0.5)
        group = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == svc.process.pid]
        assert len(group) >= 2  # the server and its child
    for proc in group:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert services.started == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _slow_http_service(port: int, name: str, boot_s: float, marks: Path) -> Service:
    """An HTTP server that sleeps ``boot_s`` before it listens (a server doing its migrations), noting when."""
    code = (f"import time, http.server, pathlib; m = pathlib.Path({str(marks)!r}); "
            f"(m / '{name}.boot').write_text(repr(time.time())); time.sleep({boot_s}); "
            f"s = http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler); "
            f"(m / '{name}.up').write_text(repr(time.time())); s.serve_forever()")
    return Service(name, [sys.executable, "-c", code], health_url=f"http://127.0.0.1:{port}/",
                   url=f"http://127.0.0.1:{port}")


def test_start_together_boots_side_by_side_and_runs_meanwhile_while_they_boot(tmp_path):
    """Every server has begun booting before any is up; ``meanwhile`` runs once all are spawned."""
    seen = []
    slow = [_slow_http_service(free_port(), f"slow{i}", 2.0, tmp_path) for i in range(3)]
    with Services(tmp_path / "logs", startup_timeout_s=120) as services:
        services.start_together(slow, meanwhile=lambda: seen.append([s.process.poll() for s in slow]))
        assert seen == [[None, None, None]]  # every one spawned (and still alive) when meanwhile ran
        for svc in slow:
            wait_http(svc.health_url, 1)
        boot = [float((tmp_path / f"slow{i}.boot").read_text()) for i in range(3)]
        up = [float((tmp_path / f"slow{i}.up").read_text()) for i in range(3)]
        assert max(boot) < min(up)  # side by side: one after the other, slow1 would boot after slow0 is up
        assert [s.name for s in services.started] == ["slow0", "slow1", "slow2"]


def test_a_service_that_dies_is_reported_with_its_log(tmp_path):
    services = Services(tmp_path / "logs", startup_timeout_s=30)
    bad = Service("broken", [sys.executable, "-c", "print('cannot bind'); raise SystemExit(3)"],
                  health_url=f"http://127.0.0.1:{free_port()}/")
    with services, pytest.raises(RuntimeError, match="(?s)broken did not start.*cannot bind"):
        services.start(bad)


def test_wait_http_times_out_with_reason():
    with pytest.raises(TimeoutError, match="did not answer"):
        wait_http(f"http://127.0.0.1:{free_port()}/", timeout_s=2)


def test_commands_bind_the_configured_host(settings):
    p = prefect_server(settings, 4321)
    assert p.argv[-4:] == ["--host", "127.0.0.1", "--port", "4321"]
    assert p.env["PREFECT_HOME"].startswith(str(settings.home))
    m = mlflow_server(settings, 5001)
    assert m.env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:///" + str(settings.home / "mlflow.db")
    assert "127.0.0.1" in m.argv


def test_database_urls_stay_out_of_argv_and_team_mode_needs_postgres(settings):
    assert team_problems(settings) and len(team_problems(settings)) == 2
    team = settings.model_copy(update={
        "prefect_database_url": SecretStr("postgresql+asyncpg://prefect:pw@127.0.0.1:5433/prefect"),
        "mlflow_backend_store_uri": SecretStr("postgresql://mlflow:pw@127.0.0.1:5433/mlflow")})
    assert team_problems(team) == []
    p, m = prefect_server(team, 4321), mlflow_server(team, 5001)
    assert p.env["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@127.0.0.1:5433/prefect")
    assert m.env["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://mlflow:pw@127.0.0.1:5433/mlflow"
    assert not any("pw@" in a for a in [*p.argv, *m.argv])  # a password in argv is visible to every user
