"""Read a 12-lead ECG (WFDB ``.hea`` + ``.dat``, or EDF) into fixed windows on the standard leads.

The encoder wants the same thing from every device: the 12 leads in
:data:`~ingestion.readers.ecg_leads.STANDARD_12_LEADS` order, one sampling
rate, one pass band, millivolts, cut into fixed windows. Amplitudes are kept in
mV, not z-scored per record: low voltage and hypertrophy are diagnoses read
from the amplitude. A record with fewer leads (a Holter's 2 or 3, a monitor's
single lead) is read, not refused: absent and bad leads stay zero rows and
``leads_present`` / ``montage`` in the metadata say which rows carry signal.

Nothing identifying leaves this module: WFDB header comments (which in many
databases hold age, sex, diagnoses) and the EDF patient/recording fields are
never copied into the metadata. The patient is the id the driver supplies
(a sidecar row), else the EDF header's patient code, else the record name;
the driver pseudonymises it. The recording date is returned as
``event_date`` for the driver to shift.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from ingestion.readers.ecg_leads import STANDARD_12_LEADS, LeadMap, map_leads
from ingestion.readers.records import NormalisedItem, QuarantineError

BAND_HZ: tuple[float, float] = (0.5, 40.0)
"""Pass band: removes baseline wander below and muscle / mains noise above (the diagnostic ECG band)."""

FLAT_STD_MV = 0.005
"""A lead whose standard deviation is below 5 µV carries no signal (a disconnected electrode)."""

CLIPPED_FRACTION = 0.05
"""A lead pinned at its own extreme value for more than this share of samples is clipped (amplifier range)."""

MIN_SFREQ_HZ = 50.0
"""Below this a QRS complex (~20-40 Hz content) is not resolved: such a record is refused, not upsampled."""

_UNIT_TO_MV: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


@dataclass(frozen=True)
class ECGReadConfig:
    """The preprocessing of :func:`read_ecg`, one record so it can be stored with every item."""

    sfreq: float = 100.0
    window_s: float = 5.0
    line_freq: float = 50.0
    max_windows: int = 12
    min_leads: int = 12
    """Fewer usable leads than this make the montage ``reduced`` (encoded with a lead mask)."""


def read_ecg(path: Path | str, sfreq: float = 100.0, window_s: float = 5.0, line_freq: float = 50.0, *,
             max_windows: int = 12, patient_id: str | None = None) -> NormalisedItem:
    """Read one ECG record into float32 ``(n_windows, 12, window_samples)`` in mV.

    ``path`` is the WFDB header (``.hea``) or an EDF/BDF file. Raises
    :class:`QuarantineError` with a reason naming the file for unreadable
    headers or data, records with no 12-lead label, rates below
    :data:`MIN_SFREQ_HZ`, records shorter than one window, and records whose
    every lead is flat, clipped or has missing samples.
    """
    cfg = ECGReadConfig(sfreq, window_s, line_freq, max_windows)
    path = Path(path)
    data, labels, units, orig_sfreq, header_id, start = _load(path)
    lead_map = map_leads(labels)
    if not lead_map.present:
        raise QuarantineError(
            f"ECG file {path.name} has no standard ECG lead among its signals ({', '.join(labels)[:200] or 'none'}); "
            "name the leads I, II, III, aVR, aVL, aVF, V1-V6 (or move the file out if it is not an ECG).")
    if orig_sfreq < MIN_SFREQ_HZ:
        raise QuarantineError(f"ECG file {path.name} is sampled at {orig_sfreq:g} Hz, below the {MIN_SFREQ_HZ:g} Hz "
                              "needed to resolve a QRS complex; export it at its acquisition rate.")
    duration_s = data.shape[1] / orig_sfreq
    n_total = int(duration_s // cfg.window_s)
    if n_total < 1:
        raise QuarantineError(f"ECG file {path.name} lasts {duration_s:.1f} s, shorter than one "
                              f"{cfg.window_s:g} s window; supply a longer recording.")
    rows = [labels.index(src) for src in lead_map.mapping]
    scale = np.array([_to_mv(path, units[i]) for i in rows])[:, None]
    kept = data[rows] * scale
    bad = _bad_leads(kept, list(lead_map.mapping.values()))
    out = _windows(kept, orig_sfreq, n_total, cfg, [lead in bad for lead in lead_map.mapping.values()])
    array, usable = _place_leads(path, out, list(lead_map.mapping.values()), bad)
    owner = (patient_id or "").strip() or header_id or _record_name(path)
    return NormalisedItem(
        modality="ecg", original_patient_id=owner, array=array,
        metadata=_metadata(path, lead_map, bad, usable, cfg, orig_sfreq, duration_s, n_total, array),
        event_date=start.isoformat() if start else None)


def _metadata(path: Path, lead_map: LeadMap, bad: dict[str, str], usable: list[str], cfg: ECGReadConfig,
              orig_sfreq: float, duration_s: float, n_total: int, array: np.ndarray) -> dict[str, Any]:
    """Signal facts only (rates, leads, why a lead is absent): nothing from the header's free text."""
    return {"format": "wfdb" if path.suffix.lower() == ".hea" else path.suffix.lower().lstrip("."),
            "sfreq": float(cfg.sfreq), "original_sfreq": float(orig_sfreq), "window_s": float(cfg.window_s),
            "window_samples": int(array.shape[-1]), "n_windows": int(array.shape[0]),
            "n_windows_total": n_total, "duration_s": round(duration_s, 3), "units": "mV",
            "leads": list(STANDARD_12_LEADS), "leads_present": [lead in usable for lead in STANDARD_12_LEADS],
            "montage": "standard" if len(usable) >= cfg.min_leads else "reduced",
            "missing_leads": list(lead_map.missing), "bad_leads": bad, "dropped_signals": list(lead_map.unmapped),
            "lead_map": dict(lead_map.mapping), "band_hz": list(BAND_HZ), "line_freq": float(cfg.line_freq),
            "reader": asdict(cfg)}


def _record_name(path: Path) -> str:
    return path.stem


def _to_mv(path: Path, unit: str) -> float:
    key = (unit or "mV").strip().lower()
    if key not in _UNIT_TO_MV:
        raise QuarantineError(f"ECG file {path.name} gives a lead in {unit!r}, not a voltage unit (mV, uV, V); "
                              "check the header's units.")
    return _UNIT_TO_MV[key]


def _load(path: Path) -> tuple[np.ndarray, list[str], list[str], float, str, dt.date | None]:
    """Samples ``(signals, n)``, labels, units, rate, the header's patient code (EDF only) and start date."""
    if not path.is_file():
        raise QuarantineError(f"ECG file {path} does not exist or is not a file.")
    if path.suffix.lower() == ".hea":
        return _load_wfdb(path)
    return _load_edf(path)


def _load_wfdb(path: Path) -> tuple[np.ndarray, list[str], list[str], float, str, dt.date | None]:
    import wfdb

    try:
        record = wfdb.rdrecord(str(path.with_suffix("")))
    except Exception as exc:  # wfdb raises ValueError, FileNotFoundError, IndexError ... for bad records
        raise QuarantineError(
            f"ECG file {path.name} could not be read as a WFDB record ({type(exc).__name__}: {str(exc)[:200]}); "
            "the header is corrupt or its .dat file is missing or short: export the record again.") from None
    if record.p_signal is None or record.p_signal.size == 0:
        raise QuarantineError(f"ECG file {path.name} holds no samples; export the record again.")
    start = record.base_date if isinstance(record.base_date, dt.date) else None
    return (np.asarray(record.p_signal, np.float64).T, [str(s) for s in record.sig_name],
            [str(u) for u in record.units], float(record.fs), "", start)


def _load_edf(path: Path) -> tuple[np.ndarray, list[str], list[str], float, str, dt.date | None]:
    import mne

    from ingestion.readers.edf_header import check_edf_header

    if path.suffix.lower() in (".edf", ".bdf"):
        check_edf_header(path)
    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as exc:  # MNE raises many types for corrupt headers; all mean "cannot read"
        raise QuarantineError(
            f"ECG file {path.name} could not be read as {path.suffix or 'EDF'} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); the header is corrupt: re-export it as EDF or WFDB.") from None
    rates = {float(raw.info["sfreq"])}
    info = raw.info.get("subject_info") or {}
    code = str(info.get("his_id") or "").strip()
    meas = raw.info.get("meas_date")
    data = raw.get_data(units="mV") if raw.ch_names else np.zeros((0, 0))
    return (np.asarray(data, np.float64), list(raw.ch_names), ["mV"] * len(raw.ch_names), rates.pop(),
            "" if code.upper() in {"", "X"} else code, meas.date() if isinstance(meas, dt.datetime) else None)


def _bad_leads(data: np.ndarray, leads: list[str]) -> dict[str, str]:
    """Lead -> why it is not used: missing samples, flat, or clipped."""
    bad: dict[str, str] = {}
    for row, lead in zip(data, leads):
        if not np.isfinite(row).all():
            bad[lead] = "missing samples (NaN)"
        elif row.std() < FLAT_STD_MV:
            bad[lead] = "flat"
        elif _clipped_share(row) > CLIPPED_FRACTION:
            bad[lead] = "clipped"
    return bad


def _clipped_share(row: np.ndarray) -> float:
    lo, hi = float(row.min()), float(row.max())
    tol = max(hi - lo, 1e-12) * 1e-6
    return float(((row >= hi - tol) | (row <= lo + tol)).mean())


def _windows(data: np.ndarray, orig_sfreq: float, n_total: int, cfg: ECGReadConfig, bad: list[bool]) -> np.ndarray:
    """Filter and resample the good leads, then cut ``max_windows`` evenly spaced windows."""
    clean = np.where(np.asarray(bad)[:, None], 0.0, np.nan_to_num(data))
    for sos in _filter_design(orig_sfreq, cfg.line_freq):
        clean = signal.sosfiltfilt(sos, clean, axis=-1)
    ratio = Fraction(cfg.sfreq / orig_sfreq).limit_denominator(1000)
    if ratio != 1:
        clean = signal.resample_poly(clean, ratio.numerator, ratio.denominator, axis=-1)
    win = int(round(cfg.window_s * cfg.sfreq))
    index = np.arange(n_total) if n_total <= cfg.max_windows else \
        np.unique(np.linspace(0, n_total - 1, cfg.max_windows).round().astype(int))
    pieces = []
    for i in index:
        piece = clean[:, i * win:(i + 1) * win]
        if piece.shape[1] < win:  # rounding at the very end of the record
            piece = np.pad(piece, ((0, 0), (0, win - piece.shape[1])), mode="edge")
        pieces.append(piece)
    return np.stack(pieces).astype(np.float32)


@lru_cache(maxsize=16)
def _filter_design(orig_sfreq: float, line_freq: float) -> tuple[np.ndarray, ...]:
    """Notches at the mains frequency and harmonics below Nyquist, then a 4th-order Butterworth band-pass."""
    nyquist = orig_sfreq / 2
    stages = []
    for freq in np.arange(line_freq, nyquist, line_freq):
        b, a = signal.iirnotch(freq, Q=30.0, fs=orig_sfreq)
        stages.append(signal.tf2sos(b, a))
    high = min(BAND_HZ[1], 0.9 * nyquist)
    stages.append(signal.butter(4, (BAND_HZ[0], high), btype="bandpass", output="sos", fs=orig_sfreq))
    return tuple(stages)


def _place_leads(path: Path, windows: np.ndarray, leads: list[str], bad: dict[str, str]) -> tuple[np.ndarray, list[str]]:
    """Windows on the 12 standard rows (absent and bad leads zero) and the usable leads; none usable is refused."""
    usable = [lead for lead in leads if lead not in bad]
    if not usable:
        reasons = ", ".join(f"{lead}: {why}" for lead, why in bad.items())
        raise QuarantineError(f"ECG file {path.name} has no usable lead ({reasons[:300]}); "
                              "check the electrodes and the amplifier range of this recording.")
    out = np.zeros((len(windows), len(STANDARD_12_LEADS), windows.shape[-1]), np.float32)
    for row, lead in enumerate(leads):
        if lead not in bad:
            out[:, STANDARD_12_LEADS.index(lead), :] = windows[:, row, :]
    return out, usable
