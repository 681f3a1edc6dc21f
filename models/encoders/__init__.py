"""One encoder per modality, all following :class:`models.encoders.base.Encoder`.

The encoder classes are imported on first use (PEP 562 ``__getattr__``), so that
code needing only an encoder's remembered identity (:mod:`models.encoders.identity`)
does not import torch and MONAI.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from models.encoders.base import Encoder, EncoderKey
    from models.encoders.ct import CTConfig, CTEncoder
    from models.encoders.ecg import ECGConfig, ECGEncoder
    from models.encoders.eeg import EEGConfig, EEGEncoder
    from models.encoders.note import NoteConfig, NoteEncoder
    from models.encoders.xray import XrayConfig, XrayEncoder

__all__ = ["Encoder", "EncoderKey", "CTEncoder", "CTConfig", "XrayEncoder", "XrayConfig",
           "EEGEncoder", "EEGConfig", "ECGEncoder", "ECGConfig", "NoteEncoder", "NoteConfig", "build_encoder", "build_encoders"]

_HOMES = {"Encoder": "base", "EncoderKey": "base", "CTEncoder": "ct", "CTConfig": "ct", "XrayEncoder": "xray",
          "XrayConfig": "xray", "EEGEncoder": "eeg", "EEGConfig": "eeg", "ECGEncoder": "ecg", "ECGConfig": "ecg",
          "NoteEncoder": "note", "NoteConfig": "note"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"models.encoders.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'models.encoders' has no attribute {name!r}")


def build_encoder(modality: str, *, encoders_dir: Path | None = None, device: str = "cpu", seed: int = 0,
                  note_encoder: Literal["minilm", "tfidf"] = "minilm", note_model_cache: Path | None = None) -> Encoder:
    """The default encoder of a modality, with the latest saved weights in ``encoders_dir`` if any.

    ``note_model_cache``: the machine-level folder of the derived int8 MiniLM (see ``NoteEncoder``).
    """
    if modality == "ct":
        from models.encoders.ct import CTEncoder
        return CTEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    if modality == "xray":
        from models.encoders.xray import XrayEncoder
        return XrayEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    if modality == "eeg":
        from models.encoders.eeg import EEGEncoder
        return EEGEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    if modality == "note":
        from models.encoders.note import NoteConfig, NoteEncoder
        return NoteEncoder(NoteConfig(backend=note_encoder), seed=seed, encoders_dir=encoders_dir, device=device,
                           model_cache=note_model_cache)
    if modality == "ecg":
        from models.encoders.ecg import ECGEncoder
        return ECGEncoder(seed=seed, encoders_dir=encoders_dir, device=device)
    raise ValueError(f"unknown modality {modality!r}; expected one of ct, xray, eeg, note, ecg")


def build_encoders(modalities: tuple[str, ...], **kwargs: object) -> dict[str, Encoder]:
    """:func:`build_encoder` for each modality, in the order given."""
    return {m: build_encoder(m, **kwargs) for m in modalities}  # type: ignore[arg-type]
