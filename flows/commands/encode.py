"""`clinfuse encode`: embed every ingested item the embedding store does not hold yet."""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer


class ModalityChoice(str, Enum):
    ct = "ct"
    xray = "xray"
    eeg = "eeg"
    note = "note"
    all = "all"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def start_run(threads: int) -> tuple[Any, Any, Any]:
    """Settings, a console and the manifest for a command that works on ingested items; exit 1 without one."""
    import torch
    from rich.console import Console

    from flows.settings import get_settings
    from ingestion.manifest import read_manifest

    settings = get_settings()
    settings.ensure_dirs()
    console = Console()
    if threads:
        torch.set_num_threads(threads)
    manifest = read_manifest(settings.manifest_path)
    if manifest.empty:
        console.print(f"[yellow]No manifest at {settings.manifest_path}: run `clinfuse ingest` first.[/yellow]")
        raise typer.Exit(1)
    return settings, console, manifest


def encode(
    modality: ModalityChoice = typer.Option(ModalityChoice.all, "--modality", "-m",
                                            help="Which modality to encode, or all of them."),
    device: DeviceChoice = typer.Option(None, "--device",
                                        help="auto (CUDA when present), cpu or cuda; default from settings."),
    batch_size: int = typer.Option(0, "--batch-size", min=0,
                                   help="Items per encoder batch; 0 picks one for the device's memory."),
    threads: int = typer.Option(0, "--threads", min=0,
                                help="torch CPU threads; 0 keeps torch's default (use 1 on a busy machine)."),
) -> None:
    """Encode ok manifest items per modality into <home>/embeddings (store hits are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ingestion.modalities import MODALITIES
    from models.embedding_store import EmbeddingStore
    from flows.tasks import fit_patients_of_home
    from models.features import encode_manifest

    settings, console, manifest = start_run(threads)
    modalities = MODALITIES if modality == ModalityChoice.all else (modality.value,)
    dev = device.value if device else settings.device
    with Progress(TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        tasks: dict[str, int] = {}

        def progress(m: str, done: int, total: int) -> None:
            if m not in tasks:
                tasks[m] = bar.add_task(m, total=max(total, 1))
            bar.update(tasks[m], completed=done if total else 1, total=max(total, 1))

        report = encode_manifest(manifest, settings.home, EmbeddingStore(settings.embeddings_dir), modalities,
                                 device=dev, batch_size=batch_size, progress=progress,
                                 encoders_dir=settings.encoders_dir, seed=settings.seed,
                                 note_encoder=settings.note_encoder, quarantine_dir=settings.quarantine_dir,
                                 fit_patients=fit_patients_of_home(settings.home, settings.seed))
    table = Table(title="Embeddings")
    for col in ("modality", "encoder", "version", "dim", "encoded", "store hits", "failed", "seconds"):
        table.add_column(col)
    for m in modalities:
        key = report.encoder_keys.get(m)
        table.add_row(m, key.name if key else "not ready", key.version if key else "-",
                      str(report.dims.get(m, "-")), str(report.encoded.get(m, 0)), str(report.hits.get(m, 0)),
                      str(report.failed(m)), f"{report.seconds.get(m, 0.0):.1f}")
    console.print(table)
    for failure in report.failures[:20]:
        console.print(f"[red]{failure.modality}[/red] {failure.reason}")
    if report.failures:
        console.print(f"{len(report.failures)} item(s) failed; listed in {settings.quarantine_dir}/encode_failures_*.parquet")
