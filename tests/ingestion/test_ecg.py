"""12-lead ECG: WFDB and EDF records written by the test (wfdb.wrsamp, MNE export), lead aliases, reduced
montages, bad records quarantined with their path, the ecg.csv sidecar, idempotent ingest and no PHI; the
real-data test ingests PTB-XL records with 0 lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.deid.pseudonym import pseudonymise
from ingestion.driver.ingest import ingest
from ingestion.driver.sources import classify
from ingestion.driver.hashing import SourceFile
from ingestion.driver.worker import ReaderConfig
from ingestion.manifest import read_manifest
from ingestion.readers.ecg import read_ecg
from ingestion.readers.ecg_leads import STANDARD_12_LEADS, looks_like_ecg, standard_lead_name
from ingestion.readers.records import QuarantineError

wfdb = pytest.importorskip("wfdb")

SECRET = "test-secret"
CONFIG = ReaderConfig(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                      eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)
PHI = "Jane Q Doe"
PTBXL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "ecg_ptbxl"


def ecg_signal(n_leads: int = 12, fs: float = 500.0, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """A crude ECG in mV: QRS-like spikes at ~72 bpm, a lead-specific amplitude, a T wave and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(fs * seconds)) / fs
    beats = np.arange(0.3, seconds, 60 / 72)
    qrs = sum(np.exp(-0.5 * ((t - b) / 0.012) ** 2) for b in beats)
    twave = sum(np.exp(-0.5 * ((t - b - 0.3) / 0.05) ** 2) for b in beats)
    amp = rng.uniform(0.5, 1.5, n_leads)
    return (qrs[:, None] * amp + 0.2 * twave[:, None] + 0.01 * rng.normal(size=(len(t), n_leads)))


def write_wfdb(folder: Path, name: str, names=STANDARD_12_LEADS, signal: np.ndarray | None = None,
               fs: float = 500.0, comments=(f"name: {PHI}", "age: 67", "sex: F")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = ecg_signal(len(names), fs) if signal is None else signal
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(names), sig_name=list(names), p_signal=data,
                fmt=["16"] * len(names), comments=list(comments), write_dir=str(folder))
    return folder / f"{name}.hea"


def test_lead_aliases() -> None:
    assert [standard_lead_name(n) for n in ("ECG I", "DII", "AVR", "avl", "Lead V1", "V6-REF", "EKG", "Fp1")] == \
        ["I", "II", "aVR", "aVL", "V1", "V6", None, None]
    assert looks_like_ecg(["I", "II", "V1"]) and not looks_like_ecg(["Fp1", "C3", "ECG"])
    assert not looks_like_ecg(["EKG"])  # an EEG's polygraphy channel is no 12-lead ECG


def test_wfdb_record_is_resampled_in_mv_and_keeps_no_header_text(tmp_path: Path) -> None:
    hea = write_wfdb(tmp_path, "rec001")
    item = read_ecg(hea)
    assert item.modality == "ecg" and item.original_patient_id == "rec001"
    assert item.array.shape == (2, 12, 500) and item.array.dtype == np.float32  # 10 s at 500 Hz -> 2 x 5 s at 100
    assert 0.05 < float(np.abs(item.array).max()) < 3.0  # millivolts, not digital units
    meta = item.metadata
    assert meta["montage"] == "standard" and all(meta["leads_present"]) and meta["original_sfreq"] == 500.0
    blob = json.dumps(meta)
    assert PHI not in blob and "age:" not in blob and "sex:" not in blob  # header comments never copied


def test_reduced_montage_and_bad_leads_are_masked_not_refused(tmp_path: Path) -> None:
    names = ("ECG I", "DII", "v5", "Resp")
    data = ecg_signal(4, 250.0, seed=1)
    data[:, 2] = 0.0  # V5 flat: a disconnected electrode
    item = read_ecg(write_wfdb(tmp_path, "holter", names, data, fs=250.0))
    meta = item.metadata
    assert meta["montage"] == "reduced" and meta["bad_leads"] == {"V5": "flat"}
    assert meta["dropped_signals"] == ["Resp"]
    present = dict(zip(STANDARD_12_LEADS, meta["leads_present"]))
    assert present["I"] and present["II"] and not present["V5"] and not present["V1"]
    rows = np.abs(item.array).sum(axis=(0, 2))
    assert (rows > 0).tolist() == meta["leads_present"]


@pytest.mark.parametrize("case, words", [
    ("all_flat", "no usable lead"), ("no_leads", "no standard ECG lead"), ("truncated", "could not be read"),
    ("short", "shorter than one"), ("slow", "below the"),
])
def test_bad_records_are_quarantined_with_a_reason(tmp_path: Path, case: str, words: str) -> None:
    if case == "all_flat":
        hea = write_wfdb(tmp_path, case, ("I", "II"), np.zeros((5000, 2)))
    elif case == "no_leads":
        hea = write_wfdb(tmp_path, case, ("ABP", "PLETH"), ecg_signal(2))
    elif case == "short":
        hea = write_wfdb(tmp_path, case, ("I", "II"), ecg_signal(2, seconds=2.0))
    elif case == "slow":
        hea = write_wfdb(tmp_path, case, ("I", "II"), ecg_signal(2, fs=20.0), fs=20.0)
    else:
        hea = write_wfdb(tmp_path, case)
        dat = hea.with_suffix(".dat")
        dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(QuarantineError, match=words) as err:
        read_ecg(hea)
    assert hea.name in err.value.reason


def test_twelve_lead_edf_is_told_from_eeg_and_read(tmp_path: Path) -> None:
    mne = pytest.importorskip("mne")
    names = [f"ECG {lead}" for lead in STANDARD_12_LEADS]
    info = mne.create_info(names, 500.0, "ecg")
    raw = mne.io.RawArray(ecg_signal(12).T * 1e-3, info, verbose="error")  # volts
    path = tmp_path / "ecg12.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    assert classify(SourceFile("ecg12.edf", path, "0" * 64)) == "ecg"
    item = read_ecg(path, patient_id="PAT-EDF")
    assert item.original_patient_id == "PAT-EDF" and item.array.shape == (2, 12, 500)
    assert all(item.metadata["leads_present"]) and 0.05 < float(np.abs(item.array).max()) < 3.0


def test_ingest_wfdb_with_sidecar_is_idempotent_and_quarantines_with_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_wfdb(src / "records", "r1")
    write_wfdb(src / "records", "r2", signal=ecg_signal(12, seed=2))  # another ECG of the same patient
    write_wfdb(src / "records", "r3", ("I", "II"), np.zeros((5000, 2)))  # all flat
    (src / "records" / "orphan.dat").write_bytes(b"\0" * 64)  # signal file without its header
    pd.DataFrame({"file": ["records/r1.hea", "records/r2", "records/r3"],
                  "patient_id": ["MRN-1", "MRN-1", "MRN-3"]}).to_csv(src / "ecg.csv", index=False)
    home = tmp_path / "home"
    report = ingest(src, None, home, SECRET, workers=1, config=CONFIG)
    manifest = read_manifest(home / "manifest.parquet")
    ecg = manifest[manifest["modality"] == "ecg"].set_index("source_uri")
    assert (ecg.loc[["records/r1.hea", "records/r2.hea"], "status"] == "ok").all()
    assert set(ecg.loc[["records/r1.hea", "records/r2.hea"], "patient_id"]) == {pseudonymise("MRN-1", SECRET)}
    assert list(ecg.loc["records/r1.hea", "source_files"]) == ["records/r1.hea", "records/r1.dat"]
    assert ecg.loc["records/r3.hea", "status"] == "quarantined"
    assert "records/r3.hea" in ecg.loc["records/r3.hea", "reason"] or "r3.hea" in ecg.loc["records/r3.hea", "reason"]
    orphan = manifest[manifest["source_uri"] == "records/orphan.dat"]
    assert orphan["status"].tolist() == ["quarantined"] and "WFDB" in orphan["reason"].iloc[0]
    assert "ecg.csv" not in set(manifest["source_uri"])  # the sidecar is read, never ingested as notes
    text = manifest.to_json() + "".join(p.read_text() for p in (home / "quarantine").glob("*.json"))
    assert "MRN-1" not in text and PHI not in text and "age: 67" not in text
    arrays = sorted((home / "arrays" / "ecg").glob("*.npy"))
    assert len(arrays) == 2 and np.load(arrays[0]).shape == (2, 12, 500)
    again = ingest(src, None, home, SECRET, workers=1, config=CONFIG)
    assert again.new == 0 and len(read_manifest(home / "manifest.parquet")) == len(manifest)
    assert report.new >= 4


@pytest.mark.realdata
def test_ptbxl_records_ingest_with_none_lost(tmp_path: Path) -> None:
    if not PTBXL.is_dir():
        pytest.skip(f"PTB-XL subset not present at {PTBXL}")
    src = tmp_path / "src"
    heads = sorted((PTBXL / "records100" / "00000").glob("*.hea"))[:12]
    for hea in heads:
        for f in (hea, hea.with_suffix(".dat")):
            (src / f.name).parent.mkdir(parents=True, exist_ok=True)
            (src / f.name).write_bytes(f.read_bytes())
    ingest(src, None, tmp_path / "home", SECRET, workers=1, config=CONFIG)
    manifest = read_manifest(tmp_path / "home" / "manifest.parquet")
    assert len(manifest) == len(heads) and (manifest["status"] == "ok").all() and (manifest["modality"] == "ecg").all()
    meta = [json.loads(m) for m in manifest["meta_json"]]
    assert all(m["montage"] == "standard" and m["original_sfreq"] == 100.0 for m in meta)
