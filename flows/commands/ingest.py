"""`clinfuse ingest`: read a source folder (+ cohort table) into the manifest, arrays and cohort of CLINFUSE_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from flows.commands.console import make_console

MAX_LISTED = 40
"""Quarantined items and join problems printed in full; the manifest holds the rest."""


def ingest(
    source: Path | None = typer.Option(None, "--source", help="Folder to ingest: DICOM (folders/.zip), EEG files, notes."),
    pacs: str | None = typer.Option(
        None, "--pacs", help="Pull new series from this DICOMweb PACS (e.g. http://pacs:8042/dicom-web), or over "
                             "DIMSE from dicom://HOST:PORT/CALLED_AE (our AE: CLINFUSE_PACS_AE_TITLE), instead of "
                             "--source; credentials from CLINFUSE_PACS_USERNAME/CLINFUSE_PACS_PASSWORD."),
    cohort: Path | None = typer.Option(
        None, "--cohort", help="Cohort CSV (patient_id, label, optional demographics/labs); skipped when absent."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Worker processes reading files in parallel; default settings.workers."),
    exclude: list[Path] = typer.Option(
        [], "--exclude", help="File or folder under SOURCE that is not clinical input (repeatable), "
                              "e.g. a phantom's answers.parquet."),
    force: bool = typer.Option(False, "--force", help="Run even when nothing changed since the last successful run."),
) -> None:
    """Ingest and de-identify every file under SOURCE; bad files are quarantined with a reason, never dropped.

    Runs the ingest flow. Re-running on unchanged input does no work (items are keyed by content hash), and
    when no file, option or setting changed since the last successful run it does not even start the flow.
    """
    from flows.commands.flow_runner import prepare, run_flow
    from flows.commands.up_to_date import ingest_check, inputs_now, nothing_to_do, remember
    from flows.settings import get_settings

    console = make_console()
    if (source is None) == (pacs is None):
        console.print("[red]pass either --source DIR (a folder) or --pacs URL (a DICOMweb PACS)[/red]")
        raise typer.Exit(2)
    if cohort is not None and not cohort.is_file():
        console.print(f"[red]cohort table {cohort} does not exist; pass --cohort FILE.csv or leave it out[/red]")
        raise typer.Exit(2)
    if pacs is not None:
        _ingest_pacs(console, pacs, cohort)
        return
    if not source.is_dir():
        console.print(f"[red]source folder {source} does not exist or is not a folder; pass --source DIR[/red]")
        raise typer.Exit(2)
    check = ingest_check(get_settings(), source, cohort, exclude, workers)
    if nothing_to_do(console, get_settings(), check, force):
        return
    before = inputs_now(check)
    prepare(console)
    from flows.flows.ingest import ingest_flow

    report = run_flow(console, "ingest", lambda: ingest_flow(
        source=str(source.resolve()), cohort_csv=str(cohort.resolve()) if cohort else None,
        exclude=[str(p.resolve()) for p in exclude] or None, workers=workers))
    print_report(console, report)
    remember(get_settings().home, check, before)


def _ingest_pacs(console: Console, url: str, cohort: Path | None) -> None:
    """``--pacs``: the PACS ingest flow; credentials only from the environment, never echoed."""
    from urllib.parse import urlsplit

    from flows.commands.flow_runner import prepare, run_flow
    from ingestion.pacs import PacsError

    if urlsplit(url).password:
        console.print("[red]the PACS URL carries a password: put it in CLINFUSE_PACS_PASSWORD (and the user in "
                      "CLINFUSE_PACS_USERNAME), never in the URL, which shells and logs keep[/red]")
        raise typer.Exit(2)
    prepare(console)
    from flows.flows.pacs import pacs_ingest_flow

    try:
        result = run_flow(console, "PACS pull + ingest", lambda: pacs_ingest_flow(
            url=url, cohort_csv=str(cohort.resolve()) if cohort else None))
    except PacsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    pulled = result["pull"]
    console.print(f"{pulled.pacs}: {pulled.series_found} series found, {pulled.series_pulled} pulled "
                  f"({pulled.instances_written} instances, {pulled.bytes_written / 1e6:.1f} MB), "
                  f"{pulled.series_current} already current; {pulled.elapsed_s:.1f} s.")
    if result["ingest"] is not None:
        print_report(console, result["ingest"])


def print_report(console: Console, report: Any) -> None:
    """The run summary of an ``ingestion.driver.ingest.IngestReport``: counts per modality, quarantined items with
    reasons, cohort join problems."""
    counts = Table(title=f"Ingest of {report.source}", show_lines=False)
    for column in ("modality", "ok", "quarantined"):
        counts.add_column(column, justify="left" if column == "modality" else "right")
    for modality, by_status in report.counts.items():
        counts.add_row(modality, str(by_status.get("ok", 0)), str(by_status.get("quarantined", 0)))
    console.print(counts)
    console.print(f"{report.n_files} files; {report.new} item(s) read now, {report.skipped} already in the manifest, "
                  f"{report.duplicate_files} duplicate file(s); {report.elapsed_s:.1f} s. "
                  f"Manifest: {report.manifest_path}")

    bad = list(report.quarantined) + list(report.cohort_quarantined)
    if bad:
        table = Table(title=f"Quarantined ({len(bad)})")
        table.add_column("source")
        table.add_column("modality")
        table.add_column("reason", overflow="fold")
        for item in bad[:MAX_LISTED]:
            table.add_row(item.source_uri, item.modality, item.reason)
        console.print(table)
        if len(bad) > MAX_LISTED:
            console.print(f"... and {len(bad) - MAX_LISTED} more: see the manifest's status/reason columns.")

    join = report.cohort
    if join is not None:
        table = Table(title="Cohort join", show_header=False)
        table.add_row("patients in cohort table", str(join.n_cohort))
        table.add_row("patients with files", str(join.n_with_files))
        table.add_row("cohort patients with every modality", str(join.complete))
        table.add_row("in files but not in cohort (kept, flagged)", _listing(join.in_files_not_in_cohort))
        table.add_row("in cohort but without any file", _listing(join.in_cohort_without_files))
        if report.cohort_dropped_columns:
            table.add_row("identifier-like columns dropped", ", ".join(report.cohort_dropped_columns))
        console.print(table)


def _listing(ids: tuple[str, ...], shown: int = 8) -> str:
    if not ids:
        return "0"
    more = f" (+{len(ids) - shown} more)" if len(ids) > shown else ""
    return f"{len(ids)}: {', '.join(ids[:shown])}{more}"
