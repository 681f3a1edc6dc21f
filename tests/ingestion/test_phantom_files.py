"""The phantom export read back with pydicom and MNE: formats, geometry, disease signal, planted PHI."""

from __future__ import annotations

import re
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy.signal import welch

from ingestion.modalities import PHANTOM_MODALITIES as MODALITIES, STANDARD_1020  # what the phantom draws
from ingestion.phantom.eeg import LEFT, OLD_NAMES, RIGHT
from ingestion.phantom.phi import make_identity
from ingestion.phantom.xray import write_xray

TOKEN = re.compile(r"[0-9a-f]{16}")


@pytest.fixture(scope="module")
def answers(small_phantom: Path) -> pd.DataFrame:
    return pd.read_parquet(small_phantom / "answers.parquet")


def _rows(answers: pd.DataFrame, modality: str):
    rows = [row for _, row in answers.iterrows() if row[f"present_{modality}"]]
    assert rows, f"small_phantom has no {modality}"
    return rows


def test_layout_cohort_table_and_answers_agree(small_phantom: Path, answers: pd.DataFrame) -> None:
    cohort = pd.read_csv(small_phantom / "cohort.csv")
    assert list(cohort.columns) == ["patient_id", "label", "age", "sex", "crp", "wbc", "lactate"]
    assert len(cohort) == 16 and cohort["patient_id"].is_unique
    assert cohort["patient_id"].tolist() == answers["patient_id"].tolist()
    assert cohort["label"].tolist() == answers["label"].tolist()
    assert set(cohort["sex"]) <= {"F", "M"} and cohort[["crp", "wbc", "lactate"]].gt(0).all().all()
    present = answers[[f"present_{m}" for m in MODALITIES]]
    assert present.any(axis=1).all() and not present.all(axis=None)  # 25 % missingness left gaps
    listed = set()
    for m in MODALITIES:
        for _, row in answers.iterrows():
            assert bool(len(row[f"files_{m}"])) == row[f"present_{m}"]  # missing modality = no file
            listed |= set(row[f"files_{m}"])
    on_disk = {p.relative_to(small_phantom).as_posix() for p in small_phantom.rglob("*") if p.is_file()}
    assert on_disk - {"cohort.csv", "answers.parquet"} == listed  # nothing unlisted, nothing lost


def test_file_and_folder_names_carry_no_phi(small_phantom: Path) -> None:
    for path in small_phantom.rglob("*"):
        rel = path.relative_to(small_phantom)
        if rel.parts[0] in ("dicom", "eeg", "notes") and len(rel.parts) > 1:
            for part in rel.parts[1:]:
                assert TOKEN.fullmatch(Path(part).stem), rel


def test_ct_series_geometry_rescale_and_lesion_side(small_phantom: Path, answers: pd.DataFrame) -> None:
    for row in _rows(answers, "ct"):
        slices = [pydicom.dcmread(small_phantom / f) for f in row["files_ct"]]
        assert 32 <= len(slices) <= 64
        first = slices[0]
        assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert first.SOPClassUID == pydicom.uid.CTImageStorage and first.Modality == "CT"
        assert first.PatientID == row["patient_id"]
        assert 64 <= first.Rows <= 128 and first.Rows == first.Columns
        assert len({s.SeriesInstanceUID for s in slices}) == 1
        assert len({s.SOPInstanceUID for s in slices}) == len(slices)
        assert sorted(int(s.InstanceNumber) for s in slices) == list(range(1, len(slices) + 1))
        # geometry: positions projected on the slice normal are equally spaced by SliceThickness
        iop = np.array(first.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        by_pos = sorted(slices, key=lambda s: float(np.dot(normal, np.array(s.ImagePositionPatient, float))))
        positions = np.array([np.dot(normal, np.array(s.ImagePositionPatient, float)) for s in by_pos])
        np.testing.assert_allclose(np.diff(positions), float(first.SliceThickness), atol=1e-3)
        np.testing.assert_allclose([float(s.SliceLocation) for s in by_pos], positions, atol=1e-3)
        # file names (random) do not follow slice order
        names = [Path(f).name for f in row["files_ct"]]
        by_name = [int(s.InstanceNumber) for _, s in sorted(zip(names, slices), key=lambda t: t[0])]
        assert by_name != sorted(by_name) and by_name != sorted(by_name, reverse=True)
        hu = np.stack([s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in by_pos])
        assert abs(np.median(hu[:, 0, 0]) + 1000) < 30  # air in the corner
        mid = hu[len(hu) // 2]
        assert abs(np.median(mid[(mid > -100) & (mid < 150)]) - 40) < 10  # soft tissue
        assert abs(np.median(mid[mid > 400]) - 700) < 40  # skull
        tissue = np.where((hu > 20) & (hu < 300), hu - 40.0, 0.0)
        half = hu.shape[2] // 2
        left_minus_right = tissue[:, :, half:].sum() - tissue[:, :, :half].sum()  # +x (columns) = patient left
        assert (left_minus_right > 0) == (row["ct_side"] == "L"), row["patient_id"]


def test_xray_files_are_valid_cr_or_dx(tmp_path: Path) -> None:
    """Twelve X-rays from one generator: valid headers, and the vendor variety readers must handle."""
    seen = set()
    rng = np.random.default_rng(3)
    root = tmp_path
    for i in range(12):
        identity = make_identity(rng, f"MRN{10_000_000 + i}", "F", 60)
        item = write_xray(root, rng, identity, evidence=0.0)
        ds = pydicom.dcmread(item.files[0])
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        expected = {"CR": pydicom.uid.ComputedRadiographyImageStorage,
                    "DX": pydicom.uid.DigitalXRayImageStorageForPresentation}[ds.Modality]
        assert ds.SOPClassUID == expected == ds.file_meta.MediaStorageSOPClassUID
        assert ds.BitsStored in (12, 16) and int(ds.pixel_array.max()) <= 2**ds.BitsStored - 1
        seen.add((ds.Modality, ds.PhotometricInterpretation, int(ds.BitsStored)))
    assert {s[0] for s in seen} == {"CR", "DX"}
    assert {s[1] for s in seen} == {"MONOCHROME1", "MONOCHROME2"}
    assert {s[2] for s in seen} == {12, 16}


def test_xray_opacity_rises_with_evidence(tmp_path: Path) -> None:
    """Same patient and draws, two evidence values: the lungs get denser (in MONOCHROME2 terms)."""
    def density(evidence: float) -> float:
        rng = np.random.default_rng(8)
        identity = make_identity(rng, "MRN12345678", "M", 50)
        ds = pydicom.dcmread(write_xray(tmp_path / str(evidence), rng, identity, evidence).files[0])
        img = ds.pixel_array.astype(float) / (2**ds.BitsStored - 1)
        return float((1 - img if ds.PhotometricInterpretation == "MONOCHROME1" else img).sum())

    assert density(3.0) > density(0.0) > density(-3.0)


def _standard_name(label: str) -> str:
    name = re.sub(r"^EEG ", "", label)
    name = re.sub(r"-(REF|LE)$", "", name)
    old = {v.upper(): k for k, v in OLD_NAMES.items()}
    lookup = {ch.upper(): ch for ch in STANDARD_1020}
    return old.get(name.upper(), lookup.get(name.upper(), name))


def test_eeg_reads_back_with_mne_with_focal_slowing_on_the_planted_side(small_phantom: Path,
                                                                        answers: pd.DataFrame) -> None:
    for row in _rows(answers, "eeg"):
        raw = mne.io.read_raw_edf(small_phantom / row["files_eeg"][0], preload=True, verbose="error")
        assert raw.info["sfreq"] in (250.0, 256.0, 500.0)
        assert 30 <= raw.n_times / raw.info["sfreq"] <= 40
        eeg = [ch for ch in raw.ch_names if "EKG" not in ch and "ECG" not in ch]
        assert len(eeg) == 19 and len(raw.ch_names) in (19, 20)
        mapping = {ch: _standard_name(ch) for ch in eeg}
        assert sorted(mapping.values()) == sorted(STANDARD_1020)
        assert raw.info["subject_info"]["his_id"] == row["patient_id"]
        data = raw.get_data(picks=eeg) * 1e6  # microvolts
        freqs, psd = welch(data, fs=raw.info["sfreq"], nperseg=int(4 * raw.info["sfreq"]))
        delta = psd[:, (freqs >= 1) & (freqs <= 4)].mean(axis=1)
        by_name = dict(zip(mapping.values(), delta))
        left = np.median([by_name[c] for c in LEFT])
        right = np.median([by_name[c] for c in RIGHT])
        assert (left > right) == (row["eeg_side"] == "L"), (row["patient_id"], left, right)
        line = psd[:, np.argmin(abs(freqs - 50))].mean()
        assert line > 4 * psd[:, (freqs > 40) & (freqs < 46)].mean()  # 50 Hz mains peak


def test_eeg_vendor_name_styles_vary(small_phantom: Path, answers: pd.DataFrame) -> None:
    styles = set()
    for row in _rows(answers, "eeg"):
        labels = mne.io.read_raw_edf(small_phantom / row["files_eeg"][0], verbose="error").ch_names
        styles.add(next(label for label in labels if _standard_name(label) == "Fp1"))
    assert len(styles) >= 2, styles


def test_notes_have_header_sections_negations_and_planted_phi(small_phantom: Path, answers: pd.DataFrame) -> None:
    for row in _rows(answers, "note"):
        text = (small_phantom / row["files_note"][0]).read_text(encoding="utf-8")
        lines = text.splitlines()
        assert lines[0] == f"MRN: {row['patient_id']}"
        assert re.fullmatch(r"Date: \d{4}-\d{2}-\d{2}", lines[1]) and lines[2].startswith("Note type: ")
        assert lines[3] == ""
        for section in ("HISTORY OF PRESENT ILLNESS:", "FINDINGS:", "IMPRESSION:", "PLAN:"):
            assert section in text
        assert re.search(r"No evidence of|Denies|Negative for|No .* noted", text)
        planted_here = [s for s in row["planted_phi"] if s in text]
        assert re.search(r"\(\d{3}\) 555-\d{4}", text) and any(", " in s and s in text for s in planted_here)
        assert len(planted_here) >= 7  # name, DOB, MRN, phone, address, dates, surname


def test_every_planted_phi_string_is_in_that_patients_files(small_phantom: Path, answers: pd.DataFrame) -> None:
    for _, row in answers.iterrows():
        blobs = []
        for m in ("ct", "xray"):
            for f in row[f"files_{m}"][:1]:
                ds = pydicom.dcmread(small_phantom / f, stop_before_pixels=True)
                blobs += [str(el.value) for el in ds.iterall() if isinstance(el.value, (str, pydicom.valuerep.PersonName))]
        for f in row["files_eeg"]:
            blobs.append((small_phantom / f).read_bytes()[:256].decode("ascii"))
        for f in row["files_note"]:
            blobs.append((small_phantom / f).read_text(encoding="utf-8"))
        corpus = "\n".join(blobs)
        assert len(row["planted_phi"]) >= 5
        missing = [s for s in row["planted_phi"] if s not in corpus]
        assert not missing, (row["patient_id"], missing)


def test_note_findings_and_temperature_follow_the_note_evidence(small_phantom: Path, answers: pd.DataFrame) -> None:
    from ingestion.phantom.notes import DISEASE_FINDINGS, positive_finding_count, temperature_c

    for row in _rows(answers, "note"):
        text = (small_phantom / row["files_note"][0]).read_text(encoding="utf-8")
        findings = text.split("FINDINGS:")[1].split("IMPRESSION:")[0]
        stated = [f for f in DISEASE_FINDINGS
                  if re.search(rf"(c/o|notable for|Reports|\+) {re.escape(f)}\b", findings)]
        assert len(stated) == positive_finding_count(row["ev_note"]), (row["patient_id"], stated)
        assert f"T {temperature_c(row['ev_note']):.1f} C" in findings
