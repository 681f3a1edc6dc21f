"""CT series reading: geometry sorting, HU, resampling and every quarantine reason, on real DICOM files."""

from __future__ import annotations

import json
import shutil
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless, MPEG2MPML, RLELossless

from ingestion.readers.ct_volume import load_ct_volume, read_ct_series
from ingestion.readers.records import NormalisedItem, QuarantineError
from tests.ingestion.dicom_factory import ct_slice_dataset, write_ct_series

CT2 = sorted(Path(get_testdata_file("CT_small.dcm")).parent.joinpath("dicomdirtests/77654033/CT2").iterdir())


def _stored_volume(depth: int = 12, size: int = 24, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2000, (depth, size, size)).astype(np.int16)


def test_shuffled_series_sorted_by_geometry_and_hu_exact(tmp_path: Path) -> None:
    stored = _stored_volume()
    files = write_ct_series(tmp_path / "s", stored, spacing=(2.5, 0.8, 0.8))
    item = read_ct_series(files, None, None)
    assert isinstance(item, NormalisedItem) and item.modality == "ct"
    assert item.array.dtype == np.float32 and item.array.shape == stored.shape
    np.testing.assert_array_equal(item.array, np.maximum(stored.astype(np.float32) - 1024, -1024))
    assert item.metadata["original_spacing_mm"] == [2.5, 0.8, 0.8]
    assert item.metadata["n_slices"] == 12
    assert item.original_patient_id == "MRN00412345"
    assert item.event_date == "2024-05-03"
    json.dumps(item.metadata)  # JSON-serialisable as the manifest needs


def test_rescale_slope_and_intercept_applied(tmp_path: Path) -> None:
    stored = np.full((3, 8, 8), 100, np.int16)
    files = write_ct_series(tmp_path / "s", stored, slope=2.0, intercept=-1000.0)
    assert np.all(read_ct_series(files, None, None).array == -800.0)


def test_tilted_series_sorted_along_normal(tmp_path: Path) -> None:
    """An oblique series (30 degrees about x) whose z-order differs from InstanceNumber order."""
    angle = np.deg2rad(30)
    orientation = (1, 0, 0, 0, np.cos(angle), np.sin(angle))
    stored = np.stack([np.full((10, 10), 1024 + 10 * k, np.int16) for k in range(8)])
    files = write_ct_series(tmp_path / "s", stored, spacing=(2.0, 1.0, 1.0), orientation=orientation, rng_seed=3)
    item = read_ct_series(files, None, None)
    assert item.metadata["original_spacing_mm"][0] == pytest.approx(2.0)
    assert [float(s[0, 0]) for s in item.array] == [10.0 * k for k in range(8)]
    assert item.metadata["gantry_tilt_deg"] == pytest.approx(0.0, abs=1e-3)


def test_gantry_tilt_sheared_series_keeps_geometry(tmp_path: Path) -> None:
    """Axial slices whose positions step along a tilted line (gantry tilt 15 degrees) are not a gap."""
    tilt = np.deg2rad(15)
    files = []
    for k in range(6):
        pos = (0.0, -k * 2.0 * np.tan(tilt), 2.0 * k)  # y shifts as z steps: sheared, not rotated, slices
        ds = ct_slice_dataset(np.full((12, 12), 1024 + k, np.int16), pos, instance=6 - k)
        files.append(_write(ds, tmp_path / f"{k:02d}.dcm"))
    item = read_ct_series(files[::-1], None, None)
    assert item.metadata["original_spacing_mm"][0] == pytest.approx(2.0)
    assert item.metadata["gantry_tilt_deg"] == pytest.approx(15.0, abs=0.01)
    assert [float(s[0, 0]) for s in item.array] == [float(k) for k in range(6)]
    assert read_ct_series(files, (2.0, 1.0, 1.0), (6, 12, 12)).array.shape == (6, 12, 12)


def _phantom(depth: int = 20, size: int = 40) -> np.ndarray:
    """Air with a 300 HU cube in the middle and a bone marker at the superior, patient-left corner."""
    hu = np.full((depth, size, size), -1000, np.int16)
    hu[6:14, 12:28, 12:28] = 300
    hu[-4:, 2:8, -8:-2] = 1500
    return hu + 1024


def test_resampled_to_grid_and_canonical_orientation(tmp_path: Path) -> None:
    stored = _phantom()
    files = write_ct_series(tmp_path / "s", stored, spacing=(2.0, 1.0, 1.0))
    item = read_ct_series(files, (4.0, 2.0, 2.0), (16, 32, 32))
    arr = item.array
    assert arr.shape == (16, 32, 32) and arr.dtype == np.float32
    assert item.metadata["output_spacing_mm"] == [4.0, 2.0, 2.0] and item.metadata["output_axes"] == "SPL"
    assert arr[0, 0, 0] == pytest.approx(-1024, abs=1)  # pad value is air
    assert arr[8, 16, 16] == pytest.approx(300, abs=1)  # the cube keeps its HU
    z, y, x = np.unravel_index(np.argmax(arr), arr.shape)
    assert z >= 10 and y < 14 and x >= 18  # superior, anterior, patient-left

    # The same anatomy stored with rows running right-to-left (so the normal points down) must come out identical.
    mirrored = write_ct_series(
        tmp_path / "m", stored[::-1, :, ::-1], spacing=(2.0, 1.0, 1.0), orientation=(-1, 0, 0, 0, 1, 0),
        origin=(-100.0 + 39.0, -120.0, 50.0 + 2.0 * 19),
    )
    np.testing.assert_allclose(read_ct_series(mirrored, (4.0, 2.0, 2.0), (16, 32, 32)).array, arr, atol=1e-3)


def test_pydicom_ct2_series_with_gap_is_quarantined() -> None:
    with pytest.raises(QuarantineError, match="missing slices") as exc:
        read_ct_series(CT2, (4.0, 2.0, 2.0), (8, 16, 16))
    assert "202.50 mm" in exc.value.reason


def test_missing_slice_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume(), skip=(5,))
    with pytest.raises(QuarantineError, match=r"missing slices.*about 1 slice"):
        read_ct_series(files, None, None)


def test_duplicate_slice_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume())
    shutil.copy(files[3], tmp_path / "s" / "copy.dcm")
    with pytest.raises(QuarantineError, match="duplicated slice position"):
        read_ct_series([*files, tmp_path / "s" / "copy.dcm"], None, None)


def _write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_uneven_spacing_quarantined(tmp_path: Path) -> None:
    pixels = np.zeros((8, 8), np.int16)
    files = [
        _write(ct_slice_dataset(pixels, (0, 0, z), instance=i), tmp_path / f"{i}.dcm")
        for i, z in enumerate([0.0, 2.0, 4.0, 6.6, 8.6, 10.6])
    ]
    with pytest.raises(QuarantineError, match="uneven slice spacing"):
        read_ct_series(files, None, None)


def test_mixed_orientation_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume(4, 8))
    odd = ct_slice_dataset(np.zeros((8, 8), np.int16), (0, 0, 99), orientation=(1, 0, 0, 0, 0, -1))
    with pytest.raises(QuarantineError, match="mixed orientation"):
        read_ct_series([*files, _write(odd, tmp_path / "odd.dcm")], None, None)


def test_mixed_sizes_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume(4, 8), origin=(0, 0, 0))
    odd = ct_slice_dataset(np.zeros((16, 16), np.int16), (0, 0, 10.0))
    with pytest.raises(QuarantineError, match="mixed image sizes"):
        read_ct_series([*files, _write(odd, tmp_path / "odd.dcm")], None, None)


def test_localiser_dropped_not_quarantined(tmp_path: Path) -> None:
    stored = _stored_volume(6, 8)
    files = write_ct_series(tmp_path / "s", stored)
    scout = ct_slice_dataset(
        np.zeros((8, 8), np.int16), (0, 0, 0), orientation=(0, 1, 0, 0, 0, -1),
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    item = read_ct_series([_write(scout, tmp_path / "scout.dcm"), *files], None, None)
    assert item.metadata["dropped_localizers"] == 1
    assert item.array.shape == stored.shape


def test_truncated_pixel_data_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume(4, 16))
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 100])
    with pytest.raises(QuarantineError, match="truncated"):
        read_ct_series(files, None, None)


def test_truncated_header_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume(4, 16))
    files[0].write_bytes(files[0].read_bytes()[:300])
    with pytest.raises(QuarantineError, match="truncated or corrupt|truncated"):
        read_ct_series(files, None, None)


def test_non_dicom_file_named_dcm_quarantined(tmp_path: Path) -> None:
    files = write_ct_series(tmp_path / "s", _stored_volume(4, 8))
    fake = tmp_path / "s" / "notes.dcm"
    fake.write_text("Patient said the scan was fine.\n")
    with pytest.raises(QuarantineError, match="not a DICOM Part 10 file"):
        read_ct_series([*files, fake], None, None)


def test_missing_pixel_data_quarantined(tmp_path: Path) -> None:
    ds = ct_slice_dataset(np.zeros((8, 8), np.int16), (0, 0, 0))
    del ds.PixelData
    with pytest.raises(QuarantineError, match="no pixel data"):
        read_ct_series([_write(ds, tmp_path / "a.dcm")], None, None)


def test_unsupported_transfer_syntax_named(tmp_path: Path) -> None:
    ds = ct_slice_dataset(np.zeros((8, 8), np.int16), (0, 0, 0))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    with pytest.raises(QuarantineError, match=r"MPEG2 Main Profile / Main Level .*not supported"):
        read_ct_series([_write(ds, tmp_path / "a.dcm")], None, None)


def test_missing_decoder_plugin_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the JPEG 2000 plugins hidden, the reason names the syntax and what to install."""
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})
    with pytest.raises(QuarantineError, match=r"JPEG 2000 .*needs a decoder plugin.*pylibjpeg"):
        read_ct_series([get_testdata_file("J2K_pixelrep_mismatch.dcm")], None, None)


def test_pydicom_ct_small_known_voxel() -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = float(ds.pixel_array[64, 64]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    item = read_ct_series([path], None, None)
    assert item.array.shape == (1, 128, 128)
    assert item.array[0, 64, 64] == pytest.approx(expected) == 904.0
    assert item.original_patient_id == "1CT1"


@pytest.mark.realdata
def test_realdata_j2k_ct_series_hu(realdata: Path, tmp_path: Path) -> None:
    """A JPEG 2000 series (the real slice at three positions) goes through pydicom's decoder, and resamples."""
    path = realdata / "dicom" / "693_J2KR.dcm"
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    item = read_ct_series([path], None, None)
    np.testing.assert_allclose(item.array[0], np.maximum(hu, -1024))
    assert "JPEG 2000" in item.metadata["transfer_syntax"]
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    for k in range(3):
        ds.ImagePositionPatient = [x, y, z + 5.0 * k]
        ds.save_as(tmp_path / f"{k}.dcm")
    files = sorted(tmp_path.iterdir())
    series = read_ct_series(files, None, None).array
    np.testing.assert_allclose(series, np.broadcast_to(np.maximum(hu, -1024), series.shape))
    resampled = read_ct_series(files, (4.0, 2.0, 2.0), (8, 64, 64)).array
    assert resampled.shape == (8, 64, 64) and resampled.max() > 500 and resampled.min() == pytest.approx(-1024)


def test_peak_memory_near_the_volume(tmp_path: Path) -> None:
    """Headers only are held while checking; pixels go straight into the volume (plus per-thread buffers)."""
    stored = _stored_volume(24, 256)  # 6 MiB: large enough that fixed buffers do not dominate
    files = write_ct_series(tmp_path / "s", stored)
    tracemalloc.start()
    volume = load_ct_volume(files)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.3 * volume.hu.nbytes, f"peak {peak} vs volume {volume.hu.nbytes}"


def test_threads_and_one_thread_give_the_same_volume(tmp_path: Path) -> None:
    stored = _stored_volume(24, 32, seed=4)
    files = write_ct_series(tmp_path / "s", stored)
    one = load_ct_volume(files, workers=1).hu
    np.testing.assert_array_equal(load_ct_volume(files, workers=2).hu, one)
    np.testing.assert_array_equal(one, np.maximum(stored.astype(np.float32) - 1024, -1024))


def test_padding_below_air_clamped_and_slope_applied(tmp_path: Path) -> None:
    """Outside-FOV padding (-2024 HU here) becomes air; slices without padding are left as rescaled."""
    stored = _stored_volume(10, 16, seed=5)
    stored[2, :4, :4] = -2000  # stored -2000 * 0.5 - 1024 = -2024 HU: below air
    files = write_ct_series(tmp_path / "s", stored, slope=0.5, intercept=-1024.0)
    expected = np.maximum(stored.astype(np.float32) * 0.5 - 1024, -1024)
    np.testing.assert_array_equal(read_ct_series(files, None, None).array, expected)
    assert expected[2, 0, 0] == -1024 and expected.min() == -1024


def _resave(path: Path, change: Callable[[pydicom.Dataset], object]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def test_implicit_vr_rle_and_big_header_slices_match_native(tmp_path: Path) -> None:
    """Implicit VR, RLE-compressed (pydicom's handler) and >64 KiB headers in one series all read the same."""
    stored = _stored_volume(12, 16, seed=6)
    files = write_ct_series(tmp_path / "s", stored)
    expected = read_ct_series(files, None, None).array
    _resave(files[0], lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", ImplicitVRLittleEndian))
    _resave(files[1], lambda ds: ds.compress(RLELossless))
    _resave(files[2], lambda ds: ds.add_new(0x00091010, "OB", b"\x01" * 70_000))  # private blob before the pixels
    assert str(pydicom.dcmread(files[1]).file_meta.TransferSyntaxUID) == RLELossless
    assert pydicom.dcmread(files[0]).original_encoding[0] is True
    np.testing.assert_array_equal(read_ct_series(files, None, None).array, expected)


def test_bits_above_bits_stored_ignored(tmp_path: Path) -> None:
    stored = _stored_volume(9, 16, seed=8)  # 0..1999 fits in 12 bits
    noisy = write_ct_series(tmp_path / "g", stored | np.int16(0x3000))  # junk in bits 12-13
    for f in noisy:
        _resave(f, lambda ds: (setattr(ds, "BitsStored", 12), setattr(ds, "HighBit", 11)))
    np.testing.assert_array_equal(
        read_ct_series(noisy, None, None).array, np.maximum(stored.astype(np.float32) - 1024, -1024)
    )


def test_series_read_from_zip_members(tmp_path: Path) -> None:
    stored = _stored_volume(9, 16, seed=7)
    files = write_ct_series(tmp_path / "s", stored)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f"series/{f.name}")
    members = [f"{archive}!series/{f.name}" for f in files]
    np.testing.assert_array_equal(read_ct_series(members, None, None).array, read_ct_series(files, None, None).array)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_malformed_attribute_quarantined_with_file_name() -> None:
    path = Path(get_testdata_file("badVR.dcm"))  # NumberOfFrames '1A'
    with pytest.raises(QuarantineError, match="badVR.dcm"):
        read_ct_series([path], None, None)
