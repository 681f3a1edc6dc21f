"""The modality vocabulary shared by every stage; the order is the column order everywhere."""

from __future__ import annotations

from typing import Literal

Modality = Literal["ct", "xray", "eeg", "note", "ecg"]

MODALITIES: tuple[Modality, ...] = ("ct", "xray", "eeg", "note", "ecg")

PHANTOM_MODALITIES: tuple[Modality, ...] = ("ct", "xray", "eeg", "note")
"""The modalities the phantom cohort draws. Its random draws (and every test and benchmark built on them)
follow this tuple, so a modality added to :data:`MODALITIES` (ECG) does not change the default phantom."""

STANDARD_1020: tuple[str, ...] = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz",
    "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2",
)
