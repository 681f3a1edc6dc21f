"""DIMSE pull (C-FIND + C-GET) from a real Orthanc's DICOM port on loopback, beside the DICOMweb pull.

Both pulls of the same studies give the same staged files (same names, SOP
UIDs, datasets and pixel data); a second DIMSE pull fetches nothing; a study
added later is the only thing the next pull fetches; a PACS that refuses or
is not there fails with a reason and changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from ingestion.pacs import PacsError, PacsQuery, connect, pull
from ingestion.pacs_dimse import parse_dimse_url, pull_dimse
from ingestion.phantom import generate_cohort
from tests.conftest import free_port
from tests.orthanc_server import Orthanc, run_orthanc

pytestmark = [pytest.mark.server, pytest.mark.slow]

OUR_AET = "CLINFUSETEST"


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dimse")
    generate_cohort(root / "first", 3, seed=21, missing_rate=0.0, eeg_seconds=(20, 20))
    generate_cohort(root / "later", 1, seed=22, missing_rate=0.0, eeg_seconds=(20, 20))
    return root / "first", root / "later"


@pytest.fixture(scope="module")
def dimse_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc with its DICOM port for this module (C-FIND/C-GET for ``OUR_AET`` only)."""
    with run_orthanc(tmp_path_factory.mktemp("orthanc-dimse"), dicom=True, known_aets=(OUR_AET,)) as server:
        yield server


@pytest.fixture
def pacs(dimse_orthanc: Orthanc) -> Orthanc:
    """The module's Orthanc with every patient deleted (REST): each test starts on an empty PACS."""
    dimse_orthanc.clear()
    return dimse_orthanc


def _staged(staging: Path) -> dict[str, Path]:
    return {p.relative_to(staging).as_posix(): p for p in sorted(staging.rglob("*.dcm"))}


def _pixels(ds: pydicom.Dataset) -> str:
    return hashlib.sha256(ds.PixelData).hexdigest()


def test_dimse_pull_matches_dicomweb_and_is_incremental(cohorts, pacs: Orthanc, tmp_path: Path) -> None:
    first, later = cohorts
    for path in sorted((first / "dicom").rglob("*.dcm")):
        pacs.upload(path)
    dimse_url = f"dicom://127.0.0.1:{pacs.dicom_port}/{pacs.aet}"
    web = pull(connect(pacs.dicomweb), pacs.dicomweb, tmp_path / "web")
    dimse = pull_dimse(dimse_url, tmp_path / "dimse", our_aet=OUR_AET)
    assert dimse.series_found == web.series_found > 0
    assert dimse.instances_written == web.instances_written == len(list((first / "dicom").rglob("*.dcm")))
    web_files, dimse_files = _staged(tmp_path / "web" / "staging"), _staged(tmp_path / "dimse" / "staging")
    assert web_files.keys() == dimse_files.keys()
    for name, path in web_files.items():
        a, b = pydicom.dcmread(path), pydicom.dcmread(dimse_files[name])
        assert a.SOPInstanceUID == b.SOPInstanceUID and _pixels(a) == _pixels(b)
        assert a == b  # every data element equal (the file meta header names the receiver)
        assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID

    again = pull_dimse(dimse_url, tmp_path / "dimse", our_aet=OUR_AET)
    assert (again.series_pulled, again.instances_written, again.series_current) == (0, 0, dimse.series_found)

    for path in sorted((later / "dicom").rglob("*.dcm")):
        pacs.upload(path)
    newer = pull_dimse(dimse_url, tmp_path / "dimse", our_aet=OUR_AET)
    assert newer.series_pulled == len(list((later / "dicom").iterdir()))
    assert newer.instances_written == len(list((later / "dicom").rglob("*.dcm")))
    assert newer.series_current == dimse.series_found


def test_dimse_pull_narrowed_by_modality(cohorts, pacs: Orthanc, tmp_path: Path) -> None:
    first, _ = cohorts
    for path in sorted((first / "dicom").rglob("*.dcm")):
        pacs.upload(path)
    url = f"dicom://127.0.0.1:{pacs.dicom_port}/{pacs.aet}"
    report = pull_dimse(url, tmp_path / "ct", PacsQuery(modalities=("CT",)), our_aet=OUR_AET)
    modalities = {pydicom.dcmread(p, stop_before_pixels=True).Modality for p in (tmp_path / "ct" / "staging").rglob("*.dcm")}
    assert report.series_pulled > 0 and modalities == {"CT"}


def test_pacs_that_does_not_know_our_ae_fails_with_reason(cohorts, pacs: Orthanc, tmp_path: Path) -> None:
    first, _ = cohorts
    pacs.upload(next((first / "dicom").rglob("*.dcm")))
    url = f"dicom://127.0.0.1:{pacs.dicom_port}/{pacs.aet}"
    with pytest.raises(PacsError, match="our AE 'STRANGER'.*register it there"):
        pull_dimse(url, tmp_path / "pacs", our_aet="STRANGER")
    assert not (tmp_path / "pacs" / "cursor.json").exists()


def test_unreachable_dimse_pacs_fails_with_reason_and_keeps_cursor(tmp_path: Path) -> None:
    url = f"dicom://127.0.0.1:{free_port()}/NOBODY"
    with pytest.raises(PacsError, match="refused or did not answer the association"):
        pull_dimse(url, tmp_path / "pacs", our_aet=OUR_AET, timeout_s=3)
    assert not (tmp_path / "pacs" / "cursor.json").exists()


@pytest.mark.parametrize("url", ["dicom://pacs/NOPORT", "dicom://pacs:104/", "http://pacs:104/AE",
                                 "dicom://pacs:104/AN-AE-TITLE-TOO-LONG"])
def test_bad_dimse_urls_are_refused_with_an_example(url: str) -> None:
    with pytest.raises(PacsError, match="dicom://HOST:PORT/CALLED_AE"):
        parse_dimse_url(url)
