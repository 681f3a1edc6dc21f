"""Reduced EEG montages on real EDF files: one unnamed lead, four named channels, and the encoder's mask."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mne
import numpy as np
import pytest

from ingestion.modalities import STANDARD_1020
from ingestion.readers.eeg import read_eeg
from ingestion.readers.records import QuarantineError
from models.encoders.eeg import HOMOLOGOUS_PAIRS, EEGEncoder
from tests.ingestion.test_eeg import make_raw, peak_hz, write

SFREQ = 173.61  # the Bonn segments' rate: not a multiple of 128


def lead_raw(names: list[str], freqs: list[float], seconds: float = 23.6) -> mne.io.RawArray:
    """One sine (plus noise) per channel, in microvolts, with a patient code in the header."""
    rng = np.random.default_rng(5)
    t = np.arange(173 * int(seconds)) / SFREQ  # whole EDF records of 173 samples (MNE's export at this rate)
    data = np.stack([40 * np.sin(2 * np.pi * f * t) + rng.normal(0, 5, t.size) for f in freqs])
    raw = mne.io.RawArray(data * 1e-6, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    raw.set_meas_date(dt.datetime(2024, 5, 3, tzinfo=dt.timezone.utc))
    raw.info["subject_info"] = {"his_id": "Z001"}
    return raw


def present(item) -> list[str]:
    return [c for c, on in zip(STANDARD_1020, item.metadata["channels_present"]) if on]


def test_one_unnamed_channel_is_kept_in_the_cz_row(tmp_path: Path) -> None:
    item = read_eeg(write(lead_raw(["Ch1"], [10.0]), tmp_path / "Z001.edf"))
    meta = item.metadata
    assert item.array.shape == (5, 19, 512) and item.original_patient_id == "Z001"
    assert meta["montage"] == "reduced" and present(item) == ["Cz"]
    assert meta["unnamed_channel"] == "Ch1" and meta["unnamed_slot"] == "Cz" and meta["dropped_channels"] == []
    cz = STANDARD_1020.index("Cz")
    assert not np.delete(item.array, cz, axis=1).any()  # every other row is zero
    assert peak_hz(item.array[:, cz, :].ravel(), 128.0) == pytest.approx(10.0, abs=0.3)


def test_four_named_channels_keep_their_rows(tmp_path: Path) -> None:
    names = ["EEG Fp1-REF", "EEG C3-REF", "EEG O1-REF", "EEG O2-REF"]
    item = read_eeg(write(lead_raw(names, [3.0, 6.0, 10.0, 10.0]), tmp_path / "rec.edf"))
    assert item.metadata["montage"] == "reduced" and item.metadata["unnamed_channel"] is None
    assert present(item) == ["Fp1", "C3", "O1", "O2"]
    rows = [STANDARD_1020.index(c) for c in ("Fp1", "C3", "O1", "O2")]
    assert not np.delete(item.array, rows, axis=1).any()
    assert peak_hz(item.array[:, STANDARD_1020.index("Fp1"), :].ravel(), 128.0) == pytest.approx(3.0, abs=0.3)


def test_full_montage_is_standard_with_every_row_present(tmp_path: Path) -> None:
    item = read_eeg(write(make_raw(), tmp_path / "rec.edf"))
    assert item.metadata["montage"] == "standard" and all(item.metadata["channels_present"])
    assert item.metadata["unnamed_channel"] is None


def test_several_unnamed_channels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="not a single unnamed EEG channel"):
        read_eeg(write(lead_raw(["Ch1", "Ch2"], [10.0, 10.0]), tmp_path / "rec.edf"))


def test_only_non_eeg_channels_are_refused(tmp_path: Path) -> None:
    raw = lead_raw(["EKG"], [1.0])
    raw.set_channel_types({"EKG": "ecg"})
    with pytest.raises(QuarantineError, match="no 10-20 scalp channels"):
        read_eeg(write(raw, tmp_path / "rec.edf"))


def test_flat_single_lead_is_refused(tmp_path: Path) -> None:
    raw = lead_raw(["Ch1"], [10.0])
    raw._data[:] = 0.0
    with pytest.raises(QuarantineError, match="no usable EEG channel"):
        read_eeg(write(raw, tmp_path / "rec.edf"))


def test_encoder_uses_only_present_channels(tmp_path: Path) -> None:
    names = ["Fp1", "C3", "O1", "O2"]
    item = read_eeg(write(lead_raw(names, [3.0, 6.0, 10.0, 10.0]), tmp_path / "rec.edf"))
    encoder = EEGEncoder()
    prepared = encoder.prepare(item.array)
    rows = [STANDARD_1020.index(c) for c in names]
    assert not np.delete(prepared["x"], rows, axis=1).any()  # the network input is zero where absent
    n_bands = len(encoder.config.bands)
    powers = prepared["extra"][: 19 * n_bands].reshape(19, n_bands)
    assert np.allclose(powers[STANDARD_1020.index("Cz")], powers[rows].mean(axis=0))  # absent: mean of present
    assert powers[STANDARD_1020.index("Fp1"), 0] > powers[STANDARD_1020.index("O1"), 0]  # delta where it was put
    asym = prepared["extra"][19 * n_bands:].reshape(len(HOMOLOGOUS_PAIRS), n_bands)
    pair_has_both = [left in names and right in names for left, right in HOMOLOGOUS_PAIRS]
    assert not asym[~np.asarray(pair_has_both)].any() and pair_has_both.count(True) == 1  # only O1/O2
    embedding = encoder.encode_batch([item.array])
    assert embedding.shape == (1, encoder.dim) and np.isfinite(np.asarray(embedding)).all()


def test_one_lead_encoding_matches_full_dimension(tmp_path: Path) -> None:
    one = read_eeg(write(lead_raw(["Ch1"], [10.0]), tmp_path / "one.edf"))
    full = read_eeg(write(make_raw(), tmp_path / "full.edf"))
    encoder = EEGEncoder()
    out = np.asarray(encoder.encode_batch([one.array, full.array]))
    assert out.shape == (2, encoder.dim) and np.isfinite(out).all()
    powers = encoder.prepare(one.array)["extra"][: 19 * len(encoder.config.bands)].reshape(19, -1)
    assert np.allclose(powers, powers[STANDARD_1020.index("Cz")])  # its spectrum on every channel, no -6 floor
