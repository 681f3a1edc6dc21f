"""Write small real EEG (EDF via MNE) and note files for ingest tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mne
import numpy as np


def write_edf(path: Path, names: list[str], patient: str = "MRN00000001", seconds: float = 8.0) -> Path:
    """A real EDF written by MNE (edfio) with a patient code in its header."""
    rng = np.random.default_rng(len(names))
    info = mne.create_info(names, 128.0, "eeg")
    raw = mne.io.RawArray(rng.normal(0, 20e-6, (len(names), int(128 * seconds))), info, verbose="error")
    raw.set_meas_date(dt.datetime(2024, 5, 3, 10, 0, tzinfo=dt.timezone.utc))
    raw.info["subject_info"] = {"his_id": patient, "first_name": "Jane", "last_name": "Doe"}
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, overwrite=True, verbose="error")
    return path


def write_note(path: Path, mrn: str, body: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"MRN: {mrn}\nDate: 2024-05-03\nNote type: Neurology consult\n\n{body}".encode(encoding))
    return path
