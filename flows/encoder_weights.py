"""Site encoder weights as the CLI uses them: the library calls behind `clinfuse encoders` and `encode --weights`.

The commands only parse options and print; checking, installing, exporting and
fingerprinting weights is done here, on the library in
``models.encoders.site_weights``, so no command runs encoder code itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class WeightsFit:
    """How a site's file fits an encoder: the encoder it fits and the version it gives, or why it does not."""

    modality: str
    encoder: str
    version: str
    sha256: str = ""
    format: str = ""
    refused: str = ""  # the reason, when the file does not fit


def parse_pairs(cli_pairs: list[str]) -> dict[str, Path]:
    """``MODALITY=PATH`` pairs; ``ValueError`` (a ``SiteWeightsError``) with the reason when one is malformed."""
    from models.encoders.site_weights import parse_assignments

    return parse_assignments(cli_pairs)


def modality_refusal(modality: str) -> str:
    """Why ``modality`` takes no site weights, or ``""`` when it does."""
    from models.encoders.site_weights import SiteWeightsError, check_modality

    try:
        check_modality(modality)
    except SiteWeightsError as exc:
        return str(exc)
    return ""


def digest(weights: Mapping[str, Path]) -> str:
    """The weights' content hash for a no-op fingerprint (their bytes, not their path)."""
    from models.encoders.site_weights import weights_digest

    return weights_digest(weights)


def _fit(modality: str, path: Path, seed: int, install_into: Path | None) -> WeightsFit:
    from models.encoders import build_encoder
    from models.encoders.site_weights import SiteWeightsError, install_site_weights, load_site_weights

    encoder = build_encoder(modality, encoders_dir=None, device="cpu", seed=seed)
    try:
        if install_into is None:
            record = load_site_weights(encoder, path)  # type: ignore[arg-type]
        else:
            _, record = install_site_weights(encoder, path, install_into)  # type: ignore[arg-type]
    except SiteWeightsError as exc:
        return WeightsFit(modality, encoder.name, encoder.version, refused=str(exc))
    return WeightsFit(modality, encoder.name, encoder.version, record.sha256, record.format)


def check_fit(modality: str, path: Path, seed: int) -> WeightsFit:
    """Load ``path`` into a fresh ``modality`` encoder without installing it."""
    return _fit(modality, path, seed, None)


def install(modality: str, path: Path, encoders_dir: Path, seed: int) -> WeightsFit:
    """Check ``path`` and save it into ``encoders_dir`` as the newest weights of that encoder."""
    return _fit(modality, path, seed, encoders_dir)


def export(modality: str, encoders_dir: Path, seed: int, out: Path) -> dict[str, Any]:
    """Write the home's current weights of ``modality`` (pretrained, installed or seeded) as a state dict."""
    from models.encoders import build_encoder
    from models.encoders.site_weights import export_state_dict, file_sha256

    encoder = build_encoder(modality, encoders_dir=encoders_dir, device="cpu", seed=seed)
    written = export_state_dict(encoder, out)  # type: ignore[arg-type]
    return {"encoder": encoder.name, "version": encoder.version, "path": written, "sha256": file_sha256(written)}
