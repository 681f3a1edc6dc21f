"""The fast CT read (native pixels at their offset, threads, a volume faulted in while headers are parsed)
gives, bit for bit, what pydicom's own decode and the one-thread path give, on real and phantom series."""

from __future__ import annotations

import copy
import gc
import io
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ingestion.phantom.ct import write_ct_series
from ingestion.phantom.phi import make_identity
from ingestion.readers import ct_header, ct_slices, ct_volume
from ingestion.readers.ct_slices import PendingVolume
from ingestion.readers.ct_volume import load_ct_volume, read_ct_series
from ingestion.readers.records import QuarantineError


def _pydicom_reference(files: list[Path]) -> np.ndarray:
    """Each file decoded whole by pydicom, rescaled in float32, clamped at air, stacked by z: the slow truth."""
    slices = []
    for path in files:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * np.float32(ds.RescaleSlope) + np.float32(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), np.maximum(hu, np.float32(-1024.0))))
    return np.stack([hu for _, hu in sorted(slices, key=lambda s: s[0])])


def _assert_same_everywhere(files: list[Path]) -> np.ndarray:
    fast = read_ct_series(files, None, None).array
    np.testing.assert_array_equal(fast, _pydicom_reference(files))
    np.testing.assert_array_equal(fast, load_ct_volume(files, workers=1).hu)  # no threads, no prefault
    assert fast.dtype == np.float32 and fast.flags.c_contiguous
    return fast


def _save_slice(src: pydicom.Dataset, path: Path, z: float, **attrs) -> Path:
    """A copy of ``src`` at height ``z`` with fresh UIDs (and ``attrs`` set), written to ``path``."""
    ds = copy.deepcopy(src)
    x, y, _ = (float(v) for v in src.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    for name, value in attrs.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_real_pydicom_ct_slices_as_a_series(tmp_path: Path) -> None:
    """pydicom's real CT_small.dcm (header and pixels) repeated along z, written in shuffled order."""
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(3)
    files = []
    z0 = float(src.ImagePositionPatient[2])
    for k in rng.permutation(12):
        files.append(_save_slice(src, tmp_path / f"s{rng.integers(1 << 30)}.dcm", round(z0 + 2.5 * k, 3),
                                 PixelData=np.roll(src.pixel_array, int(k), axis=1).tobytes()))  # its own image
    volume = _assert_same_everywhere(files)
    assert volume.shape == (12, 128, 128)


def test_phantom_series_with_every_rescale_and_bit_depth(tmp_path: Path) -> None:
    """The phantom's series: slope 0.5 and 1, 12 and 16 stored bits, padding below air, shuffled slices."""
    seen = set()
    for seed in (30, 20, 31, 44, 50):  # the smallest series that cover every variant
        rng = np.random.default_rng(seed)
        item = write_ct_series(tmp_path / str(seed), rng, make_identity(rng, f"M{seed}", "F", 50), 0.5, "left")
        files = list(item.files)
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        seen.add((float(first.RescaleSlope), float(first.RescaleIntercept), int(first.BitsStored)))
        _assert_same_everywhere(files)
    assert seen == {(1.0, -1024.0, 12), (0.5, -1024.0, 16), (1.0, -1024.0, 16), (1.0, -1000.0, 12), (1.0, 0.0, 16)}


def test_volume_faulted_in_ahead_is_the_one_returned_and_only_when_the_shape_fits() -> None:
    pending = PendingVolume((10, 8, 8))
    taken = pending.take((10, 8, 8))
    assert taken.shape == (10, 8, 8) and taken.dtype == np.float32
    assert taken.reshape(-1)[0] == 0.0  # the background thread wrote its pages
    other = PendingVolume((10, 8, 8)).take((9, 8, 8))  # a localiser dropped: fewer slices than files
    assert other.shape == (9, 8, 8)
    assert PendingVolume(None).take((2, 4, 4)).shape == (2, 4, 4)


def test_localiser_in_a_long_series_gets_a_fresh_volume_with_the_same_values(tmp_path: Path) -> None:
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    files = []
    z0 = float(src.ImagePositionPatient[2])
    for k in range(10):
        extra = {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]} if k == 0 else {}
        files.append(_save_slice(src, tmp_path / f"{k}.dcm", z0 + 3.0 * k, **extra))
    item = read_ct_series(files, None, None)
    assert item.metadata["dropped_localizers"] == 1 and item.array.shape == (9, 128, 128)
    np.testing.assert_array_equal(item.array, _pydicom_reference(files[1:]))


def test_quarantined_series_leaves_no_prefault_thread(tmp_path: Path) -> None:
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    files = []
    z0 = float(src.ImagePositionPatient[2])
    for k in range(10):  # the last two slices share one position
        files.append(_save_slice(src, tmp_path / f"{k}.dcm", z0 + 3.0 * min(k, 8)))
    with pytest.raises(QuarantineError, match="duplicated slice position"):
        read_ct_series(files, None, None)
    assert not [t for t in threading.enumerate() if t.name == "ct-prefault"]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small.dcm"])
def test_one_pass_header_parse_is_what_dcmread_gives(name: str) -> None:
    """The fast header parse (pydicom's read_dataset, once for the meta and once for the body) gives the
    elements, file meta, encoding and pixel offset that dcmread(stop_before_pixels=True) gives, on real files
    in explicit and implicit VR little endian."""
    head = Path(get_testdata_file(name)).read_bytes()[: ct_header.HEADER_CHUNK]
    fast = ct_header.parse_native_header(head)
    slow = ct_header.parse_header(io.BytesIO(head))
    assert fast is not None
    assert fast[0] == slow[0] and fast[0].file_meta == slow[0].file_meta and len(fast[0]) == len(slow[0]) > 20
    assert fast[0].original_encoding == slow[0].original_encoding and fast[0].preamble == slow[0].preamble
    assert fast[1:] == slow[1:] and fast[2] is not None


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "JPEG2000.dcm"])
def test_one_pass_header_parse_leaves_other_syntaxes_to_dcmread(name: str) -> None:
    head = Path(get_testdata_file(name)).read_bytes()[: ct_header.HEADER_CHUNK]
    assert ct_header.parse_native_header(head) is None


def test_collector_paused_while_headers_parse_and_restored_even_on_quarantine(tmp_path: Path) -> None:
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    z0 = float(src.ImagePositionPatient[2])
    files = [_save_slice(src, tmp_path / f"{k}.dcm", z0 + 3.0 * min(k, 8)) for k in range(10)]  # a duplicate
    seen = []
    original = ct_slices.read_image_file

    def spy(path):
        seen.append(gc.isenabled())
        return original(path)

    ct_volume.read_image_file = spy
    try:
        with pytest.raises(QuarantineError, match="duplicated slice position"):
            read_ct_series(files, None, None)
        assert gc.isenabled() and seen and not any(seen)
        gc.disable()  # a caller that turned it off keeps it off
        read_ct_series(files[:9], None, None)
        assert not gc.isenabled()
    finally:
        gc.enable()
        ct_volume.read_image_file = original
