"""Read an EEG recording in any format MNE reads into fixed windows on the 10-20 set.

The encoder wants the same thing from every site: 19 channels in
:data:`~ingestion.modalities.STANDARD_1020` order, one sampling rate, the same
band and no mains hum, cut into fixed-length windows. This module does that
for EDF, BDF, FIF, BrainVision and EEGLAB files, reading only the channels and
the stretches of signal it keeps, so a night-long recording costs no more
memory than a short one. Anything it cannot use becomes a
:class:`~ingestion.readers.records.QuarantineError` with a reason a person can act on.

The header's patient name and birth date never leave this module: metadata
carries only signal facts (rates, channels, duration); the patient code is
returned as ``original_patient_id`` for the driver to pseudonymise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import mne
import numpy as np
from scipy import signal

from ingestion.deid.pseudonym import date_shift_days
from ingestion.modalities import STANDARD_1020
from ingestion.readers.edf_header import check_edf_header
from ingestion.readers.eeg_channels import UNNAMED_SLOT, ChannelMap, map_channels, with_unnamed_slot
from ingestion.readers.records import NormalisedItem, QuarantineError

BAND_HZ: tuple[float, float] = (0.5, 45.0)
"""Pass band kept for the encoder: drops drift below and muscle/line noise above."""

FLAT_STD_UV = 0.1
"""A channel whose standard deviation is below this (in microvolts) carries no signal."""

CLIPPED_FRACTION = 0.01
"""A channel sitting at its own extreme value for more than this share of samples is clipped."""

_MARGIN_S = 4.0
"""Signal read on each side of a chunk so filter edges fall outside the kept windows."""

_CHUNK_WINDOWS = 16
"""Windows processed together; bounds memory on long recordings."""


@dataclass(frozen=True)
class EEGConfig:
    """The preprocessing of :func:`read_eeg`, one record so its hash can version the arrays."""

    sfreq: float = 128.0
    window_s: float = 4.0
    line_freq: float = 50.0
    max_windows: int = 64
    min_channels: int = 8
    """Fewer usable 10-20 channels than this make the montage ``reduced`` (encoded with a channel mask)."""


def read_eeg(
    path: Path,
    sfreq: float = 128.0,
    window_s: float = 4.0,
    line_freq: float = 50.0,
    *,
    max_windows: int = 64,
    min_channels: int = 8,
    patient_id: str | None = None,
    secret: str | None = None,
) -> NormalisedItem:
    """Read one EEG recording into windows ``(n_windows, 19, window_samples)`` float32 in µV.

    ``patient_id`` is used only when the header carries no patient code (e.g.
    BrainVision); without either the recording cannot be attributed and is
    quarantined. With ``secret`` the metadata also carries the recording date
    shifted by the patient's :func:`~ingestion.deid.pseudonym.date_shift_days`;
    ``event_date`` is always the unshifted date, for the driver to shift.

    A reduced montage (fewer than ``min_channels`` usable 10-20 channels, or a
    single channel with no 10-20 name, kept in the Cz row: see
    :func:`~ingestion.readers.eeg_channels.with_unnamed_slot`) is read, not refused:
    absent rows stay zero and ``channels_present`` / ``montage`` in the metadata
    say which rows carry signal.

    Raises :class:`QuarantineError` for unreadable files, recordings without any
    usable EEG channel, shorter than one window, or with NaN samples.
    """
    cfg = EEGConfig(sfreq, window_s, line_freq, max_windows, min_channels)
    path = Path(path)
    raw = _open_raw(path)
    orig_sfreq = float(raw.info["sfreq"])
    channel_map, unnamed = with_unnamed_slot(
        map_channels(raw.ch_names, dict(zip(raw.ch_names, raw.get_channel_types()))))
    _check_channels(path, channel_map)

    owner = _owner(path, raw, patient_id)

    duration_s = raw.n_times / orig_sfreq
    n_total = int(duration_s // cfg.window_s)
    if n_total < 1:
        raise QuarantineError(
            f"EEG file {path.name} lasts {duration_s:.1f} s, shorter than one {cfg.window_s:g} s window; "
            "supply a longer recording."
        )

    kept = list(channel_map.mapping)
    raw.pick(kept)
    raw.rename_channels(channel_map.mapping)
    raw.set_channel_types({name: "eeg" for name in raw.ch_names}, on_unit_change="ignore")

    starts = _window_starts(n_total, cfg.window_s, cfg.max_windows)
    windows, bad = _extract_windows(path, raw, starts, cfg)

    out, usable = _place_channels(path, raw, windows, channel_map.present, bad)

    meas_date = _meas_date(raw)
    metadata: dict[str, Any] = {
        "format": path.suffix.lower().lstrip("."), "sfreq": float(cfg.sfreq), "original_sfreq": orig_sfreq,
        "window_s": float(cfg.window_s), "window_samples": int(out.shape[-1]), "n_windows": int(out.shape[0]),
        "n_windows_total": n_total, "duration_s": round(duration_s, 3),
        **_channel_metadata(channel_map, bad),
        **_montage_metadata(usable, unnamed, cfg.min_channels),
        "band_hz": list(BAND_HZ), "line_freq": float(cfg.line_freq),
        "notch_applied": cfg.line_freq < orig_sfreq / 2, "units": "uV",
    }
    if secret is not None and meas_date is not None:
        shifted = meas_date - dt.timedelta(days=date_shift_days(owner, secret))
        metadata["meas_date_shifted"] = shifted.isoformat()
    return NormalisedItem(
        modality="eeg",
        original_patient_id=owner,
        array=out,
        metadata=metadata,
        event_date=meas_date.isoformat() if meas_date else None,
    )


def _owner(path: Path, raw: mne.io.BaseRaw, patient_id: str | None) -> str:
    """The header's patient code, else the one supplied: a recording nobody can be attributed to is refused."""
    owner = _header_patient_id(raw) or (patient_id.strip() if patient_id else "")
    if not owner:
        raise QuarantineError(
            f"EEG file {path.name} has no patient code in its header and none was supplied; "
            "add the patient id to the header (EDF patient field) or pass it explicitly."
        )
    return owner


def _place_channels(path: Path, raw: mne.io.BaseRaw, windows: np.ndarray, present: Sequence[str],
                    bad: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Windows on the standard 10-20 montage (absent and bad channels stay zero) and the usable channels.

    Refused only when no channel is usable: a flat or clipped single lead is no EEG.
    """
    usable = [name for name in present if name not in bad]
    if not usable:
        raise QuarantineError(
            f"EEG file {path.name} has no usable EEG channel (flat or clipped: {', '.join(bad) or 'none'}); "
            "check the electrodes or amplifier range of this recording."
        )
    out = np.zeros((len(windows), len(STANDARD_1020), windows.shape[-1]), dtype=np.float32)
    for row, name in enumerate(raw.ch_names):
        if name not in bad:
            out[:, STANDARD_1020.index(name), :] = windows[:, row, :]
    return out, usable


def _montage_metadata(usable: Sequence[str], unnamed: str | None, min_channels: int) -> dict[str, Any]:
    """The channel mask: which of the 19 rows carry signal, and whether the montage is reduced.

    ``channels_present[i]`` is true when row ``i`` of ``channels`` holds a usable
    signal; the encoder works from the array's zero rows, so the two always agree.
    """
    reduced = unnamed is not None or len(usable) < min_channels
    return {"channels_present": [name in usable for name in STANDARD_1020],
            "montage": "reduced" if reduced else "standard",
            "unnamed_channel": unnamed, "unnamed_slot": UNNAMED_SLOT if unnamed is not None else None}


def _channel_metadata(channel_map: ChannelMap, bad: Sequence[str]) -> dict[str, Any]:
    """What happened to each channel, so a reviewer can see why a recording looks the way it does."""
    return {"channels": list(STANDARD_1020), "missing_channels": list(channel_map.missing),
            "bad_channels": list(bad), "non_eeg_channels": list(channel_map.non_eeg),
            "dropped_channels": list(channel_map.unmapped), "channel_map": dict(channel_map.mapping)}


def _open_raw(path: Path) -> mne.io.BaseRaw:
    """Open the header only (no samples loaded); any reader failure becomes a quarantine reason."""
    if not path.is_file():
        raise QuarantineError(f"EEG file {path} does not exist or is not a file.")
    if path.suffix.lower() in (".edf", ".bdf"):
        check_edf_header(path)  # before MNE sizes anything from the header's sample counts
    try:
        return mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises many types for corrupt headers; all mean "cannot read"
        raise QuarantineError(
            f"EEG file {path.name} could not be read as {path.suffix or 'an EEG file'} "
            f"({type(exc).__name__}: {str(exc)[:200]}); the header is corrupt or the format is unsupported: "
            "re-export it from the acquisition system as EDF, BDF, FIF, BrainVision or EEGLAB."
        ) from exc


def _check_channels(path: Path, channel_map: ChannelMap) -> None:
    """Refuse a recording with no EEG channel to keep: no 10-20 name and not a single unnamed lead."""
    if not channel_map.present:
        raise QuarantineError(
            f"EEG file {path.name} has no 10-20 scalp channels and not a single unnamed EEG channel (found: "
            f"{', '.join((*channel_map.non_eeg, *channel_map.unmapped))[:200] or 'none'}); "
            "check that it is a scalp EEG and that channels are named by electrode (e.g. Fp1, C3, O2)."
        )


def _header_patient_id(raw: mne.io.BaseRaw) -> str:
    """The patient code from the header (EDF patient field, FIF his_id); never the name."""
    info = raw.info.get("subject_info") or {}
    code = str(info.get("his_id") or "").strip()
    return "" if code.upper() in {"", "X"} else code  # EDF+ writes X for "unknown"


def _meas_date(raw: mne.io.BaseRaw) -> dt.date | None:
    meas = raw.info.get("meas_date")
    return meas.date() if isinstance(meas, dt.datetime) else None


def _window_starts(n_total: int, window_s: float, max_windows: int) -> np.ndarray:
    """Start times (s) of the kept windows: all of them, or ``max_windows`` evenly spaced."""
    if n_total <= max_windows:
        index = np.arange(n_total)
    else:
        index = np.unique(np.linspace(0, n_total - 1, max_windows).round().astype(int))
    return index * window_s


def _extract_windows(
    path: Path, raw: mne.io.BaseRaw, starts: np.ndarray, cfg: EEGConfig
) -> tuple[np.ndarray, list[str]]:
    """Filter, resample and cut the windows chunk by chunk; also return flat/clipped channels."""
    orig_sfreq = float(raw.info["sfreq"])
    win_out = int(round(cfg.window_s * cfg.sfreq))
    pieces: list[np.ndarray] = []
    max_std = np.zeros(len(raw.ch_names))
    clipped_share = np.zeros(len(raw.ch_names))
    for chunk in _contiguous_chunks(starts, cfg.window_s):
        t0 = max(0.0, chunk[0] - _MARGIN_S)
        t1 = min(raw.n_times / orig_sfreq, chunk[-1] + cfg.window_s + _MARGIN_S)
        start, stop = int(round(t0 * orig_sfreq)), int(round(t1 * orig_sfreq))
        data = raw.get_data(start=start, stop=stop, units="uV").astype(np.float64)
        if not np.all(np.isfinite(data)):
            raise QuarantineError(
                f"EEG file {path.name} contains NaN or infinite samples between {t0:.0f} s and {t1:.0f} s; "
                "the recording is corrupt: re-export it."
            )
        max_std = np.maximum(max_std, data.std(axis=1))
        clipped_share = np.maximum(clipped_share, _clipped_share(data))
        filtered = _filter(data, orig_sfreq, cfg)
        resampled = mne.filter.resample(filtered, up=cfg.sfreq, down=orig_sfreq, verbose="error")
        for s in chunk:
            offset = int(round((s - t0) * cfg.sfreq))
            piece = resampled[:, offset : offset + win_out]
            if piece.shape[1] < win_out:  # rounding at the very end of the recording
                piece = np.pad(piece, ((0, 0), (0, win_out - piece.shape[1])), mode="edge")
            pieces.append(piece.astype(np.float32))
    bad = [
        name
        for name, sd, share in zip(raw.ch_names, max_std, clipped_share)
        if sd < FLAT_STD_UV or share > CLIPPED_FRACTION
    ]
    return np.stack(pieces), bad


def _contiguous_chunks(starts: np.ndarray, window_s: float) -> list[np.ndarray]:
    """Runs of back-to-back windows, at most ``_CHUNK_WINDOWS`` each: only those stretches are read."""
    chunks: list[list[float]] = []
    for start in starts:
        if chunks and len(chunks[-1]) < _CHUNK_WINDOWS and np.isclose(start - chunks[-1][-1], window_s):
            chunks[-1].append(float(start))
        else:
            chunks.append([float(start)])
    return [np.asarray(chunk) for chunk in chunks]


def _filter(data: np.ndarray, orig_sfreq: float, cfg: EEGConfig) -> np.ndarray:
    """Notch (when below the original Nyquist) then 0.5-45 Hz band-pass, both zero-phase IIR.

    IIR rather than MNE's default FIR: a 0.5 Hz FIR needs ~7 s of taps, longer
    than a short chunk, while a 4th-order Butterworth run forwards and
    backwards has no such floor and no phase shift. Designed once per rate.
    """
    for sos in _filter_design(orig_sfreq, cfg.line_freq):
        data = signal.sosfiltfilt(sos, data, axis=-1)
    return data


@lru_cache(maxsize=16)
def _filter_design(orig_sfreq: float, line_freq: float) -> tuple[np.ndarray, ...]:
    """Second-order sections: notches at ``line_freq`` and harmonics below Nyquist, then the band-pass."""
    nyquist = orig_sfreq / 2
    stages = []
    for freq in np.arange(line_freq, min(nyquist, BAND_HZ[1] * 3), line_freq):
        b, a = signal.iirnotch(freq, Q=30.0, fs=orig_sfreq)
        stages.append(signal.tf2sos(b, a))
    high = min(BAND_HZ[1], 0.9 * nyquist)
    stages.append(signal.butter(4, (BAND_HZ[0], high), btype="bandpass", output="sos", fs=orig_sfreq))
    return tuple(stages)


def _clipped_share(data: np.ndarray) -> np.ndarray:
    """Per channel, the share of samples pinned at that channel's own minimum or maximum."""
    hi = data.max(axis=1, keepdims=True)
    lo = data.min(axis=1, keepdims=True)
    span = np.maximum(hi - lo, 1e-12)
    tol = span * 1e-6
    at_edge = (data >= hi - tol) | (data <= lo + tol)
    share = at_edge.mean(axis=1)
    share[(hi - lo).ravel() < FLAT_STD_UV] = 0.0  # flat channels are reported as flat, not clipped
    return share
