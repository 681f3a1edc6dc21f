"""read_eeg on real files: the TUH sample, and EDF/FIF/BrainVision files written here with MNE."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mne
import numpy as np
import pytest

from ingestion.modalities import STANDARD_1020
from ingestion.readers.eeg import read_eeg
from ingestion.readers.eeg_channels import map_channels, standard_channel_name
from ingestion.readers.records import QuarantineError

OLD_NAMES = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}


def make_raw(
    sfreq: float = 256.0,
    seconds: float = 30.0,
    names: list[str] | None = None,
    extra: tuple[str, ...] = ("EKG", "PHOTIC"),
    line_uv: float = 0.0,
    line_freq: float = 50.0,
    his_id: str | None = "MRN00412345",
) -> mne.io.RawArray:
    """A recording with vendor-style names: alpha (10 Hz) in O1/O2, noise elsewhere, optional mains hum."""
    if names is None:
        names = [f"EEG {OLD_NAMES.get(ch, ch).upper()}-REF" for ch in STANDARD_1020]
    rng = np.random.default_rng(0)
    n = int(sfreq * seconds)
    t = np.arange(n) / sfreq
    data = rng.normal(0, 10, (len(names) + len(extra), n))
    for i, name in enumerate(names):
        if "O1" in name.upper() or "O2" in name.upper():
            data[i] += 40 * np.sin(2 * np.pi * 10 * t)
    data += line_uv * np.sin(2 * np.pi * line_freq * t)
    info = mne.create_info(list(names) + list(extra), sfreq, ["eeg"] * len(names) + ["ecg", "stim"][: len(extra)])
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
    raw.set_meas_date(dt.datetime(2024, 5, 3, 10, 0, tzinfo=dt.timezone.utc))
    if his_id is not None:
        raw.info["subject_info"] = {
            "his_id": his_id, "first_name": "Jane", "last_name": "Doe", "birthday": dt.date(1950, 2, 17)
        }
    return raw


def write(raw: mne.io.BaseRaw, path: Path) -> Path:
    if path.suffix == ".fif":
        raw.save(path, overwrite=True, verbose="error")
    else:
        mne.export.export_raw(path, raw, overwrite=True, verbose="error")
    return path


def peak_hz(signal: np.ndarray, sfreq: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(signal.size, 1 / sfreq)[spectrum.argmax()])


@pytest.mark.parametrize(
    "name, expected",
    [("EEG FP1-REF", "Fp1"), ("Fp1-LE", "Fp1"), ("eeg t3-avg", "T7"), ("T6", "P8"), ("CZ", "Cz"),
     ("C3-CZ", "C3"), ("EEG A1-REF", None), ("FP1-F7", None), ("O2", "O2")],
)
def test_channel_names_standardised(name: str, expected: str | None) -> None:
    assert standard_channel_name(name) == expected


def test_map_channels_separates_non_eeg_and_duplicates() -> None:
    cmap = map_channels(["EEG FP1-REF", "Fp1", "EEG EKG1-REF", "IBI", "BURSTS", "SUPPR", "PHOTIC-REF", "T1"])
    assert cmap.mapping == {"EEG FP1-REF": "Fp1"}
    assert set(cmap.non_eeg) == {"EEG EKG1-REF", "IBI", "BURSTS", "SUPPR", "PHOTIC-REF"}
    assert set(cmap.unmapped) == {"Fp1", "T1"}
    assert len(cmap.missing) == 18


@pytest.mark.realdata
def test_tuh_sample(realdata: Path) -> None:
    item = read_eeg(realdata / "eeg" / "00009578_s002_t001.edf", secret="site-secret")
    assert item.modality == "eeg"
    assert item.original_patient_id == "00009578"
    assert item.array.shape == (4, 19, 512) and item.array.dtype == np.float32
    assert item.metadata["missing_channels"] == [] and item.metadata["bad_channels"] == []
    assert item.metadata["channel_map"]["EEG T3-REF"] == "T7"
    assert {"EEG EKG1-REF", "PHOTIC-REF", "IBI", "BURSTS", "SUPPR"} <= set(item.metadata["non_eeg_channels"])
    assert item.metadata["original_sfreq"] == 250.0 and item.metadata["duration_s"] == 17.0
    # A real scalp EEG in microvolts: every channel carries signal of physiological size.
    std = item.array.std(axis=(0, 2))
    assert np.all(std > 1) and np.all(std < 500)
    # Header de-identification: no birth date (1987-01-01) in what leaves the reader.
    text = json.dumps(item.metadata)
    assert "1987" not in text and "birthday" not in text
    assert item.metadata["meas_date_shifted"] != "2013-02-28" and item.event_date == "2013-02-28"


def test_edf_roundtrip_filters_resamples_and_keeps_alpha(tmp_path: Path) -> None:
    path = write(make_raw(line_uv=30.0), tmp_path / "rec.edf")
    item = read_eeg(path, sfreq=128.0, window_s=4.0, line_freq=50.0)
    assert item.original_patient_id == "MRN00412345"
    assert item.array.shape == (7, 19, 512)
    assert item.metadata["missing_channels"] == [] and item.metadata["notch_applied"] is True
    assert set(item.metadata["non_eeg_channels"]) == {"EKG", "PHOTIC"}
    o1 = item.array[:, STANDARD_1020.index("O1"), :].ravel()
    assert peak_hz(o1, 128.0) == pytest.approx(10.0, abs=0.2)
    # Mains hum (30 uV at 50 Hz on every channel) is gone: the amplitude is the 10 uV noise, band-limited.
    fz = item.array[:, STANDARD_1020.index("Fz"), :]
    assert fz.std() < 10.0
    assert "Jane" not in json.dumps(item.metadata) and "1950" not in json.dumps(item.metadata)
    assert item.event_date == "2024-05-03"


def test_missing_flat_and_clipped_channels(tmp_path: Path) -> None:
    names = [ch for ch in STANDARD_1020 if ch not in ("Fz", "Pz")]
    raw = make_raw(names=names, extra=())
    data = raw.get_data()
    data[names.index("C3")] = 0.0  # flat
    clipped = np.clip(data[names.index("C4")], -5e-6, 5e-6)  # amplifier saturation at +-5 uV
    data[names.index("C4")] = clipped
    raw = mne.io.RawArray(data, raw.info, verbose="error")
    item = read_eeg(write(raw, tmp_path / "rec.fif"))
    assert item.metadata["missing_channels"] == ["Fz", "Pz"]
    assert set(item.metadata["bad_channels"]) == {"C3", "C4"}
    for ch in ("Fz", "Pz", "C3", "C4"):
        assert not item.array[:, STANDARD_1020.index(ch), :].any()
    assert item.array[:, STANDARD_1020.index("F3"), :].std() > 1


def test_brainvision_needs_supplied_patient_id(tmp_path: Path) -> None:
    path = write(make_raw(his_id=None, extra=()), tmp_path / "rec.vhdr")
    with pytest.raises(QuarantineError, match="no patient code"):
        read_eeg(path)
    item = read_eeg(path, patient_id="MRN00000001")
    assert item.original_patient_id == "MRN00000001"
    assert item.array.shape == (7, 19, 512)


def test_long_recording_windows_capped_and_spread(tmp_path: Path) -> None:
    raw = make_raw(sfreq=100.0, seconds=600.0, extra=())
    item = read_eeg(write(raw, tmp_path / "long.fif"), sfreq=64.0, window_s=2.0, max_windows=10)
    assert item.array.shape == (10, 19, 128)
    assert item.metadata["n_windows_total"] == 300
    # 50 Hz is the Nyquist of a 100 Hz recording: no notch is possible there.
    assert item.metadata["notch_applied"] is False


def test_corrupt_header_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "garbage.edf"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(QuarantineError, match="could not be read"):
        read_eeg(path)


def test_no_1020_channels_quarantined(tmp_path: Path) -> None:
    raw = make_raw(names=["X1", "X2", "A1"], extra=("EKG",))
    with pytest.raises(QuarantineError, match="no 10-20"):
        read_eeg(write(raw, tmp_path / "rec.edf"))


def test_too_few_channels_read_as_reduced_montage(tmp_path: Path) -> None:
    """Five 10-20 channels were refused ("only 5 of 19"); now they are a reduced montage with a mask."""
    raw = make_raw(names=["Fp1", "Fp2", "C3", "C4", "O1"], extra=())
    item = read_eeg(write(raw, tmp_path / "rec.edf"))
    assert item.metadata["montage"] == "reduced"
    kept = [c for c, on in zip(STANDARD_1020, item.metadata["channels_present"]) if on]
    assert kept == ["Fp1", "Fp2", "C3", "C4", "O1"]


def test_too_short_quarantined(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="shorter than one"):
        read_eeg(write(make_raw(seconds=2.0), tmp_path / "short.edf"))


def test_nan_samples_quarantined(tmp_path: Path) -> None:
    raw = make_raw(extra=())
    data = raw.get_data()
    data[3, 1000:1100] = np.nan
    raw = mne.io.RawArray(data, raw.info, verbose="error")
    with pytest.raises(QuarantineError, match="NaN"):
        read_eeg(write(raw, tmp_path / "nan.fif"))


def test_missing_file_quarantined(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="does not exist"):
        read_eeg(tmp_path / "nope.edf")
