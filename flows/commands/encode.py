"""`clinfuse encode`: embed every ingested item the embedding store does not hold yet (the encode flow)."""

from __future__ import annotations

from enum import Enum

import typer
from rich.table import Table

from flows.commands.console import make_console


class ModalityChoice(str, Enum):
    ct = "ct"
    xray = "xray"
    eeg = "eeg"
    note = "note"
    ecg = "ecg"
    all = "all"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def device_name(device: DeviceChoice | None) -> str | None:
    """The flows' ``device`` parameter: None (the settings') or an explicit cpu/cuda ("auto" resolved)."""
    if device is None:
        return None
    if device == DeviceChoice.auto:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device.value


def encode(
    modality: ModalityChoice = typer.Option(ModalityChoice.all, "--modality", "-m",
                                            help="Which modality to encode, or all of them."),
    device: DeviceChoice = typer.Option(None, "--device",
                                        help="auto (CUDA when present), cpu or cuda; default from settings."),
    batch_size: int = typer.Option(0, "--batch-size", min=0,
                                   help="Items per encoder batch; 0 picks one for the device's memory."),
    force: bool = typer.Option(False, "--force", help="Run even when nothing changed since the last successful run."),
    weights: list[str] = typer.Option([], "--weights", "-w", metavar="MODALITY=PATH",
                                      help="A site's own pretrained weights for ct, xray or eeg: a state dict "
                                           "(.pt/.pth/.safetensors) or a MONAI bundle folder; repeatable; "
                                           "overrides CLINFUSE_ENCODER_WEIGHTS for that modality."),
) -> None:
    """Encode ok manifest items per modality into <home>/embeddings (store hits are skipped).

    When the manifest, the store, the encoder weights (site weights by their sha256), options and settings are
    as the last successful run left them, it says so and exits without starting the flow.
    """
    from flows.commands.encoders import install_all, site_weights_from, with_site_weights
    from flows.commands.flow_runner import prepare, run_flow
    from flows.commands.up_to_date import encode_check, inputs_now, nothing_to_do, remember
    from flows.settings import get_settings

    console = make_console()
    site = {m: p for m, p in site_weights_from(weights, get_settings().encoder_weights).items()
            if modality == ModalityChoice.all or m == modality.value}
    check = with_site_weights(encode_check(get_settings(), modality.value, device.value if device else None,
                                           batch_size), site)  # new weights under the same path re-encode
    if nothing_to_do(console, get_settings(), check, force):
        return
    before = inputs_now(check)
    install_all(console, site, get_settings().encoders_dir, get_settings().seed)
    settings = prepare(console)
    from flows.flows.encode import encode_flow

    modalities = None if modality == ModalityChoice.all else [modality.value]
    result = run_flow(console, "encode", lambda: encode_flow(modalities=modalities, device=device_name(device),
                                                             batch_size=batch_size))
    table = Table(title="Embeddings")
    for col in ("modality", "encoder", "version", "dim", "encoded", "store hits", "failed", "seconds"):
        table.add_column(col)
    for m, key in result.encoder_keys.items():
        table.add_row(m, key[0] if key else "not ready", key[1] if key else "-", str(result.dims.get(m, "-")),
                      str(result.encoded.get(m, 0)), str(result.hits.get(m, 0)), str(result.failed(m)),
                      f"{result.seconds.get(m, 0.0):.1f}")
    console.print(table)
    for failure in result.failures[:20]:
        console.print(f"[red]{failure.modality}[/red] {failure.reason}")
    if result.failures:
        console.print(f"{len(result.failures)} item(s) failed; listed in "
                      f"{settings.quarantine_dir}/encode_failures_*.parquet")
    else:  # a run with failures is retried next time, not vouched for
        remember(settings.home, check, before)
