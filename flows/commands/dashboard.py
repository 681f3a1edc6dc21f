"""`clinfuse dashboard`: serve the Streamlit clinician dashboard, on loopback unless named users exist.

Checked before any server starts, so a refusal leaves nothing listening:

* the address Streamlit will bind (``--host``, else ``CLINFUSE_BIND_HOST``): off loopback it
  needs named users, because the open demo and the shared password give every visitor
  every permission (the dashboard process checks the same again, defence in depth);
* the audit trail's key and anchor settings (an unreadable key would fail on the first audited click);
* the home's secrets at rest: a user store, pseudonym secret or key file readable by other
  accounts refuses the start (``clinfuse doctor --fix-permissions`` repairs it).
"""

from __future__ import annotations

import typer

from flows.names import DASHBOARD_PORT
from flows.serve.dashboard_process import streamlit_command

HOST_HELP = ("Address to bind; default CLINFUSE_BIND_HOST (127.0.0.1). Any address other than loopback "
             "(127.0.0.0/8, ::1, localhost) is refused until named users exist (`clinfuse users add`).")


def dashboard(
    port: int = typer.Option(DASHBOARD_PORT, help="TCP port to serve on."),
    host: str | None = typer.Option(None, help=HOST_HELP),
) -> None:
    """Serve the clinician dashboard (worklist, patient viewers, model registry, batch runs) until Ctrl-C."""
    from flows.access.exposure import describe_mode, exposure_refusal, sign_in_mode
    from flows.access.permissions import loose
    from flows.access.reviews import access_db
    from flows.access.users import count_users
    from flows.commands.console import make_console
    from flows.settings import get_settings

    settings = get_settings()
    bind = host or settings.bind_host
    console = make_console()
    named = count_users(access_db(settings.access_dir)) > 0
    refusal = exposure_refusal([bind], named)
    if refusal is not None:
        typer.echo(refusal, err=True)
        raise typer.Exit(2)
    from flows.commands.audit import open_trail

    open_trail(settings)  # an unreadable audit key or an anchor inside the home refuses now, not on first click
    found = loose(settings.private_paths())
    for entry in found:
        typer.echo(("refused: " if entry.item.secret else "warning: ") + entry.message(), err=True)
    if any(entry.item.secret for entry in found):
        typer.echo("run `clinfuse doctor --fix-permissions` (or chmod them) and start again", err=True)
        raise typer.Exit(2)
    settings.layout.ensure_root()  # a home this command creates is 0700 from the start
    password = settings.dashboard_password is not None and bool(settings.dashboard_password.get_secret_value())
    console.print(describe_mode(sign_in_mode(named, password)))
    console.print(f"clinfuse dashboard on http://{bind}:{port}  (data: {settings.home})")
    from flows.serve.process_group import run_child

    raise typer.Exit(run_child(streamlit_command(bind, port)))
