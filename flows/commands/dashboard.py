"""`clinfuse dashboard`: serve the Streamlit clinician dashboard, bound to loopback unless told otherwise."""

from __future__ import annotations

import typer

from flows.names import DASHBOARD_PORT
from flows.serve.dashboard_process import streamlit_command


def dashboard(
    port: int = typer.Option(DASHBOARD_PORT, help="TCP port to serve on."),
    host: str | None = typer.Option(
        None, help="Address to bind; default settings.bind_host (127.0.0.1). Set a password before widening it."),
) -> None:
    """Serve the clinician dashboard (worklist, patient viewers, model registry, batch runs) until Ctrl-C."""
    from flows.commands.console import make_console
    from flows.settings import get_settings

    settings = get_settings()
    bind = host or settings.bind_host
    console = make_console()
    if bind not in ("127.0.0.1", "localhost", "::1") and settings.dashboard_password is None:
        console.print("[yellow]Serving beyond loopback without CLINFUSE_DASHBOARD_PASSWORD: anyone who can "
                      "reach this port sees the predictions.[/yellow]")
    console.print(f"clinfuse dashboard on http://{bind}:{port}  (data: {settings.home})")
    from flows.serve.process_group import run_child

    raise typer.Exit(run_child(streamlit_command(bind, port)))

