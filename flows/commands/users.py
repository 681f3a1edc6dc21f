"""`clinfuse users add|disable|reset|list|keygen|rotate-key`: named dashboard accounts and the re-identification key.

Passwords are read with a hidden prompt (or one line of stdin for scripts with
``--password-stdin``), hashed with argon2id and never printed or logged. Every
change is written to the audit trail under the operating-system user who ran it.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from flows.access.users import UserStore

users_app = typer.Typer(help="Named dashboard users and roles (clinician, analyst, admin).", no_args_is_help=True)

ROLE_HELP = "clinician (worklist, patient view, re-identification, review), analyst (pseudonymous worklist, " \
            "model, batch) or admin (users, audit trail)"


def _stores():  # noqa: ANN202 - (settings, UserStore, AuditLog)
    """The settings, the user store (created 0600 in a 0700 home when missing) and the audit trail."""
    from flows.access.reviews import access_db
    from flows.access.users import UserStore
    from flows.commands.audit import open_trail
    from flows.settings import get_settings

    settings = get_settings()
    trail = open_trail(settings)  # a misconfigured key refuses before anything is created
    settings.layout.ensure_root()
    store = UserStore(access_db(settings.access_dir), max_failures=settings.sign_in_max_failures,
                      lockout_s=settings.sign_in_lockout_s)
    return settings, store, trail


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _change(action: str, detail: str, done: str, change: Callable[[UserStore], None]) -> None:
    """Apply one change to the user store, audit it as the operator, say what was done (exit 2 with the reason if refused)."""
    _, store, audit = _stores()
    try:
        change(store)
    except (KeyError, ValueError) as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    audit.append(_operator(), "admin", action, detail=detail)
    typer.echo(done)


FIRST_USER_NOTICE = ("note: this is the first named user. Once it exists the dashboard's open local demo (and any "
                     "shared CLINFUSE_DASHBOARD_PASSWORD) ends: every visitor must sign in with their own name and "
                     "password, and open sessions are signed out.")
ADMIN_FIRST_TIP = ("tip: make an admin first (`clinfuse users add NAME --role admin`): only an admin can open the "
                   "Admin page (users and the audit trail).")


def _named_users() -> int:
    """How many named users the home has, without creating the user store."""
    from flows.access.reviews import access_db
    from flows.access.users import count_users
    from flows.settings import get_settings

    return count_users(access_db(get_settings().access_dir))


@users_app.command("add")
def add(username: str = typer.Argument(..., help="Lower-case user name, e.g. a.smith."),
        role: str = typer.Option(..., "--role", "-r", help=ROLE_HELP),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin.")) -> None:
    """Create a user; the password is asked for twice (hidden) and stored only as an argon2id hash.

    The first user ends the open local demo: the command says so (and suggests an admin first).
    """
    first = _named_users() == 0
    if first:
        typer.echo(FIRST_USER_NOTICE, err=True)
        if role != "admin":
            typer.echo(ADMIN_FIRST_TIP, err=True)
    _change("user_add", f"added {username} as {role}", f"added {username} ({role})",
            lambda store: store.add(username, role, _password(password_stdin)))
    if first:
        typer.echo("sign-in mode is now: named users")


@users_app.command("disable")
def disable(username: str = typer.Argument(..., help="The user to lock out.")) -> None:
    """Refuse every future sign-in of a user (their audit entries and reviews stay)."""
    _change("user_disable", f"disabled {username}", f"disabled {username}", lambda store: store.disable(username))


@users_app.command("reset")
def reset(username: str = typer.Argument(...),
          role: str | None = typer.Option(None, "--role", "-r", help="Also change the role: " + ROLE_HELP),
          password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin.")) -> None:
    """Set a new password (and optionally role); re-enables the user and clears their failed sign-ins."""
    _change("user_reset", f"reset {username}" + (f" as {role}" if role else ""), f"reset {username}",
            lambda store: store.reset(username, _password(password_stdin), role))


@users_app.command("list")
def list_users() -> None:
    """Every user with role and state (never a password or hash). Reads only: creates no user store."""
    if _named_users() == 0:
        typer.echo("no named users: the dashboard runs as the open local demo (or behind the shared password), "
                   "loopback only; `clinfuse users add NAME --role admin` creates the first", err=True)
        return
    _, store, _ = _stores()
    for user in store.list():
        typer.echo(f"{user.username}\t{user.role}\t{'disabled' if user.disabled else 'active'}")


@users_app.command("keygen")
def keygen(out: Path = typer.Argument(..., help="Key file to create (mode 0600), outside CLINFUSE_HOME.")) -> None:
    """Write a new re-identification (Fernet) key; point CLINFUSE_REID_KEY_FILE at it."""
    from flows.settings import get_settings
    from ingestion.deid.reidentify import generate_key

    settings = get_settings()
    out = out.expanduser().resolve()
    if out.is_relative_to(settings.home):
        typer.echo(f"error: {out} is inside CLINFUSE_HOME; keep the key apart from the data", err=True)
        raise typer.Exit(2)
    if out.exists():
        typer.echo(f"error: {out} exists; a new key would orphan the map it opens (use rotate-key)", err=True)
        raise typer.Exit(2)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(generate_key() + b"\n")
    typer.echo(f"wrote {out}; set CLINFUSE_REID_KEY_FILE={out}")


@users_app.command("rotate-key")
def rotate_key(new_key_file: Path = typer.Argument(..., help="File with the new key (from `clinfuse users keygen`).")) -> None:
    """Re-encrypt the re-identification map under a new key (the configured key opens it first)."""
    from ingestion.deid.reidentify import ReidKeyError
    from ingestion.deid.reidentify import rotate_key as rotate

    settings, _, audit = _stores()
    old = settings.reid_key_bytes()
    if old is None or not settings.reid_map_path.exists():
        typer.echo("error: no key configured or no map written yet; nothing to rotate", err=True)
        raise typer.Exit(2)
    try:
        n = rotate(settings.reid_map_path, old, new_key_file.expanduser().read_bytes().strip())
    except ReidKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    audit.append(_operator(), "admin", "key_rotate", detail="re-identification key rotated")
    typer.echo(f"rotated: {n} pseudonym(s) now under the new key; set CLINFUSE_REID_KEY_FILE={new_key_file}")
