"""Bad input through the real readers: none crashes the run, none vanishes, each gets a reason.

One source folder holds every bad case beside a few good files; it is ingested
once (module fixture) and each test checks its own case in the manifest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.encaps import encapsulate

from ingestion.driver.ingest import IngestReport, ingest

from ingestion.deid.pseudonym import pseudonymise
from ingestion.driver.worker import ReaderConfig
from ingestion.manifest import read_manifest
from ingestion.modalities import STANDARD_1020
from tests.ingestion.dicom_factory import cr_dataset, ct_slice_dataset, write_ct_series
from tests.ingestion.source_factory import write_edf, write_note

SECRET = "bad-input-secret"
pytestmark = pytest.mark.slow  # one shared ingest run; importing torch, MONAI, MNE and spaCy dominates

READER_ARGS = dict(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                   eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)


def _volume(depth: int = 6, size: int = 16) -> np.ndarray:
    return (np.arange(depth * size * size).reshape(depth, size, size) % 400 + 900).astype(np.int16)


def build_source(src: Path) -> dict[str, str]:
    """Write every case; return case name -> the relative path (or folder) that identifies it."""
    cases: dict[str, str] = {}
    # good files
    write_ct_series(src / "good_ct", _volume(), patient_id="MRN00000001")
    (src / "xr").mkdir(parents=True)
    cr_dataset(np.full((40, 40), 300, np.uint16), patient_id="MRN00000001").save_as(
        src / "xr" / "good.dcm", enforce_file_format=True)
    write_edf(src / "eeg" / "good.edf", list(STANDARD_1020))
    # truncated DICOM: a radiograph cut in the middle of its pixel data
    full = src / "xr" / "whole.dcm"
    cr_dataset(np.full((64, 64), 200, np.uint16), patient_id="MRN00000002").save_as(full, enforce_file_format=True)
    (src / "xr" / "truncated.dcm").write_bytes(full.read_bytes()[: full.stat().st_size - 3000])
    full.unlink()
    cases["truncated"] = "xr/truncated.dcm"
    # a text file named .dcm
    (src / "xr" / "readme.dcm").write_text("this is not DICOM\n")
    cases["not_dicom"] = "xr/readme.dcm"
    # DICOM without pixel data
    ds = cr_dataset(np.full((8, 8), 1, np.uint16), patient_id="MRN00000003")
    del ds.PixelData
    ds.save_as(src / "xr" / "nopixels.dcm", enforce_file_format=True)
    cases["no_pixels"] = "xr/nopixels.dcm"
    # a CT series with a missing slice
    write_ct_series(src / "gap_ct", _volume(), skip=[3], patient_id="MRN00000004",
                    series_uid="1.2.826.0.1.3680043.8.498.444")
    cases["missing_slice"] = "gap_ct"
    # a CT series whose slices differ in size
    mixed = src / "mixed_ct"
    mixed.mkdir()
    for k, size in enumerate((16, 16, 20, 16)):
        ct_slice_dataset(np.zeros((size, size), np.int16), (0.0, 0.0, 2.5 * k), instance=k + 1,
                         patient_id="MRN00000005", series_uid="1.2.826.0.1.3680043.8.498.555").save_as(
            mixed / f"s{k}.dcm", enforce_file_format=True)
    cases["mixed_sizes"] = "mixed_ct"
    # unsupported transfer syntax (MPEG2: no pydicom decoder exists)
    ds = cr_dataset(np.full((8, 8), 1, np.uint16), patient_id="MRN00000006")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(src / "xr" / "mpeg2.dcm", enforce_file_format=True)
    cases["transfer_syntax"] = "xr/mpeg2.dcm"
    # a corrupt EDF header, and an EEG without any 10-20 channel
    (src / "eeg" / "corrupt.edf").write_bytes(np.random.default_rng(1).bytes(4096))
    cases["corrupt_edf"] = "eeg/corrupt.edf"
    write_edf(src / "eeg" / "no1020.edf", ["X1", "X2", "A1"], patient="MRN00000007")
    cases["no_1020"] = "eeg/no1020.edf"
    # notes: empty, Latin-1, and one of a patient absent from the cohort table
    write_note(src / "notes" / "empty.txt", "MRN00000001", "")
    cases["empty_note"] = "notes/empty.txt"
    write_note(src / "notes" / "latin1.txt", "MRN00000001", "Patient seen for Ménière's disease; café au lait spots.\n",
               encoding="latin-1")
    cases["latin1"] = "notes/latin1.txt"
    write_note(src / "notes" / "stranger.txt", "MRN99999999", "FINDINGS: No acute distress.\n")
    cases["unknown_patient"] = "notes/stranger.txt"
    # duplicate files: a byte-identical copy of the good EEG
    (src / "copies").mkdir()
    shutil.copy(src / "eeg" / "good.edf", src / "copies" / "same.edf")
    cases["duplicate"] = "copies/same.edf"
    # unreadable: a file whose read raises PermissionError (patched below; chmod 000 does not stop root)
    (src / "notes" / "locked.txt").write_text("MRN: MRN00000001\n")
    cases["permission"] = "notes/locked.txt"
    return cases


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[IngestReport, pd.DataFrame, dict[str, str], Path]:
    root = tmp_path_factory.mktemp("bad")
    src, home = root / "src", root / "home"
    cases = build_source(src)
    cohort = root / "cohort.csv"
    cohort.write_text("patient_id,label\n" + "\n".join(f"MRN0000000{i},{i % 2}" for i in range(1, 8)) + "\n")
    locked = src / cases["permission"]
    import ingestion.driver.hashing as hashing
    import ingestion.driver.sources as sources

    real_sha = hashing.sha256_file
    patch = pytest.MonkeyPatch()

    def deny(path: Path, chunk: int = hashing.CHUNK) -> str:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_sha(path, chunk)

    # Both routes to the bytes: the plain hash and the stat-keyed cache that ingest uses inside a home.
    patch.setattr(sources, "sha256_file", deny)
    patch.setattr(hashing, "sha256_file", deny)
    try:
        report = ingest(src, cohort, home, SECRET, workers=2, config=ReaderConfig(**READER_ARGS))
    finally:
        patch.undo()
    return report, read_manifest(home / "manifest.parquet"), cases, src


def _row(ingested, case: str) -> pd.Series:
    _, df, cases, _ = ingested
    rel = cases[case]
    hits = df[df["source_files"].map(lambda files: any(f == rel or f.startswith(rel + "/") for f in files))]
    assert len(hits) == 1, f"{case}: expected one manifest row for {rel}, got {len(hits)}"
    return hits.iloc[0]


def test_every_source_file_appears_exactly_once(ingested) -> None:
    _, df, _, src = ingested
    on_disk = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    listed = sorted(f for files in df["source_files"] for f in files)
    assert listed == on_disk


@pytest.mark.parametrize("case, words", [
    ("truncated", "truncat|corrupt|short"),
    ("not_dicom", "not a DICOM|DICM"),
    ("no_pixels", "pixel data"),
    ("missing_slice", "missing|gap"),
    ("mixed_sizes", "size|shape|differ|mixed|rows|columns"),
    ("transfer_syntax", "transfer syntax"),
    ("corrupt_edf", "could not be read|corrupt|header"),
    ("no_1020", "10-20"),
    ("empty_note", "empty"),
    ("permission", "permission denied"),
])
def test_bad_input_is_quarantined_with_a_reason(ingested, case: str, words: str) -> None:
    row = _row(ingested, case)
    assert row["status"] == "quarantined"
    assert row["array_uri"] == ""
    assert str(ingested[3]) not in row["reason"]  # paths relative to the source root
    assert pd.Series([row["reason"]]).str.contains(words, case=False, regex=True).item(), row["reason"]
    home = Path(ingested[0].manifest_path).parent
    assert (home / "quarantine" / f"{row['item_id']}.json").is_file()
    assert any(q.source_uri == row["source_uri"] for q in ingested[0].quarantined)


def test_latin1_note_is_read_not_quarantined(ingested) -> None:
    row = _row(ingested, "latin1")
    assert row["status"] == "ok", row["reason"]
    home = Path(ingested[0].manifest_path).parent
    assert "Ménière" in (home / row["array_uri"]).read_text(encoding="utf-8")


def test_duplicate_file_listed_on_the_original_row(ingested) -> None:
    row = _row(ingested, "duplicate")
    assert sorted(row["source_files"]) == ["copies/same.edf", "eeg/good.edf"]
    assert row["status"] == "ok" and "duplicate_of" in row["meta_json"]


def test_unknown_patient_kept_ok_and_reported(ingested) -> None:
    report = ingested[0]
    row = _row(ingested, "unknown_patient")
    assert row["status"] == "ok"
    assert row["patient_id"] == pseudonymise("MRN99999999", SECRET)
    assert report.cohort.in_files_not_in_cohort == (row["patient_id"],)


def test_good_items_survive_next_to_bad_ones(ingested) -> None:
    _, df, _, _ = ingested
    ok = df[df["status"] == "ok"]
    assert sorted(ok["modality"]) == ["ct", "eeg", "note", "note", "xray"]
    for uri in ok["array_uri"]:
        assert (Path(ingested[0].manifest_path).parent / uri).is_file()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_chmod_000_file_is_quarantined(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading (covered by the patched case)")
    src = tmp_path / "src"
    note = write_note(src / "n.txt", "MRN00000001", "FINDINGS: fine.\n")
    note.chmod(0)
    try:
        ingest(src, None, tmp_path / "home", SECRET, workers=1, config=ReaderConfig(**READER_ARGS))
    finally:
        note.chmod(0o644)
    row = read_manifest(tmp_path / "home" / "manifest.parquet").iloc[0]
    assert row["status"] == "quarantined" and "permission denied" in row["reason"]
