"""`clinfuse serve` (team mode on this machine) and `clinfuse deploy` (pools + deployments on a server)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from flows.names import DASHBOARD_PORT


def _start_all(services: Any, settings: Any, ports: tuple[int, int, int], deploy: bool,
               source: Path | None, cohort: Path | None) -> tuple[str, str, dict[str, int | None]]:
    """Prefect server, MLflow server and dashboard side by side; then pools (+ deployments) and a worker per pool.

    The three servers do not need each other to boot (the dashboard only calls the others when a page
    loads), so they start together; the pools and workers need the Prefect API, so they come after it.
    """
    from flows.commands.console import make_console
    from flows.serve.team import dashboard, mlflow_server, prefect_server, worker

    prefect, mlflow = prefect_server(settings, ports[0]), mlflow_server(settings, ports[1])
    api, mlflow_url = prefect.url + "/api", mlflow.url
    dash = dashboard(settings, ports[2], mlflow_url, api)
    from flows.serve.deployments import deploy_all, ensure_automations, ensure_pools, preload

    os.environ["PREFECT_API_URL"] = api  # before Prefect is imported: its settings are read once, at import
    with make_console().status("[bold]starting Prefect server, MLflow server and the dashboard…"):
        services.start_together([prefect, mlflow, *([dash] if dash is not None else [])],
                                meanwhile=lambda: preload(flows=deploy))
    if settings.prefect_database_url is None:  # its SQLite database, migrated and idle: the machine's template
        from flows.prefect_env import prefect_home
        from flows.prefect_template import save_template

        save_template(prefect_home(settings), settings.prefect_template_dir)

    limits = ensure_pools()
    ensure_automations()
    if deploy:
        served = settings.model_copy(update={"mlflow_tracking_uri": mlflow_url, "prefect_api_url": api})
        deploy_all(served, str(source.resolve()) if source else None, str(cohort.resolve()) if cohort else None)
    for pool in ("cpu", "gpu"):
        services.start(worker(settings, pool, api, mlflow_url))
    return api, mlflow_url, limits


def _supervise(services: Any) -> None:
    """Return never: raise typer.Exit(1) as soon as a service dies (the caller's finally stops the rest)."""
    from flows.commands.console import make_console

    while True:
        dead = services.dead()
        if dead:
            make_console().print(f"[red]{', '.join(s.name for s in dead)} stopped; see {services.log_dir}. "
                            "Stopping the rest.[/red]")
            raise typer.Exit(1)
        time.sleep(1)


def serve(
    prefect_port: int = typer.Option(4200, "--prefect-port", help="Port of the Prefect server (API and UI)."),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", help="Port of the MLflow tracking server."),
    dashboard_port: int = typer.Option(DASHBOARD_PORT, "--dashboard-port", help="Port of the Streamlit dashboard."),
    deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="Create pools and deployments (schedules) on start."),
    source: Path | None = typer.Option(None, "--source", help="Export folder for the nightly ingest deployment."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Cohort CSV for the nightly ingest deployment."),
    team: bool = typer.Option(False, "--team", help="Refuse to start unless both servers keep their state in "
                              "PostgreSQL (CLINFUSE_PREFECT_DATABASE_URL, CLINFUSE_MLFLOW_BACKEND_STORE_URI)."),
) -> None:
    """Start Prefect server, a worker per pool (cpu, gpu), MLflow server and the dashboard; Ctrl-C stops all.

    SIGINT, SIGTERM and SIGHUP stop every service (SIGTERM, then SIGKILL after 15 s) and exit 0; a service
    that dies on its own stops the rest and exits 1. If this process is killed, the services stop too.
    """
    from rich.table import Table

    from flows.commands.console import make_console
    from flows.prefect_env import apply_prefect_env
    from flows.serve.process_group import Stop, stop_on_signals
    from flows.serve.team import Services, team_problems
    from flows.settings import get_settings

    console = make_console()
    settings = get_settings()
    problems = team_problems(settings) if team else []
    if problems:
        console.print("[red]--team needs both servers on PostgreSQL:[/red]\n  " + "\n  ".join(problems))
        raise typer.Exit(2)
    settings.ensure_dirs()
    apply_prefect_env(settings)
    services = Services(settings.home / "logs")
    with stop_on_signals():
        try:
            api, mlflow_url, limits = _start_all(services, settings, (prefect_port, mlflow_port, dashboard_port),
                                                 deploy, source, cohort)
            table = Table(title="clinfuse is serving (Ctrl-C stops everything)")
            table.add_column("service")
            table.add_column("where")
            for s in services.started:
                pool = s.name.split("-", 1)[-1]
                table.add_row(s.name, s.url or f"pool {pool} (limit {limits.get(pool)})")
            table.add_row("logs", str(services.log_dir))
            table.add_row("databases", "PostgreSQL" if team else "SQLite (or as configured)")
            console.print(table)
            console.print(f"Point clients here with CLINFUSE_PREFECT_API_URL={api} "
                          f"CLINFUSE_MLFLOW_TRACKING_URI={mlflow_url}")
            _supervise(services)
        except Stop as stop:
            console.print(f"stopping ({stop})…")
        finally:
            services.stop()
            console.print("all services stopped.")


def deploy(
    source: Path | None = typer.Option(None, "--source", help="Export folder the nightly ingest and the pipeline read."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Cohort CSV for those runs; default SOURCE/cohort.csv."),
    schedules: bool = typer.Option(True, "--schedules/--no-schedules", help="Attach the cron schedules."),
) -> None:
    """Create work pools cpu/gpu (GPU concurrency limit) and every deployment with its cron schedule."""
    from rich.table import Table

    from flows.commands.console import make_console
    from flows.prefect_env import apply_prefect_env
    from flows.settings import get_settings

    console = make_console()
    settings = get_settings()
    apply_prefect_env(settings)
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[red]no Prefect server configured: start one with `clinfuse serve` (or `prefect server "
                      "start`) and set CLINFUSE_PREFECT_API_URL=http://HOST:4200/api[/red]")
        raise typer.Exit(2)
    from flows.serve.deployments import deploy_all, ensure_automations, ensure_pools

    with console.status("[bold]creating pools and deployments…"):
        limits = ensure_pools()
        ensure_automations()
        rows = deploy_all(settings, str(source.resolve()) if source else None,
                          str(cohort.resolve()) if cohort else None, schedules=schedules)
    table = Table(title=f"Deployments on {os.environ['PREFECT_API_URL']}")
    for col in ("deployment", "pool", "schedule (UTC)"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    prefect_cli = installed_command("prefect")
    console.print(f"Pools: cpu (limit {limits['cpu'] or 'none'}), gpu (limit {limits['gpu']}). Start workers with: "
                  f"{prefect_cli} worker start --pool cpu   and   {prefect_cli} worker start --pool gpu")
    if not source:
        console.print("[yellow]ingest-nightly and pipeline were skipped: pass --source DIR to deploy them[/yellow]")


def installed_command(name: str) -> str:
    """How to call a command installed beside this Python, as a person can paste it from here.

    ``prefect`` is on the PATH only in an activated virtualenv; the path of the interpreter running
    clinfuse names the one that has it (relative when it is under the current folder, as ``.venv/bin/``).
    """
    import shutil
    import sys

    beside = Path(sys.executable).parent / name
    if not beside.exists():
        return shutil.which(name) or name
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)
