"""Generate the bad-input corpus: every kind of broken (and a few odd but good) source file clinfuse must survive.

Why generated, not checked in: no binary blobs in the repository, and each case
says in code exactly what is wrong with it. :func:`build_corpus` writes the
files under a source folder and returns one :class:`CorpusCase` per kind, with
the status ingestion must give it and words its reason must contain. Cohort
table cases are rows appended by :func:`bad_cohort_rows`.

Patient ids of the corpus are ``MRN9xxxxxxx`` so they never collide with a
phantom cohort's; none of them is in a cohort table (the good ones are kept and
flagged "in files but not in cohort").
"""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, MRImageStorage

from ingestion.modalities import STANDARD_1020
from tests.ingestion.dicom_factory import cr_dataset, ct_slice_dataset, write_ct_series
from tests.ingestion.source_factory import write_edf, write_note


@dataclass(frozen=True)
class CorpusCase:
    """One kind of input: where it is (relative to the source root), what ingest must make of it."""

    name: str
    path: str
    """A file, a folder (every file under it belongs to the case) or ``a.zip`` (the archive and its members)."""
    expect: str
    """``quarantined`` or ``ok``."""
    reason: str = ""
    """Regex (case-insensitive) the quarantine reason must match; empty: any non-empty reason."""

    def owns(self, source_file: str) -> bool:
        """Whether a manifest ``source_files`` entry belongs to this case."""
        base = source_file.split("!", 1)[0]
        return base == self.path or base.startswith(self.path.rstrip("/") + "/")


def _mrn(i: int) -> str:
    return f"MRN9{i:07d}"


def _volume(depth: int = 6, size: int = 16) -> np.ndarray:
    return (np.arange(depth * size * size).reshape(depth, size, size) % 400 + 900).astype(np.int16)


def _save(ds, path: Path) -> Path:  # noqa: ANN001 - pydicom Dataset
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _cr(i: int, size: int = 32):  # noqa: ANN202
    return cr_dataset(np.full((size, size), 300 + i, np.uint16), patient_id=_mrn(i))


def _dicom_cases(src: Path) -> list[CorpusCase]:
    d = src / "corpus_dicom"
    cases: list[CorpusCase] = []

    def add(name: str, rel: str, expect: str = "quarantined", reason: str = "") -> None:
        cases.append(CorpusCase(name, f"corpus_dicom/{rel}", expect, reason))

    full = _save(_cr(1, 64), d / "whole.tmp")
    (d / "truncated.dcm").write_bytes(full.read_bytes()[: full.stat().st_size - 3000])
    full.unlink()
    add("dicom_truncated", "truncated.dcm", reason="truncat|corrupt|short|pixel|size")

    garbled = bytearray(_save(_cr(2), d / "garbled.dcm").read_bytes())
    garbled[140:400] = np.random.default_rng(2).bytes(260)  # DICM preamble intact, header elements noise
    (d / "garbled.dcm").write_bytes(bytes(garbled))
    add("dicom_garbled_header", "garbled.dcm")

    (d / "readme.dcm").write_text("This is a README saved with a .dcm name, not a DICOM file.\n")
    add("non_dicom_named_dcm", "readme.dcm", reason="DICOM|DICM")
    (d / "empty.dcm").write_bytes(b"")
    add("zero_byte_dcm", "empty.dcm", reason="empty|DICOM|DICM|0 bytes|zero")

    mr = _cr(3)
    mr.Modality, mr.SOPClassUID = "MR", MRImageStorage
    mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
    _save(mr, d / "mr.dcm")
    add("wrong_modality_mr", "mr.dcm", reason="MR")
    sr = _cr(4)
    sr.Modality, sr.SOPClassUID = "SR", BasicTextSRStorage
    sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    del sr.PixelData
    _save(sr, d / "sr.dcm")
    add("wrong_modality_sr", "sr.dcm", reason="SR")

    for k, orient in enumerate([(1, 0, 0, 0, 1, 0)] * 3 + [(0, 1, 0, 0, 0, -1)] * 3):
        _save(ct_slice_dataset(_volume()[k], (0.0, 0.0, 2.5 * k), orient, instance=k + 1, patient_id=_mrn(5),
                               series_uid="1.2.826.0.1.3680043.8.498.9005"), d / "mixed_orientation" / f"s{k}.dcm")
    add("ct_mixed_orientation", "mixed_orientation", reason="orientation")
    for k in range(6):
        _save(ct_slice_dataset(_volume()[k], (0.0, 0.0, 2.5 * (k // 2)), instance=k + 1, patient_id=_mrn(6),
                               series_uid="1.2.826.0.1.3680043.8.498.9006"), d / "dup_positions" / f"s{k}.dcm")
    add("ct_duplicate_slice_positions", "dup_positions", reason="position|duplicate|same")
    write_ct_series(d / "missing_slice", _volume(8), skip=[4], patient_id=_mrn(7),
                    series_uid="1.2.826.0.1.3680043.8.498.9007")
    add("ct_missing_slice", "missing_slice", reason="missing|gap")

    huge = _cr(8)
    huge.Rows, huge.Columns = 60000, 60000
    _save(huge, d / "huge.dcm")
    add("dicom_huge_declared_dimensions", "huge.dcm", reason="pixel|size|large|dimension|rows|expected")

    flt = _cr(9, 16)
    del flt.PixelData
    del flt.BitsStored, flt.HighBit, flt.PixelRepresentation
    flt.BitsAllocated = 32
    values = np.full((16, 16), 100.0, np.float32)
    values[0, 0], values[1, 1], values[2, 2] = np.nan, np.inf, -np.inf
    flt.FloatPixelData = values.tobytes()
    _save(flt, d / "float_nan.dcm")
    add("dicom_float_nan_inf_pixels", "float_nan.dcm", reason="float|NaN|finite|pixel")

    nopix = _cr(10)
    del nopix.PixelData
    _save(nopix, d / "nopixels.dcm")
    add("dicom_missing_pixel_data", "nopixels.dcm", reason="pixel data")

    mpeg = _cr(11, 8)
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    mpeg.PixelData = encapsulate([b"\x00" * 64])
    mpeg["PixelData"].VR = "OB"
    mpeg["PixelData"].is_undefined_length = True
    _save(mpeg, d / "mpeg2.dcm")
    add("dicom_unsupported_transfer_syntax", "mpeg2.dcm", reason="transfer syntax")

    anon = cr_dataset(np.full((32, 32), 250, np.uint16), patient_id="")
    _save(anon, d / "no_patient.dcm")
    add("dicom_without_patient_id", "no_patient.dcm", reason="patient")

    wrong_len = _cr(12)
    wrong_len.PixelData = wrong_len.PixelData[: len(wrong_len.PixelData) // 3]
    _save(wrong_len, d / "short_pixels.dcm")
    add("dicom_pixel_data_too_short", "short_pixels.dcm", reason="pixel|size|length|expected|short")

    good = _cr(13, 40)
    good.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    _save(good, d / "good_xray.dcm")
    shutil.copy(d / "good_xray.dcm", d / "good_xray_copy.dcm")
    add("good_xray_with_byte_identical_copy", "good_xray.dcm", expect="ok")
    add("byte_identical_copy", "good_xray_copy.dcm", expect="ok")
    return cases


def _zip_cases(src: Path) -> list[CorpusCase]:
    d = src / "corpus_zip"
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    _cr(20).save_as(buf, enforce_file_format=True)
    with zipfile.ZipFile(d / "traversal.zip", "w") as zf:
        zf.writestr("../../evil.dcm", buf.getvalue())
        zf.writestr("/etc/evil_abs.dcm", buf.getvalue())
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * (64 << 20))  # 64 MiB of zeros -> ~64 KiB compressed
    nested = inner.getvalue()
    for level in range(3):
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"level{level}.zip", nested)
            zf.writestr(f"bomb{level}.dcm", b"\0" * (32 << 20))
        nested = outer.getvalue()
    (d / "bomb.zip").write_bytes(nested)
    (d / "corrupt.zip").write_bytes(b"PK\x03\x04" + np.random.default_rng(3).bytes(2048))
    return [
        CorpusCase("zip_path_traversal_members", "corpus_zip/traversal.zip", "quarantined"),
        CorpusCase("zip_bomb_nested", "corpus_zip/bomb.zip", "quarantined"),
        CorpusCase("zip_corrupt_archive", "corpus_zip/corrupt.zip", "quarantined", reason="zip|archive"),
    ]


def _edf_with_header_field(path: Path, start: int, width: int, value: str) -> None:
    data = bytearray(path.read_bytes())
    data[start:start + width] = value.ljust(width).encode("ascii")
    path.write_bytes(bytes(data))


def _eeg_cases(src: Path) -> list[CorpusCase]:
    d = src / "corpus_eeg"
    names = list(STANDARD_1020)
    write_edf(d / "wrong_records.edf", names, patient=_mrn(30), seconds=8.0)
    _edf_with_header_field(d / "wrong_records.edf", 236, 8, "99999")  # header: 99999 data records
    write_edf(d / "truncated.edf", names, patient=_mrn(31), seconds=8.0)
    blob = (d / "truncated.edf").read_bytes()
    (d / "truncated.edf").write_bytes(blob[: 256 * 20 + 100])
    (d / "corrupt_header.edf").write_bytes(b"0       " + np.random.default_rng(4).bytes(4096))
    write_edf(d / "too_short.edf", names, patient=_mrn(32), seconds=1.0)
    write_edf(d / "no_1020.edf", ["X1", "X2", "A1", "ECG"], patient=_mrn(33))
    (d / "text.bdf").write_text("not a BioSemi file\n")
    write_edf(d / "no_patient.edf", names, patient="")
    return [
        # recoverable: the header lies about the record count but every sample is there; MNE trusts the file size
        CorpusCase("edf_wrong_record_count", "corpus_eeg/wrong_records.edf", "ok"),
        CorpusCase("edf_truncated_data", "corpus_eeg/truncated.edf", "quarantined"),
        CorpusCase("edf_corrupt_header", "corpus_eeg/corrupt_header.edf", "quarantined"),
        CorpusCase("eeg_shorter_than_window", "corpus_eeg/too_short.edf", "quarantined",
                   reason="short|window|second"),
        CorpusCase("eeg_without_1020_channels", "corpus_eeg/no_1020.edf", "quarantined", reason="10-20"),
        CorpusCase("bdf_that_is_text", "corpus_eeg/text.bdf", "quarantined"),
        CorpusCase("edf_without_patient_code", "corpus_eeg/no_patient.edf", "quarantined", reason="patient"),
    ]


def _note_cases(src: Path) -> list[CorpusCase]:
    d = src / "corpus_notes"
    d.mkdir(parents=True, exist_ok=True)
    (d / "garbage.txt").write_bytes(np.random.default_rng(5).bytes(8192))
    body = "HISTORY OF PRESENT ILLNESS: Intermittent headache, no fever. " * 16
    write_note(d / "huge.txt", _mrn(40), body * (10_485_760 // len(body) + 1))
    write_note(d / "empty_body.txt", _mrn(41), "")
    (d / "zero.txt").write_bytes(b"")
    write_note(d / "latin1.txt", _mrn(42), "ASSESSMENT: Ménière's disease suspected; café au lait spots.\n",
               encoding="latin-1")
    (d / "no_mrn.txt").write_text("Date: 2024-05-03\nNote type: Progress\n\nASSESSMENT: stable.\n")
    (d / "bad.jsonl").write_text('{"text": "unterminated\n{{{ not json\n')
    (d / "bad.csv").write_text('a,b\n"unclosed quote,1\n')
    return [
        CorpusCase("note_binary_garbage", "corpus_notes/garbage.txt", "quarantined"),
        CorpusCase("note_10_mb", "corpus_notes/huge.txt", "quarantined", reason="large|size|MB|long"),
        CorpusCase("note_empty_body", "corpus_notes/empty_body.txt", "quarantined", reason="empty|no note text"),
        # byte-identical to the zero-byte .dcm, so it is listed on that file's quarantined row as a duplicate
        CorpusCase("note_zero_bytes", "corpus_notes/zero.txt", "quarantined"),
        CorpusCase("note_latin1_encoded", "corpus_notes/latin1.txt", "ok"),
        CorpusCase("note_without_mrn", "corpus_notes/no_mrn.txt", "quarantined", reason="MRN|patient"),
        CorpusCase("notes_jsonl_malformed", "corpus_notes/bad.jsonl", "quarantined"),
        CorpusCase("notes_csv_malformed", "corpus_notes/bad.csv", "quarantined"),
    ]


def _filesystem_cases(src: Path) -> list[CorpusCase]:
    d = src / "corpus_fs"
    d.mkdir(parents=True, exist_ok=True)
    (d / "scan.xyz").write_bytes(b"\x89XYZ" + bytes(64))
    (d / "README").write_text("exported by PACS\n")
    os.symlink("loop_b.dcm", d / "loop_a.dcm")
    os.symlink("loop_a.dcm", d / "loop_b.dcm")
    os.symlink("does_not_exist.edf", d / "dangling.edf")
    (d / "cycle").mkdir()
    os.symlink("..", d / "cycle" / "up", target_is_directory=True)  # a folder loop: must not be walked forever
    return [
        CorpusCase("unknown_extension", "corpus_fs/scan.xyz", "quarantined", reason="unrecognised"),
        CorpusCase("extensionless_non_dicom", "corpus_fs/README", "quarantined", reason="unrecognised"),
        CorpusCase("symlink_loop_a", "corpus_fs/loop_a.dcm", "quarantined", reason="read|loop|link"),
        CorpusCase("symlink_loop_b", "corpus_fs/loop_b.dcm", "quarantined", reason="read|loop|link"),
        CorpusCase("dangling_symlink", "corpus_fs/dangling.edf", "quarantined", reason="read|exist|link"),
        CorpusCase("symlinked_folder_cycle", "corpus_fs/cycle/up", "quarantined", reason="link|loop|folder"),
    ]


def build_corpus(src: Path) -> list[CorpusCase]:
    """Write every corpus file under ``src`` (created if needed); return the cases, one per kind."""
    src = Path(src)
    src.mkdir(parents=True, exist_ok=True)
    cases = _dicom_cases(src) + _zip_cases(src) + _eeg_cases(src) + _note_cases(src) + _filesystem_cases(src)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases


def bad_cohort_rows() -> dict[str, str]:
    """Cohort CSV lines to append (case name -> line) that ingest must set aside with a reason.

    The ids belong to no file, so they change nothing else; the duplicate repeats
    an id on two lines, both of which must be reported.
    """
    return {
        "cohort_duplicate_id_first": f"{_mrn(90)},1,50,F,1.0,7.0,1.0",
        "cohort_duplicate_id_second": f"{_mrn(90)},0,51,F,1.0,7.0,1.0",
        "cohort_label_two": f"{_mrn(91)},2,60,M,1.0,7.0,1.0",
        "cohort_label_negative": f"{_mrn(92)},-1,61,M,1.0,7.0,1.0",
        "cohort_label_word": f"{_mrn(93)},yes,62,M,1.0,7.0,1.0",
        "cohort_missing_id": ",1,63,M,1.0,7.0,1.0",
    }


def reason_matches(case: CorpusCase, reason: str) -> bool:
    """Whether ``reason`` is non-empty and matches the case's expected words."""
    return bool(reason.strip()) and (not case.reason or re.search(case.reason, reason, re.IGNORECASE) is not None)
