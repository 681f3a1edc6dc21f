"""`clinfuse audit verify|list`: check the hash-chained audit trail, or read it."""

from __future__ import annotations

import typer

audit_app = typer.Typer(help="The audit trail of the dashboard and user administration.", no_args_is_help=True)


def _log():  # noqa: ANN202 - flows.access.audit.AuditLog
    from flows.access.audit import AuditLog
    from flows.access.reviews import audit_path
    from flows.settings import get_settings

    return AuditLog(audit_path(get_settings().access_dir))


@audit_app.command("verify")
def verify() -> None:
    """Recompute every hash and link; exit 1 and name each edited, removed or reordered entry."""
    log = _log()
    result = log.verify()
    if result.ok:
        typer.echo(f"audit trail intact: {result.n_entries} entries ({log.path})")
        return
    for problem in result.problems:
        typer.echo(f"{problem.kind}: {problem.message}")
    typer.echo(f"audit trail BROKEN: {len(result.problems)} problem(s) in {result.n_entries} entries ({log.path})",
               err=True)
    raise typer.Exit(1)


@audit_app.command("list")
def list_entries(user: str | None = typer.Option(None, help="Only this user."),
                 action: str | None = typer.Option(None, help="Only this action (e.g. reveal_mrn)."),
                 patient: str | None = typer.Option(None, help="Only this pseudonymous patient id."),
                 last: int = typer.Option(50, help="Show the newest N matching entries.")) -> None:
    """The newest entries, tab-separated: seq, time, user, role, action, patient, detail."""
    rows = [e for e in _log().entries()
            if (user is None or e.get("user") == user) and (action is None or e.get("action") == action)
            and (patient is None or e.get("patient_id") == patient)]
    for e in rows[-last:]:
        typer.echo("\t".join(str(e.get(k) or "") for k in ("seq", "at", "user", "role", "action", "patient_id",
                                                            "detail")))
