"""One encoder per modality, all following :class:`models.encoders.base.Encoder`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from models.encoders.base import Encoder, EncoderKey
from models.encoders.ct import CTConfig, CTEncoder
from models.encoders.eeg import EEGConfig, EEGEncoder
from models.encoders.note import NoteConfig, NoteEncoder
from models.encoders.xray import XrayConfig, XrayEncoder

__all__ = ["Encoder", "EncoderKey", "CTEncoder", "CTConfig", "XrayEncoder", "XrayConfig",
           "EEGEncoder", "EEGConfig", "NoteEncoder", "NoteConfig", "build_encoder", "build_encoders"]


def build_encoder(modality: str, *, encoders_dir: Path | None = None, device: str = "cpu", seed: int = 0,
                  note_encoder: Literal["minilm", "tfidf"] = "minilm") -> Encoder:
    """The default encoder of a modality, with the latest saved weights in ``encoders_dir`` if any."""
    if modality == "ct":
        return CTEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    if modality == "xray":
        return XrayEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    if modality == "eeg":
        return EEGEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    if modality == "note":
        return NoteEncoder(NoteConfig(backend=note_encoder), seed=seed, encoders_dir=encoders_dir, device=device)
    raise ValueError(f"unknown modality {modality!r}; expected one of ct, xray, eeg, note")


def build_encoders(modalities: tuple[str, ...], **kwargs: object) -> dict[str, Encoder]:
    """:func:`build_encoder` for each modality, in the order given."""
    return {m: build_encoder(m, **kwargs) for m in modalities}  # type: ignore[arg-type]
