"""`clinfuse audit verify|list|keygen|seal|anchor`: check the HMAC-chained audit trail, read it, key it."""

from __future__ import annotations

from pathlib import Path

import typer

audit_app = typer.Typer(help="The audit trail of the dashboard and user administration.", no_args_is_help=True)


def open_trail(settings):  # noqa: ANN001, ANN201 - Settings -> flows.access.audit.AuditLog
    """The configured trail, or exit 2 saying why (an unreadable key file, a key or anchor inside the home)."""
    try:
        return settings.audit_trail()
    except (OSError, ValueError) as exc:
        typer.echo(f"error: audit trail misconfigured: {exc}", err=True)
        raise typer.Exit(2) from None


def _log():  # noqa: ANN202 - flows.access.audit.AuditLog
    from flows.settings import get_settings

    return open_trail(get_settings())


@audit_app.command("verify")
def verify() -> None:
    """Recompute every hash and link; exit 1 and name each edited, removed or reordered entry."""
    log = _log()
    result = log.verify()
    if result.ok:
        anchored = f", {result.n_anchors} anchor(s) checked" if log.anchor is not None else ", no anchor sink"
        typer.echo(f"audit trail intact: {result.n_entries} entries ({log.path}){anchored}")
        if not result.keyed:
            typer.echo("warning: no audit key is configured, so the chain is unkeyed: anyone who can write the "
                       "home can rewrite it consistently. Run `clinfuse audit keygen FILE`, set "
                       "CLINFUSE_AUDIT_KEY_FILE, then `clinfuse audit seal` (see docs/OPERATIONS.md).", err=True)
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


@audit_app.command("keygen")
def keygen(out: Path = typer.Argument(..., help="Key file to create (mode 0600), outside CLINFUSE_HOME.")) -> None:
    """Write a new audit HMAC key; point CLINFUSE_AUDIT_KEY_FILE at it (the next entry seals the trail)."""
    from flows.access.audit_keys import generate_key, write_new_key_file
    from flows.settings import get_settings

    try:
        path = write_new_key_file(out, get_settings().home, generate_key())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path}; set CLINFUSE_AUDIT_KEY_FILE={path}")


@audit_app.command("seal")
def seal() -> None:
    """Vouch once for the entries written before the audit key was configured (run it before any keyed entry)."""
    log = _log()
    try:
        entry = log.seal()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"sealed entries 1-{entry['sealed']} at seq={entry['seq']}" if entry else
               "nothing to seal: the trail is empty")


@audit_app.command("anchor")
def anchor() -> None:
    """Append the trail's current head to the anchor sink now (run from cron between periodic anchors)."""
    log = _log()
    if log.anchor is None and log.syslog is None:
        typer.echo("error: no anchor sink configured (CLINFUSE_AUDIT_ANCHOR_FILE or CLINFUSE_AUDIT_ANCHOR_SYSLOG)",
                   err=True)
        raise typer.Exit(2)
    line = log.anchor_now()
    sinks = " and ".join(str(s) for s in (log.anchor, log.syslog) if s)
    typer.echo(f"anchored seq={line['seq']} in {sinks}" if line else "nothing to anchor: the trail is empty")
