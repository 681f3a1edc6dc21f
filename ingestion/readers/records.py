"""The record every modality reader returns, and the one error every reader raises.

Readers (DICOM, EEG, notes) share this contract so that the ingest driver can
treat them alike: a good input becomes a :class:`NormalisedItem`; a bad input
raises :class:`QuarantineError` whose ``reason`` goes into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class QuarantineError(Exception):
    """Raised by a reader for bad input; the item is quarantined, never dropped.

    ``reason`` is one sentence a person can act on: what is wrong, with which
    file, and what to do about it (e.g. which plugin to install).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NormalisedItem:
    """One source item (CT series, X-ray image, EEG recording, note) after reading.

    ``original_patient_id`` lives in memory only: the driver replaces it with
    the pseudonym and never persists it. ``metadata`` is JSON-serialisable
    and carries no PHI; ``event_date`` is the date as found in the source, for
    the driver to shift per patient.
    """

    modality: str
    original_patient_id: str
    array: np.ndarray | dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    event_date: str | None = None
