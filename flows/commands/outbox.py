"""`clinfuse outbox`: what the results outbox holds and what was sent, and sending it to the PACS and the EHR."""

from __future__ import annotations

import typer

from flows.commands.console import make_console

outbox_app = typer.Typer(help="Results for the PACS (DICOM SR) and the EHR (FHIR RiskAssessment): list and send.",
                         no_args_is_help=True)


@outbox_app.command("status")
def status() -> None:
    """Count the outbox's SRs and bundles, and per destination how many were sent and failed (with reasons)."""
    from flows.commands.flow_runner import prepare
    from models.outbox.outbox import Ledger, pending_items

    console = make_console()
    settings = prepare(console)
    items = pending_items(settings.outbox_dir)
    console.print(f"{settings.outbox_dir}: {len(items['sr'])} SR file(s), {len(items['fhir'])} FHIR bundle(s)")
    ledger = Ledger(settings.outbox_dir).read()
    for destination in sorted(set(ledger["sent"]) | set(ledger["failed"])):
        failed = ledger["failed"].get(destination, {})
        console.print(f"{destination}: {len(ledger['sent'].get(destination, {}))} sent, {len(failed)} failed")
        for name, info in sorted(failed.items())[:10]:
            console.print(f"  {name}: {info['reason']}", soft_wrap=True)


@outbox_app.command("send")
def send() -> None:
    """Send every SR (STOW-RS) and bundle (FHIR POST) not yet sent; exit 1 when any failed (they stay queued)."""
    from flows.commands.flow_runner import prepare, run_flow

    console = make_console()
    settings = prepare(console)
    if not (settings.outbox_stow_url or settings.outbox_fhir_url):
        console.print("[red]no destination configured: set CLINFUSE_OUTBOX_STOW_URL (DICOMweb root) and/or "
                      "CLINFUSE_OUTBOX_FHIR_URL (FHIR base)[/red]")
        raise typer.Exit(2)
    from flows.flows.outbox import outbox_send_flow

    report = run_flow(console, "outbox: send", lambda: outbox_send_flow())
    for kind, label in (("sr", "SR"), ("fhir", "FHIR bundle")):
        console.print(f"{label}: {report.sent[kind]} sent, {report.already[kind]} sent before, "
                      f"{len(report.failed[kind])} failed")
        for reason in report.failed[kind][:10]:
            console.print(f"  [red]{reason}[/red]", soft_wrap=True)
    if report.n_failed:
        raise typer.Exit(1)
