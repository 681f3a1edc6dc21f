"""Team mode on one machine: Prefect server, a worker per pool, MLflow server and the dashboard.

Each service is a child process in its own process group (so a worker's
flow-run subprocesses stop with it); :class:`Services` starts them in order,
waits until each answers on its health URL, and stops them all (SIGTERM, then
SIGKILL after a grace period) on exit, Ctrl-C, SIGTERM or SIGHUP; if this
process is killed outright they stop too (see :mod:`flows.serve.process_group`). Everything binds to
``settings.bind_host`` (127.0.0.1 by default).

The servers keep their state under ``CLINFUSE_HOME``: Prefect's SQLite database
in ``prefect/``, MLflow's in ``mlflow.db`` (the same store embedded runs used,
so earlier runs and models show up) with artifacts in ``mlartifacts/``.
PostgreSQL instead: see docs/OPERATIONS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flows.prefect_env import prefect_env
from flows.serve.dashboard_process import APP, streamlit_command
from flows.serve.process_group import ProcessGroup
from flows.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Service:
    """One child process: its command, environment additions and the URL that says it is up."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    url: str | None = None
    log_path: Path | None = None
    process: subprocess.Popen | None = None


def wait_http(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 2xx; raise with a reason when the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own local server
                if 200 <= resp.status < 300:
                    return
        except Exception as exc:  # noqa: BLE001 - keep polling
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s ({last})")


def prefect_server(settings: Settings, port: int) -> Service:
    """``prefect server start``; its database is ``settings.prefect_database_url`` (PostgreSQL) or SQLite."""
    host = settings.bind_host
    env = {**prefect_env(settings), "PREFECT_UI_API_URL": f"http://{host}:{port}/api"}
    if settings.prefect_database_url is not None:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.prefect_database_url.get_secret_value()
    return Service("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)],
                   env=env, health_url=f"http://{host}:{port}/api/health", url=f"http://{host}:{port}")


def worker(settings: Settings, pool: str, api_url: str, mlflow_uri: str | None = None) -> Service:
    env = {**prefect_env(settings), "PREFECT_API_URL": api_url, "CLINFUSE_HOME": str(settings.home),
           "CLINFUSE_PREFECT_API_URL": api_url}
    if mlflow_uri:
        env["CLINFUSE_MLFLOW_TRACKING_URI"] = mlflow_uri
    return Service(f"worker-{pool}", [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                                      "--name", f"clinfuse-{pool}-{os.uname().nodename}"], env=env)


def mlflow_server(settings: Settings, port: int) -> Service:
    host = settings.bind_host
    artifacts = settings.mlflow_artifact_root or str(settings.home / "mlartifacts")
    backend = backend_store_uri(settings)
    # The URI travels in the environment (MLflow reads MLFLOW_BACKEND_STORE_URI), not argv: it holds a password.
    # One server process: uvicorn's multi-worker supervisor restarts workers that answer its health
    # check late, which on a busy machine never ends; one process serves a team's tracking load.
    return Service("mlflow-server", [str(BIN / "mlflow"), "server", "--host", host, "--port", str(port),
                                     "--workers", "1", "--artifacts-destination", artifacts],
                   env={"MLFLOW_BACKEND_STORE_URI": backend},
                   health_url=f"http://{host}:{port}/health", url=f"http://{host}:{port}")


def backend_store_uri(settings: Settings) -> str:
    """The MLflow server's store: the configured one, a database tracking URI, or the home's SQLite.

    A bare ``postgresql://`` gets the psycopg2 driver clinfuse installs (SQLAlchemy 2.1 would
    otherwise pick psycopg 3, and MLflow's job locks support psycopg2).
    """
    if settings.mlflow_backend_store_uri is not None:
        uri = settings.mlflow_backend_store_uri.get_secret_value()
    elif (settings.mlflow_tracking_uri or "").startswith(("postgresql", "mysql", "sqlite")):
        uri = str(settings.mlflow_tracking_uri)
    else:
        return f"sqlite:///{settings.home / 'mlflow.db'}"
    return "postgresql+psycopg2://" + uri[len("postgresql://"):] if uri.startswith("postgresql://") else uri


def team_problems(settings: Settings) -> list[str]:
    """Why these settings are not a team set-up (both servers on PostgreSQL); empty when they are."""
    problems = []
    prefect_db = settings.prefect_database_url.get_secret_value() if settings.prefect_database_url else ""
    if not prefect_db.startswith("postgresql+asyncpg://"):
        problems.append("CLINFUSE_PREFECT_DATABASE_URL must be postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB")
    if not backend_store_uri(settings).startswith("postgresql"):
        problems.append("CLINFUSE_MLFLOW_BACKEND_STORE_URI must be postgresql://USER:PASSWORD@HOST:PORT/DB")
    return problems


def dashboard(settings: Settings, port: int, mlflow_url: str | None, api_url: str | None) -> Service | None:
    if not APP.is_file():
        return None
    host = settings.bind_host
    env = {"CLINFUSE_HOME": str(settings.home)}
    if mlflow_url:
        env["CLINFUSE_MLFLOW_TRACKING_URI"] = mlflow_url
    if api_url:
        env["CLINFUSE_PREFECT_API_URL"] = api_url
    return Service("dashboard", streamlit_command(host, port), env=env, health_url=f"http://{host}:{port}/_stcore/health", url=f"http://{host}:{port}")


class Services:
    """Start services in order, stop them all in reverse; usable as a context manager.

    The children belong to a :class:`~flows.serve.process_group.ProcessGroup`: each in its
    own process group, stopped with SIGTERM then SIGKILL after ``grace_s``, and
    stopped by a watchdog (and, on Linux, by the kernel) if this process is killed.
    """

    def __init__(self, log_dir: Path, startup_timeout_s: float = 180.0, grace_s: float = 15.0) -> None:
        self.log_dir = Path(log_dir)
        self.startup_timeout_s = startup_timeout_s
        self.group = ProcessGroup(grace_s=grace_s)
        self.started: list[Service] = []

    def start(self, service: Service) -> Service:
        """Spawn ``service`` and wait until its health URL answers."""
        return self.start_together([service])[0]

    def start_together(self, services: list[Service], meanwhile: Callable[[], None] | None = None) -> list[Service]:
        """Spawn every service first, run ``meanwhile`` (if any), then wait for each: servers boot side by side.

        Their start-ups are mostly imports and database migrations; one after the
        other they cost the sum of those, together about the longest one.
        """
        for service in services:
            self._spawn(service)
        if meanwhile is not None:
            meanwhile()
        for service in services:
            self._wait_healthy(service)
        return services

    def _spawn(self, service: Service) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        service.log_path = self.log_dir / f"{service.name}.log"
        env = {**os.environ, **service.env}
        with open(service.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            service.process = self.group.spawn(service.argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        self.started.append(service)

    def _wait_healthy(self, service: Service) -> None:
        if not service.health_url:
            return
        try:
            wait_http(service.health_url, self.startup_timeout_s, service.process)
        except (RuntimeError, TimeoutError) as exc:
            tail = service.log_path.read_text(errors="replace")[-2000:] if service.log_path else ""
            raise RuntimeError(f"{service.name} did not start: {exc}\n--- {service.log_path} ---\n{tail}") from exc

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every process group (newest first), then SIGKILL what is still alive after the grace period."""
        self.group.stop(grace_s)
        self.started.clear()

    def dead(self) -> list[Service]:
        return [s for s in self.started if s.process is not None and s.process.poll() is not None]

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
