"""Radiograph reading: decoders for compressed syntaxes, LUTs, MONOCHROME1, multi-frame, on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import MPEG2MPML

from ingestion.readers.records import QuarantineError
from ingestion.readers.xray_image import read_xray
from tests.ingestion.dicom_factory import cr_dataset

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent


def _gradient(rows: int = 64, cols: int = 64, bits: int = 12) -> np.ndarray:
    """Stored values rising from left (0) to right (max for ``bits``)."""
    row = np.linspace(0, 2**bits - 1, cols).round().astype(np.uint16)
    return np.tile(row, (rows, 1))


def _save(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_is_inverted_so_bright_is_dense(tmp_path: Path) -> None:
    pixels = _gradient()
    mono1 = read_xray(_save(cr_dataset(pixels, photometric="MONOCHROME1"), tmp_path / "m1.dcm"), (32, 32))
    mono2 = read_xray(_save(cr_dataset(pixels, photometric="MONOCHROME2"), tmp_path / "m2.dcm"), (32, 32))
    assert mono1.metadata["inverted"] and not mono2.metadata["inverted"]
    assert mono1.array[:, 0].mean() > 0.95 and mono1.array[:, -1].mean() < 0.05  # low stored value = bright
    np.testing.assert_allclose(mono1.array + mono2.array, 1.0, atol=1e-5)
    assert mono1.array.dtype == np.float32 and mono1.array.shape == (32, 32)
    assert mono1.metadata["voi"] == "none (bit-depth range)"
    json.dumps(mono1.metadata)


def test_window_applied_before_normalisation(tmp_path: Path) -> None:
    ds = cr_dataset(_gradient(bits=12), photometric="MONOCHROME2")
    ds.WindowCenter, ds.WindowWidth = 2048, 1024  # values below 1536 black, above 2560 white
    item = read_xray(_save(ds, tmp_path / "w.dcm"), (64, 64))
    assert item.metadata["window_center"] == 2048.0
    assert item.array[:, :20].max() == pytest.approx(0.0, abs=1e-6)
    assert item.array[:, -20:].min() == pytest.approx(1.0, abs=1e-6)


def test_pydicom_cr_monochrome1_matches_display_pipeline() -> None:
    path = TEST_FILES / "dicomdirtests/77654033/CR1/6154"
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    item = read_xray(path, tuple(ds.pixel_array.shape))  # same size: no resampling in the comparison
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    # pydicom's window output spans the rescaled range of the stored bit depth
    lo, hi = float(ds.RescaleIntercept), (2 ** int(ds.BitsStored) - 1) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = 1.0 - (voi - lo) / (hi - lo)
    np.testing.assert_allclose(item.array, expected, atol=1e-5)
    assert item.original_patient_id == "77654033"


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm"]
)
def test_lossless_syntaxes_decode_to_the_same_image(name: str) -> None:
    reference = read_xray(TEST_FILES / "MR_small.dcm", (64, 64)).array
    item = read_xray(TEST_FILES / name, (64, 64))
    np.testing.assert_allclose(item.array, reference, atol=1e-6)
    assert item.metadata["transfer_syntax"] != read_xray(TEST_FILES / "MR_small.dcm").metadata["transfer_syntax"]


def test_jpeg_baseline_close_to_lossless_original() -> None:
    lossless = read_xray(TEST_FILES / "SC_rgb_rle.dcm", (100, 100)).array
    baseline = read_xray(TEST_FILES / "SC_rgb_dcmtk_+eb+cr.dcm", (100, 100))
    assert "JPEG Baseline" in baseline.metadata["transfer_syntax"]
    assert np.abs(baseline.array - lossless).mean() < 0.02


def test_jpeg_extended_12_bit_and_jpeg_lossless_decode() -> None:
    extended = read_xray(TEST_FILES / "JPGExtended.dcm", (64, 64))
    assert extended.array.max() > 0 and 0.0 <= extended.array.min() and extended.array.max() <= 1.0
    lossless = read_xray(TEST_FILES / "SC_rgb_jpeg_gdcm.dcm", (50, 50))
    assert lossless.array.std() > 0.05


@pytest.mark.parametrize(("name", "frames"), [("SC_rgb_rle_2frame.dcm", 2), ("examples_ybr_color.dcm", 30)])
def test_multiframe_takes_first_frame(name: str, frames: int) -> None:
    ds = pydicom.dcmread(TEST_FILES / name)
    item = read_xray(TEST_FILES / name, (int(ds.Rows), int(ds.Columns)))
    assert item.metadata["n_frames"] == frames
    first = ds.pixel_array[0].astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(item.array, first, atol=1e-4)


@pytest.mark.realdata
def test_realdata_cr_monochrome1_10bit_j2k(realdata: Path) -> None:
    path = realdata / "dicom" / "RG3_J2KR.dcm"
    ds = pydicom.dcmread(path)
    item = read_xray(path, (128, 128))
    assert item.metadata["inverted"] and item.metadata["bits_stored"] == 10
    assert item.array.shape == (128, 128) and 0.0 <= item.array.min() and item.array.max() <= 1.0
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    expected = 1.0 - voi / (2**10 - 1)
    assert item.array.mean() == pytest.approx(expected.mean(), abs=2e-3)  # area resize preserves the mean


def test_unsupported_transfer_syntax_quarantined(tmp_path: Path) -> None:
    ds = cr_dataset(_gradient())
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    with pytest.raises(QuarantineError, match="MPEG2 Main Profile / Main Level"):
        read_xray(_save(ds, tmp_path / "v.dcm"))


def test_broken_jpeg_stream_quarantined_with_syntax() -> None:
    with pytest.raises(QuarantineError, match=r"could not be decoded with transfer syntax JPEG Extended"):
        read_xray(TEST_FILES / "JPEG-lossy.dcm")


def test_truncated_and_non_dicom_quarantined(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="pixel data is truncated"):
        read_xray(TEST_FILES / "MR_truncated.dcm")
    bogus = tmp_path / "image.dcm"
    bogus.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 300)
    with pytest.raises(QuarantineError, match="not a DICOM Part 10 file"):
        read_xray(bogus)


def test_file_without_patient_id_quarantined(tmp_path: Path) -> None:
    ds = cr_dataset(_gradient())
    del ds.PatientID
    with pytest.raises(QuarantineError, match="no PatientID"):
        read_xray(_save(ds, tmp_path / "anon.dcm"))


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize("name", ["badVR.dcm", "nested_priv_SQ.dcm", "rtplan.dcm", "waveform_ecg.dcm"])
def test_malformed_and_non_image_pydicom_files_quarantined_not_crashing(name: str) -> None:
    with pytest.raises(QuarantineError) as exc:
        read_xray(TEST_FILES / name)
    assert name in exc.value.reason
