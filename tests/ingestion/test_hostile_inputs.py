"""The checks that refuse hostile inputs before a decoder or reader trusts them (fast, file-level).

The whole-process behaviour (memory, nothing lost) is in tests/test_reliability_attacks.py.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ingestion.driver.dicom_index import index_dicom
from ingestion.readers.dicom_source import j2k_declared_size, read_dataset
from ingestion.readers.edf_header import check_edf_header
from ingestion.readers.notes import read_notes
from ingestion.readers.patient_ids import placeholder_reason
from ingestion.readers.records import QuarantineError
from ingestion.readers.xray_image import read_xray
from ingestion.readers.zip_limits import MAX_MEMBER_BYTES, archive_problem, read_member
from tests.corpus.hostile import (
    _j2k_codestream, _zip_of_zeros, dicom_pixel_bomb, edf_sample_bomb, jpeg2000_bomb,
)
from tests.ingestion.source_factory import write_edf
from ingestion.modalities import STANDARD_1020


def test_zip_member_over_the_limit_refuses_the_archive_unread(tmp_path: Path) -> None:
    _zip_of_zeros(tmp_path / "src" / "bomb.zip", "a/ct.dcm", MAX_MEMBER_BYTES + (1 << 20))
    index = index_dicom(tmp_path / "src")
    assert index.groups == [] and len(index.unreadable) == 1
    rel, reason = index.unreadable[0]
    assert rel == "bomb.zip" and "limit per member" in reason and "nothing in the archive is unpacked" in reason


def test_zip_ratio_bomb_below_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = _zip_of_zeros(tmp_path / "ratio.zip", "x.dcm", 64 << 20)  # 64 MiB of zeros: ~1,000:1
    with zipfile.ZipFile(path) as zf:
        assert "decompression bomb" in (archive_problem(zf.infolist()) or "")
        with pytest.raises(OSError, match="expands"):
            read_member(zf, "x.dcm")


def test_read_member_stops_at_the_cap_whatever_the_header(tmp_path: Path) -> None:
    path = _zip_of_zeros(tmp_path / "small.zip", "x.dcm", 4 << 20)
    with zipfile.ZipFile(path) as zf:
        with pytest.raises(OSError, match="larger than"):
            read_member(zf, "x.dcm", limit=1 << 20)
        assert len(read_member(zf, "x.dcm")) == 4 << 20  # under 8 MiB: not ratio-checked, read whole


def test_ordinary_zip_export_is_not_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "ok.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", bytes(range(256)) * 4096)
    with zipfile.ZipFile(tmp_path / "ok.zip") as zf:
        assert archive_problem(zf.infolist()) is None


def test_dicom_declaring_trillions_of_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    dicom_pixel_bomb(tmp_path)
    with pytest.raises(QuarantineError, match=r"declares 3,600,000,000,000 pixels"):
        read_xray(tmp_path / "hostile_dicom" / "frames_bomb.dcm")


def test_jpeg2000_codestream_larger_than_its_header_is_refused(tmp_path: Path) -> None:
    assert j2k_declared_size(_j2k_codestream(64, 64, (60000, 60000))) == (60000, 60000)
    assert j2k_declared_size(_j2k_codestream(64, 64, (64, 64))) == (64, 64)
    jpeg2000_bomb(tmp_path)
    path = tmp_path / "hostile_dicom" / "j2k_bomb.dcm"
    assert int(read_dataset(path).Rows) == 64
    with pytest.raises(QuarantineError, match="codestream declares 60,000 x 60,000 pixels but the header says 64 x 64"):
        read_xray(path)


def test_edf_header_implying_terabytes_is_refused(tmp_path: Path) -> None:
    edf_sample_bomb(tmp_path)
    with pytest.raises(QuarantineError, match="header declares 99,999,999 samples"):
        check_edf_header(tmp_path / "hostile_eeg" / "samples_bomb.edf")
    check_edf_header(write_edf(tmp_path / "good.edf", list(STANDARD_1020)))  # a real header passes


def test_binary_and_oversized_notes_are_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "bin.jsonl").write_bytes(b"\x00\x01\x02" * 1000 + b"\n" * 10)
    with pytest.raises(QuarantineError, match="binary data"):
        read_notes(tmp_path / "bin.jsonl", "s")
    with open(tmp_path / "big.csv", "wb") as fh:
        fh.truncate(65_000_000)  # sparse: the size alone refuses it
    with pytest.raises(QuarantineError, match="more than the 64 MB"):
        read_notes(tmp_path / "big.csv", "s")


@pytest.mark.parametrize("value", ["Unknown", "ANONYMOUS", "anon", "", "  ", "0", "000000", "N/A", "x", "---"])
def test_placeholder_ids_are_recognised(value: str) -> None:
    assert placeholder_reason(value)


@pytest.mark.parametrize("value", ["MRN00412345", "12345", "A0", "P-0001", "Anonymous1"])
def test_real_ids_are_not_placeholders(value: str) -> None:
    assert placeholder_reason(value) is None


def test_jpeg_frame_header_larger_than_its_header_is_refused(tmp_path: Path) -> None:
    from ingestion.readers.dicom_source import jpeg_declared_size
    from tests.corpus.hostile import _jpeg_codestream, jpeg_bomb

    assert jpeg_declared_size(_jpeg_codestream(64, 48, (48, 64))) == (48, 64)
    assert jpeg_declared_size(_jpeg_codestream(64, 64, (60000, 60000))) == (60000, 60000)
    jpeg_bomb(tmp_path)
    with pytest.raises(QuarantineError, match="JPEG codestream declares 60,000 x 60,000 pixels"):
        read_xray(tmp_path / "hostile_dicom" / "jpeg_bomb.dcm")


def test_deflated_dicom_bomb_is_refused_before_pydicom_inflates_it(tmp_path: Path) -> None:
    import resource

    from tests.corpus.hostile import deflated_dicom_bomb

    deflated_dicom_bomb(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(QuarantineError, match="inflates past 256 MiB"):
        read_dataset(tmp_path / "hostile_dicom" / "deflate_bomb.dcm", headers_only=True)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024, f"the refusal itself grew the process by {grown_kib / 1024:.0f} MiB"


def test_a_small_deflated_dicom_is_still_read(tmp_path: Path) -> None:
    import numpy as np
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tests.ingestion.dicom_factory import cr_dataset

    ds = cr_dataset(np.full((32, 32), 300, np.uint16))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert read_dataset(tmp_path / "deflated.dcm").Rows == 32
