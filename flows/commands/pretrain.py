"""`clinfuse pretrain`: contrastive cross-modal pretraining of the CT, X-ray and EEG encoders (the pretrain flow)."""

from __future__ import annotations

import typer

from flows.commands.console import make_console
from flows.commands.encode import DeviceChoice, device_name
from models import defaults as d


def pretrain(
    epochs: int = typer.Option(d.PRETRAIN_EPOCHS, "--epochs", "-e", min=1, help="Passes over the ingested patients."),
    batch_size: int = typer.Option(d.PRETRAIN_BATCH_SIZE, "--batch-size", min=2, help="Patients per contrastive batch."),
    lr: float = typer.Option(d.PRETRAIN_LR, "--lr", help="AdamW learning rate."),
    device: DeviceChoice = typer.Option(None, "--device",
                                        help="auto (CUDA when present), cpu or cuda; default from settings."),
) -> None:
    """Train encoders on <home>'s manifest; save <home>/encoders/<name>-<version>.pt; print the versions."""
    from flows.commands.flow_runner import prepare, run_flow

    console = make_console()
    prepare(console)
    from flows.flows.pretrain import pretrain_flow

    result = run_flow(console, "pretrain", lambda: pretrain_flow(epochs=epochs, batch_size=batch_size, lr=lr,
                                                                 device=device_name(device)))
    for line in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {line}")
    for name, version in result.versions.items():
        console.print(f"{name}: version [bold]{version}[/bold] -> {result.weights.get(name.split('-')[0], '')}")
    if not result.versions:
        console.print("[yellow]Nothing was trained: need at least two patients with a CT, X-ray or EEG item.[/yellow]")
        raise typer.Exit(1)
    console.print(f"{result.n_patients} patients, {len(result.epoch_losses)} epochs in {result.seconds:.0f} s; "
                  "run `clinfuse encode` to embed with the new versions.")
