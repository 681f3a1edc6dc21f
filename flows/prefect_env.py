"""Prefect's own configuration, derived from clinfuse's Settings.

Why: with no server configured, flows run against Prefect's ephemeral API,
whose database, result storage and cache records must live under
``CLINFUSE_HOME`` (not ``~/.prefect``) so two homes never share cache entries
and deleting a home forgets everything. With ``settings.prefect_api_url`` the
flows report to that server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.settings import Settings


def prefect_home(settings: Settings) -> Path:
    return settings.home / "prefect"


def prefect_env(settings: Settings) -> dict[str, str]:
    """Environment variables that point Prefect at this home (and the configured server, if any)."""
    home = prefect_home(settings)
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",  # a loaded 2-core machine needs minutes
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
    }
    if settings.prefect_api_url:
        env["PREFECT_API_URL"] = settings.prefect_api_url
    return env


def apply_prefect_env(settings: Settings) -> None:
    """Set the variables in this process before Prefect is imported (CLI entry points)."""
    prefect_home(settings).mkdir(parents=True, exist_ok=True)
    for key, value in prefect_env(settings).items():
        if key == "PREFECT_API_URL":
            os.environ.setdefault(key, value)  # an explicit PREFECT_API_URL in the shell wins
        else:
            os.environ[key] = value
    if serves_home_database(settings):
        from flows.prefect_template import seed_home

        seed_home(prefect_home(settings), settings.prefect_template_dir)


def serves_home_database(settings: Settings) -> bool:
    """Whether a Prefect server this process starts keeps its state in the home's SQLite database.

    True for the temporary server (no API URL) and for `clinfuse serve` without a database URL.
    """
    return not os.environ.get("PREFECT_API_URL") and settings.prefect_database_url is None


@contextmanager
def prefect_settings(settings: Settings) -> Iterator[None]:
    """Temporarily apply the variables when Prefect is already imported (tests, notebooks)."""
    from prefect.settings import temporary_settings

    prefect_home(settings).mkdir(parents=True, exist_ok=True)
    env = prefect_env(settings)
    updates: dict[str, object] = {
        "home": env["PREFECT_HOME"], "results.local_storage_path": env["PREFECT_LOCAL_STORAGE_PATH"],
        "server.analytics_enabled": False,
        "server.ephemeral.startup_timeout_seconds": int(env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]),
    }
    if settings.prefect_api_url:
        updates["api.url"] = settings.prefect_api_url
    with temporary_settings(updates=updates):
        yield


def settings_for(home: str | None = None) -> Settings:
    """The process settings, re-rooted at ``home`` when a flow run names one (tests, several sites)."""
    from flows.settings import get_settings

    base = get_settings()
    settings = base if home is None else base.model_copy(update={"home": Path(home).expanduser().resolve()})
    settings.ensure_dirs()
    return settings


def task_runner(settings: Settings, dask: bool):
    """Threads by default; with ``dask``, a DaskTaskRunner on ``settings.dask_address`` or a LocalCluster."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if not dask:
        return ThreadPoolTaskRunner(max_workers=4)
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    # Threads inside the worker: ingestion forks its own reader processes, which a daemonic Dask
    # worker process may not start (the process model is written down in ingestion/driver/reader_pool.py).
    return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": False, "threads_per_worker": 2})
