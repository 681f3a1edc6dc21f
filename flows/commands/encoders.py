"""`clinfuse encoders`: a site's own encoder weights: export clinfuse's, check a site's; the checks `encode` runs.

Site weights come from ``clinfuse encode --weights ct=PATH`` (repeatable) or
``CLINFUSE_ENCODER_WEIGHTS``; the command line wins per modality. The modality
and the path are checked before anything starts (a usage error, exit 2); the
architecture is checked when the weights are installed into the home's
encoders folder, still before the flow starts (a clear message, exit 2).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Mapping

import typer
from rich.console import Console
from rich.table import Table

from flows.commands.console import make_console

encoders_app = typer.Typer(help="A site's own pretrained encoder weights: export clinfuse's, check a site's.",
                           no_args_is_help=True)


class SiteModality(str, Enum):
    ct = "ct"
    xray = "xray"
    eeg = "eeg"
    ecg = "ecg"


def site_weights_from(cli_pairs: list[str], configured: Mapping[str, Path]) -> dict[str, Path]:
    """The weights to use per modality: settings', overridden by the command line's; each checked cheaply.

    Raises ``typer.BadParameter`` (exit 2, no traceback) for a malformed pair, a
    modality without site weights, or a path that does not exist. Imports no torch.
    """
    from flows.encoder_weights import modality_refusal, parse_pairs

    chosen: dict[str, tuple[Path, str]] = {m: (Path(p).expanduser(), "CLINFUSE_ENCODER_WEIGHTS")
                                           for m, p in configured.items()}
    try:
        chosen.update({m: (p, "--weights") for m, p in parse_pairs(cli_pairs).items()})
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--weights'") from exc
    for modality, (path, origin) in chosen.items():
        if refusal := modality_refusal(modality):
            raise typer.BadParameter(refusal, param_hint=origin)
        if not path.exists():
            raise typer.BadParameter(f"{modality}: {path}: no such weights file or folder", param_hint=origin)
    return {m: p.resolve() for m, (p, _) in sorted(chosen.items())}


def with_site_weights(check: Any, weights: Mapping[str, Path]) -> Any:
    """A stage's no-op ``Check`` with the weights' sha256 in its options (their content, not their path)."""
    if not weights:
        return check
    from dataclasses import replace

    from flows.encoder_weights import digest

    return replace(check, options={**check.options, "site_weights": digest(weights)})


def install_all(console: Console, weights: Mapping[str, Path], encoders_dir: Path, seed: int) -> dict[str, Any]:
    """Check and install each modality's site weights into ``encoders_dir``; print what was used.

    A file that does not fit the encoder's architecture (or cannot be read) is
    reported with the reason and the command exits 2, before any flow starts.
    Returns ``modality -> (name, version, sha256)``.
    """
    from flows.encoder_weights import install

    table = Table(title="Site encoder weights")
    for col in ("modality", "encoder", "version", "sha256", "format", "source"):
        table.add_column(col)
    out: dict[str, Any] = {}
    for modality, path in weights.items():
        fit = install(modality, path, encoders_dir, seed)
        if fit.refused:
            console.print(f"[red]{modality} site weights refused[/red]: {fit.refused}", soft_wrap=True)
            raise typer.Exit(2)
        out[modality] = (fit.encoder, fit.version, fit.sha256)
        table.add_row(modality, fit.encoder, fit.version, fit.sha256[:16], fit.format, str(path))
    if out:
        console.print(table)
    return out


@encoders_app.command("export")
def export(
    modality: SiteModality = typer.Option(..., "--modality", "-m", help="Which encoder's weights to write."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write: .pt (torch state dict) or .safetensors."),
) -> None:
    """Write the home's current weights of an encoder (pretrained, installed or the seeded default) as a state dict.

    A site can load the file elsewhere, fine-tune it and give it back with
    `clinfuse encode --weights MODALITY=FILE`.
    """
    from flows.encoder_weights import export as export_weights
    from flows.settings import get_settings

    console = make_console()
    if out.suffix.lower() not in (".pt", ".pth", ".safetensors"):
        raise typer.BadParameter(f"{out}: the file must end in .pt, .pth or .safetensors", param_hint="'--out'")
    settings = get_settings()
    done = export_weights(modality.value, settings.encoders_dir, settings.seed, out)
    console.print(f"{modality.value}: {done['encoder']} version {done['version']} -> {done['path']} "
                  f"(sha256 {done['sha256']})", soft_wrap=True)


@encoders_app.command("check")
def check(
    weights: list[str] = typer.Option(..., "--weights", "-w", help="MODALITY=PATH, repeatable."),
) -> None:
    """Check site weights against the encoders' architecture without installing them; exit 2 when one does not fit."""
    from flows.encoder_weights import check_fit
    from flows.settings import get_settings

    console = make_console()
    chosen = site_weights_from(weights, {})
    seed = get_settings().seed
    failed = False
    for modality, path in chosen.items():
        fit = check_fit(modality, path, seed)
        if fit.refused:
            console.print(f"[red]{modality}[/red]: {fit.refused}", soft_wrap=True)
            failed = True
            continue
        console.print(f"{modality}: fits {fit.encoder}; would be version {fit.version} "
                      f"(sha256 {fit.sha256}, {fit.format})", soft_wrap=True)
    if failed:
        raise typer.Exit(2)
