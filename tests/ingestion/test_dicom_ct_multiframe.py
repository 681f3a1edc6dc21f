"""Enhanced (multi-frame) CT read from its functional groups, and single-slice series refused, on real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ingestion.driver.dicom_index import index_dicom
from ingestion.readers.ct_volume import load_ct_volume, read_ct_series
from ingestion.readers.records import QuarantineError
from tests.ingestion.dicom_factory import write_ct_series


def _enhanced_ct() -> Path:
    path = get_testdata_file("eCT_Supplemental.dcm")  # shipped by the pydicom-data package (dev dependency)
    assert path is not None, "pydicom-data is not installed: pip install -e '.[dev]'"
    return Path(path)


def _expected_hu(ds: pydicom.Dataset) -> np.ndarray:
    """HU of every frame, in file order, computed independently with pydicom's own decoder."""
    shared = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    hu = ds.pixel_array.astype(np.float32) * float(shared.RescaleSlope) + float(shared.RescaleIntercept)
    return np.maximum(hu, -1024)


def test_enhanced_ct_frames_placed_by_functional_groups() -> None:
    path = _enhanced_ct()
    ds = pydicom.dcmread(path)
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence]
    assert z == [-159.0, -149.0]  # the file stores the frames foot-first along this volume's normal
    item = read_ct_series([path], None, None)
    assert item.array.shape == (2, 512, 512)
    assert item.metadata["multi_frame"] is True
    assert item.metadata["original_spacing_mm"] == [10.0, 0.3887, 0.3887]
    # normal = row x col = (-1,0,0) x (0,1,0) = (0,0,-1): z = -149 comes first along it
    np.testing.assert_array_equal(item.array, _expected_hu(ds)[::-1])
    assert item.original_patient_id == str(ds.PatientID)
    assert item.metadata["window_center"] == 49.0


def test_enhanced_ct_resampled_and_indexed_as_ct(tmp_path: Path) -> None:
    shutil.copy(_enhanced_ct(), tmp_path / "ect.dcm")
    index = index_dicom(tmp_path)
    assert not index.quarantined and len(index.groups) == 1 and index.groups[0].kind == "ct"
    item = read_ct_series(index.paths(index.groups[0]), (4.0, 2.0, 2.0), (8, 32, 32))
    assert item.array.shape == (8, 32, 32) and item.metadata["resampled"] is True
    assert float(item.array.max()) > 0 and float(item.array.min()) == pytest.approx(-1024)


def test_enhanced_ct_frame_without_position_quarantined(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_enhanced_ct())
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(tmp_path / "ect.dcm")
    with pytest.raises(QuarantineError, match=r"ect.dcm frame 2: PlanePositionSequence > ImagePositionPatient"):
        read_ct_series([tmp_path / "ect.dcm"], None, None)


def test_enhanced_ct_frames_at_one_position_quarantined(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_enhanced_ct())
    first = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient = list(first)
    ds.save_as(tmp_path / "ect.dcm")
    with pytest.raises(QuarantineError, match="duplicated slice position"):
        read_ct_series([tmp_path / "ect.dcm"], None, None)


def test_enhanced_ct_with_other_files_in_series_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", np.zeros((3, 8, 8), np.int16))
    with pytest.raises(QuarantineError, match="multi-frame image inside a CT series of 4 files"):
        read_ct_series([*files, _enhanced_ct()], None, None)


def test_single_slice_series_quarantined_not_resampled() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert read_ct_series([path], None, None).array.shape == (1, 128, 128)  # its HU can still be read as is
    with pytest.raises(QuarantineError, match=r"single-slice CT 'series'.*would invent"):
        read_ct_series([path], (4.0, 2.0, 2.0), (8, 16, 16))


def test_single_frame_enhanced_ct_quarantined(tmp_path: Path) -> None:
    """An Enhanced CT file holding one frame is a single slice too."""
    ds = pydicom.dcmread(_enhanced_ct())
    frame_bytes = int(ds.Rows) * int(ds.Columns) * 2
    ds.PixelData = ds.PixelData[:frame_bytes]
    ds.NumberOfFrames = 1
    del ds.PerFrameFunctionalGroupsSequence[1]
    ds.save_as(tmp_path / "one.dcm")
    volume = load_ct_volume([tmp_path / "one.dcm"])
    assert volume.hu.shape == (1, 512, 512) and volume.spacing_mm[0] == pytest.approx(10.0)  # SliceThickness
    with pytest.raises(QuarantineError, match="single-slice"):
        read_ct_series([tmp_path / "one.dcm"], (4.0, 2.0, 2.0), (8, 16, 16))
