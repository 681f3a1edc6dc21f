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


def site_weights_from(cli_pairs: list[str], configured: Mapping[str, Path]) -> dict[str, Path]:
    """The weights to use per modality: settings', overridden by the command line's; each checked cheaply.

    Raises ``typer.BadParameter`` (exit 2, no traceback) for a malformed pair, a
    modality without site weights, or a path that does not exist. Imports no torch.
    """
    from models.encoders.site_weights import SiteWeightsError, check_modality, parse_assignments

    chosen: dict[str, tuple[Path, str]] = {m: (Path(p).expanduser(), "CLINFUSE_ENCODER_WEIGHTS")
                                           for m, p in configured.items()}
    try:
        chosen.update({m: (p, "--weights") for m, p in parse_assignments(cli_pairs).items()})
    except SiteWeightsError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--weights'") from exc
    for modality, (path, origin) in chosen.items():
        try:
            check_modality(modality)
        except SiteWeightsError as exc:
            raise typer.BadParameter(str(exc), param_hint=origin) from exc
        if not path.exists():
            raise typer.BadParameter(f"{modality}: {path}: no such weights file or folder", param_hint=origin)
    return {m: p.resolve() for m, (p, _) in sorted(chosen.items())}


def with_site_weights(check: Any, weights: Mapping[str, Path]) -> Any:
    """A stage's no-op ``Check`` with the weights' sha256 in its options (their content, not their path)."""
    if not weights:
        return check
    from dataclasses import replace

    from models.encoders.site_weights import weights_digest

    return replace(check, options={**check.options, "site_weights": weights_digest(weights)})


def install_all(console: Console, weights: Mapping[str, Path], encoders_dir: Path, seed: int) -> dict[str, Any]:
    """Check and install each modality's site weights into ``encoders_dir``; print what was used.

    A file that does not fit the encoder's architecture (or cannot be read) is
    reported with the reason and the command exits 2, before any flow starts.
    Returns ``modality -> (name, version, sha256)``.
    """
    from models.encoders import build_encoder
    from models.encoders.site_weights import SiteWeightsError, install_site_weights

    table = Table(title="Site encoder weights")
    for col in ("modality", "encoder", "version", "sha256", "format", "source"):
        table.add_column(col)
    out: dict[str, Any] = {}
    for modality, path in weights.items():
        encoder = build_encoder(modality, encoders_dir=None, device="cpu", seed=seed)
        try:
            _, record = install_site_weights(encoder, path, encoders_dir)  # type: ignore[arg-type]
        except SiteWeightsError as exc:
            console.print(f"[red]{modality} site weights refused[/red]: {exc}", soft_wrap=True)
            raise typer.Exit(2) from exc
        out[modality] = (encoder.name, encoder.version, record.sha256)
        table.add_row(modality, encoder.name, encoder.version, record.sha256[:16], record.format, str(path))
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
    from flows.settings import get_settings
    from models.encoders import build_encoder
    from models.encoders.site_weights import export_state_dict, file_sha256

    console = make_console()
    if out.suffix.lower() not in (".pt", ".pth", ".safetensors"):
        raise typer.BadParameter(f"{out}: the file must end in .pt, .pth or .safetensors", param_hint="'--out'")
    settings = get_settings()
    encoder = build_encoder(modality.value, encoders_dir=settings.encoders_dir, device="cpu", seed=settings.seed)
    written = export_state_dict(encoder, out)  # type: ignore[arg-type]
    console.print(f"{modality.value}: {encoder.name} version {encoder.version} -> {written} "
                  f"(sha256 {file_sha256(written)})", soft_wrap=True)


@encoders_app.command("check")
def check(
    weights: list[str] = typer.Option(..., "--weights", "-w", help="MODALITY=PATH, repeatable."),
) -> None:
    """Check site weights against the encoders' architecture without installing them; exit 2 when one does not fit."""
    from flows.settings import get_settings
    from models.encoders import build_encoder
    from models.encoders.site_weights import SiteWeightsError, load_site_weights

    console = make_console()
    chosen = site_weights_from(weights, {})
    seed = get_settings().seed
    failed = False
    for modality, path in chosen.items():
        encoder = build_encoder(modality, encoders_dir=None, device="cpu", seed=seed)
        try:
            record = load_site_weights(encoder, path)  # type: ignore[arg-type]
        except SiteWeightsError as exc:
            console.print(f"[red]{modality}[/red]: {exc}", soft_wrap=True)
            failed = True
            continue
        console.print(f"{modality}: fits {encoder.name}; would be version {encoder.version} "
                      f"(sha256 {record.sha256}, {record.format})", soft_wrap=True)
    if failed:
        raise typer.Exit(2)
