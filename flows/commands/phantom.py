"""`clinfuse phantom`: write a phantom cohort (DICOM, EDF, notes, cohort table) whose right answer is known."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from flows.commands.console import make_console


class MissingMechanism(str, Enum):
    mcar = "mcar"
    mnar = "mnar"


class Anatomy(str, Enum):
    standard = "standard"
    varied = "varied"


def phantom(
    patients: int = typer.Option(200, "--patients", "-n", min=1, help="Number of patients to generate."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the export into (must not hold a cohort yet)."),
    seed: int = typer.Option(7, "--seed", help="Seed: the same seed writes byte-identical files."),
    missing_rate: float = typer.Option(
        0.0, "--missing-rate", min=0.0, max=0.7,
        help="Average fraction of patients missing each modality (every patient keeps at least one)."),
    mechanism: MissingMechanism = typer.Option(
        MissingMechanism.mcar, "--mechanism", case_sensitive=False,
        help="mcar: missing at random; mnar: sicker patients miss less (missingness depends on severity)."),
    eeg_min_s: int = typer.Option(60, "--eeg-min-s", min=4, help="Shortest EEG recording, in seconds."),
    eeg_max_s: int = typer.Option(120, "--eeg-max-s", min=4, help="Longest EEG recording, in seconds."),
    anatomy: Anatomy = typer.Option(
        Anatomy.standard, "--anatomy", case_sensitive=False,
        help="Image drawing. standard: centred upright head, one lesion, symmetric chest (the draws tests and "
             "benchmarks rely on). varied: head shifted, turned and tilted, grey/white matter, cupping and noise, "
             "0-2 lesions within tissue contrast; asymmetric chest (heart, diaphragm, rotation) with devices. "
             "Same labels and oracle for a seed; recorded in answers.parquet's metadata."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Processes writing patients (default: CLINFUSE_WORKERS); same bytes for any."),
) -> None:
    """Generate a phantom cohort: CT series and X-rays as DICOM, EEG as EDF, notes as text, plus answers."""
    from flows.settings import get_settings
    from ingestion.phantom import generate_cohort

    console = make_console()
    columns = (TextColumn("[bold]phantom"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("patients", total=patients)
            summary = generate_cohort(
                out, patients, seed=seed, missing_rate=missing_rate, mechanism=mechanism.value,
                eeg_seconds=(eeg_min_s, eeg_max_s), workers=workers or get_settings().workers, anatomy=anatomy.value,
                progress=lambda done: bar.update(task, completed=done))
    except (FileExistsError, ValueError) as exc:
        console.print(f"[red]clinfuse phantom: {exc}[/red]")
        raise typer.Exit(code=2) from exc
    table = Table(title=f"Phantom cohort in {summary.out_dir}", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # a path is wrapped, never cut short
    table.add_row("patients", str(summary.n_patients))
    table.add_row("anatomy", summary.anatomy)
    table.add_row("positive labels", str(summary.n_positive))
    for modality, count in summary.present.items():
        table.add_row(f"with {modality}", str(count))
    table.add_row("files written", str(summary.n_files))
    table.add_row("cohort table", str(summary.cohort_csv))
    table.add_row("answers (evaluation only)", str(summary.answers_parquet))
    console.print(table)
