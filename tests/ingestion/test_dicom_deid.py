"""De-identification of DICOM: PHI removed, pseudonym and date shift consistent per patient."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ingestion.deid.dicom import deidentify_dataset, deidentify_file
from ingestion.deid.pseudonym import date_shift_days, pseudonymise
from ingestion.readers.ct_volume import read_ct_series
from ingestion.readers.xray_image import read_xray
from tests.ingestion.dicom_factory import cr_dataset, ct_slice_dataset, write_ct_series

SECRET = "test-site-secret"


def _slices() -> list[pydicom.Dataset]:
    pixels = np.zeros((4, 4), np.int16)
    return [ct_slice_dataset(pixels, (0, 0, z), instance=i) for i, z in enumerate((0.0, 2.0))]


def test_phi_removed_and_pseudonym_stable_across_files() -> None:
    a, b = _slices()
    a.add_new(0x00091001, "LO", "private vendor note with MRN00412345")
    a.BurnedInAnnotation = b.BurnedInAnnotation = "NO"
    out_a, out_b = deidentify_dataset(a, SECRET), deidentify_dataset(b, SECRET)
    pseudonym = pseudonymise("MRN00412345", SECRET)
    for out in (out_a, out_b):
        assert out.PatientID == pseudonym and str(out.PatientName) == pseudonym
        assert out.PatientBirthDate == ""
        assert out.InstitutionName != "St Example General Hospital"
        assert "House" not in str(out.ReferringPhysicianName)
        assert out.AccessionNumber != "ACC123456"
        assert out.PatientIdentityRemoved == "YES"  # dicognito sets it only when BurnedInAnnotation is NO
    assert 0x00091001 not in out_a  # private tags go
    # one series stays one series: replacement UIDs agree across files
    assert out_a.SeriesInstanceUID == out_b.SeriesInstanceUID != a.SeriesInstanceUID
    assert a.PatientName == "Doe^Jane" and a.PatientID == "MRN00412345"  # input untouched


def test_dates_shifted_by_patient_offset() -> None:
    ds = _slices()[0]
    out = deidentify_dataset(ds, SECRET)
    shift = date_shift_days("MRN00412345", SECRET)
    expected = dt.date(2024, 5, 3) - dt.timedelta(days=shift)
    assert out.StudyDate == expected.strftime("%Y%m%d") == out.SeriesDate


def test_other_patient_gets_other_pseudonym_and_secret_matters() -> None:
    ds = cr_dataset(np.zeros((4, 4), np.uint16), patient_id="MRN999")
    assert deidentify_dataset(ds, SECRET).PatientID != pseudonymise("MRN00412345", SECRET)
    assert deidentify_dataset(ds, SECRET).PatientID != deidentify_dataset(ds, "other-secret").PatientID


def test_date_shift_days_range_and_determinism() -> None:
    shifts = [date_shift_days(f"MRN{i:08d}", SECRET) for i in range(300)]
    assert all(0 <= s <= 364 for s in shifts)
    assert len(set(shifts)) > 100  # spread over the year, not a constant
    assert date_shift_days("MRN00000001", SECRET) == date_shift_days(" MRN00000001 ", SECRET)


def test_deidentify_real_pydicom_file(tmp_path: Path) -> None:
    src = get_testdata_file("CT_small.dcm")
    dst = tmp_path / "out" / "ct.dcm"
    pseudonym = deidentify_file(src, dst, SECRET)
    out = pydicom.dcmread(dst)
    assert pseudonym == out.PatientID == pseudonymise("1CT1", SECRET)
    assert "CompressedSamples" not in str(out.PatientName)
    assert out.get("InstitutionName") != "JFK IMAGING CENTER"
    np.testing.assert_array_equal(out.pixel_array, pydicom.dcmread(src).pixel_array)


def test_reader_metadata_carries_no_phi(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "ct", np.full((3, 8, 8), 1024, np.int16))
    ds = pydicom.dcmread(files[0])
    ds.SeriesDescription = "CHEST Doe MRN00412345 20240503"
    ds.save_as(files[0])
    ct_meta = json.dumps(read_ct_series(files, (4.0, 2.0, 2.0), (4, 8, 8)).metadata)
    cr_path = tmp_path / "cr.dcm"
    cr_dataset(np.zeros((16, 16), np.uint16)).save_as(cr_path, enforce_file_format=True)
    xr_meta = json.dumps(read_xray(cr_path, (8, 8)).metadata)
    for meta in (ct_meta, xr_meta):
        for phi in ("Doe", "Jane", "MRN00412345", "19600214", "20240503", "2024-05-03", "Example", "House", "ACC1"):
            assert phi not in meta, (phi, meta)
    assert "CHEST" in ct_meta


@pytest.mark.realdata
def test_deidentify_realdata_cr(realdata: Path, tmp_path: Path) -> None:
    src = realdata / "dicom" / "RG3_J2KR.dcm"
    original = pydicom.dcmread(src, stop_before_pixels=True)
    out = deidentify_dataset(original, SECRET)
    assert out.PatientID == pseudonymise(str(original.PatientID), SECRET)
    assert str(out.PatientName) != str(original.PatientName) or not str(original.PatientName)
