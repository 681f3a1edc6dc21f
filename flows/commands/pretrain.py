"""`clinfuse pretrain`: contrastive cross-modal pretraining of the CT, X-ray and EEG encoders."""

from __future__ import annotations

import typer

from flows.commands.encode import DeviceChoice, start_run


def pretrain(
    epochs: int = typer.Option(8, "--epochs", "-e", min=1, help="Passes over the ingested patients."),
    batch_size: int = typer.Option(32, "--batch-size", min=2, help="Patients per contrastive batch."),
    lr: float = typer.Option(2e-3, "--lr", help="AdamW learning rate."),
    device: DeviceChoice = typer.Option(None, "--device",
                                        help="auto (CUDA when present), cpu or cuda; default from settings."),
    threads: int = typer.Option(0, "--threads", min=0,
                                help="torch CPU threads; 0 keeps torch's default (use 1 on a busy machine)."),
) -> None:
    """Train encoders on <home>'s manifest; save <home>/encoders/<name>-<version>.pt; print the versions."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.pretrain import PretrainConfig, pretrain as run_pretrain

    from flows.tasks import fit_patients_of_home

    settings, console, manifest = start_run(threads)
    fit = fit_patients_of_home(settings.home, settings.seed)  # never the held-out split or prediction batches
    if fit is not None:
        manifest = manifest[manifest["patient_id"].astype(str).isin(set(fit))]
    config = PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=settings.seed)
    with Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("pretrain", total=epochs, loss="")

        def progress(epoch: int, total: int, loss: float) -> None:
            bar.update(task, completed=epoch, loss=f"loss {loss:.3f}")

        report = run_pretrain(manifest, settings.home, settings.encoders_dir, config=config,
                              device=device.value if device else settings.device,
                              note_encoder=settings.note_encoder, progress=progress)
    for line in report.skipped:
        console.print(f"[yellow]skipped[/yellow] {line}")
    for name, version in report.versions.items():
        console.print(f"{name}: version [bold]{version}[/bold] -> {report.weights.get(name.split('-')[0], '')}")
    if not report.versions:
        console.print("[yellow]Nothing was trained: need at least two patients with a CT, X-ray or EEG item.[/yellow]")
        raise typer.Exit(1)
    console.print(f"{report.n_patients} patients, {len(report.epoch_losses)} epochs in {report.seconds:.0f} s; "
                  "run `clinfuse encode` to embed with the new versions.")
