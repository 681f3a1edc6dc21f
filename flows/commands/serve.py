"""`clinfuse serve` (team mode on this machine) and `clinfuse deploy` (pools + deployments on a server)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import typer


def _term_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    prefect_port: int = typer.Option(4200, "--prefect-port", help="Port of the Prefect server (API and UI)."),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", help="Port of the MLflow tracking server."),
    dashboard_port: int = typer.Option(8501, "--dashboard-port", help="Port of the Streamlit dashboard."),
    deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="Create pools and deployments (schedules) on start."),
    source: Path | None = typer.Option(None, "--source", help="Export folder for the nightly ingest deployment."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Cohort CSV for the nightly ingest deployment."),
) -> None:
    """Start Prefect server, a worker per pool (cpu, gpu), MLflow server and the dashboard; Ctrl-C stops all."""
    from rich.console import Console
    from rich.table import Table

    from flows.prefect_env import apply_prefect_env
    from flows.serve import Services, dashboard, mlflow_server, prefect_server, worker
    from flows.settings import get_settings

    console = Console()
    settings = get_settings()
    settings.ensure_dirs()
    apply_prefect_env(settings)
    signal.signal(signal.SIGTERM, _term_to_interrupt)
    services = Services(settings.home / "logs")
    try:
        with console.status("[bold]starting Prefect server…"):
            api = services.start(prefect_server(settings, prefect_port)).url + "/api"
        os.environ["PREFECT_API_URL"] = api
        with console.status("[bold]starting MLflow server…"):
            mlflow_url = services.start(mlflow_server(settings, mlflow_port)).url
        from flows.deployments import deploy_all, ensure_pools

        limits = ensure_pools()
        if deploy:
            served = settings.model_copy(update={"mlflow_tracking_uri": mlflow_url, "prefect_api_url": api})
            deploy_all(served, str(source.resolve()) if source else None,
                       str(cohort.resolve()) if cohort else None)
        for pool in ("cpu", "gpu"):
            services.start(worker(settings, pool, api, mlflow_url))
        dash = dashboard(settings, dashboard_port, mlflow_url, api)
        if dash is not None:
            with console.status("[bold]starting the dashboard…"):
                services.start(dash)
        table = Table(title="clinfuse is serving (Ctrl-C stops everything)")
        table.add_column("service")
        table.add_column("where")
        for s in services.started:
            table.add_row(s.name, s.url or f"pool {s.name.split('-', 1)[1]} (limit {limits.get(s.name.split('-', 1)[1])})")
        table.add_row("logs", str(services.log_dir))
        console.print(table)
        console.print(f"Point clients here with CLINFUSE_PREFECT_API_URL={api} CLINFUSE_MLFLOW_TRACKING_URI={mlflow_url}")
        while True:
            dead = services.dead()
            if dead:
                console.print(f"[red]{', '.join(s.name for s in dead)} stopped; see {services.log_dir}. "
                              "Stopping the rest.[/red]")
                raise typer.Exit(1)
            time.sleep(2)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        services.stop()
        console.print("all services stopped.")


def deploy(
    source: Path | None = typer.Option(None, "--source", help="Export folder the nightly ingest and the pipeline read."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Cohort CSV for those runs; default SOURCE/cohort.csv."),
    schedules: bool = typer.Option(True, "--schedules/--no-schedules", help="Attach the cron schedules."),
) -> None:
    """Create work pools cpu/gpu (GPU concurrency limit) and every deployment with its cron schedule."""
    from rich.console import Console
    from rich.table import Table

    from flows.prefect_env import apply_prefect_env
    from flows.settings import get_settings

    console = Console()
    settings = get_settings()
    apply_prefect_env(settings)
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[red]no Prefect server configured: start one with `clinfuse serve` (or `prefect server "
                      "start`) and set CLINFUSE_PREFECT_API_URL=http://HOST:4200/api[/red]")
        raise typer.Exit(2)
    from flows.deployments import deploy_all, ensure_pools

    with console.status("[bold]creating pools and deployments…"):
        limits = ensure_pools()
        rows = deploy_all(settings, str(source.resolve()) if source else None,
                          str(cohort.resolve()) if cohort else None, schedules=schedules)
    table = Table(title=f"Deployments on {os.environ['PREFECT_API_URL']}")
    for col in ("deployment", "pool", "schedule (UTC)"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"Pools: cpu (limit {limits['cpu'] or 'none'}), gpu (limit {limits['gpu']}). Start workers with: "
                  "prefect worker start --pool cpu   and   prefect worker start --pool gpu")
    if not source:
        console.print("[yellow]ingest-nightly and pipeline were skipped: pass --source DIR to deploy them[/yellow]")
