"""X-ray pixel spacing: PixelSpacing, else ImagerPixelSpacing (said so in the metadata), never 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom

from ingestion.driver.ingest import ingest
from ingestion.driver.worker import ReaderConfig
from ingestion.manifest import read_manifest
from ingestion.readers.xray_image import read_xray
from tests.ingestion.dicom_factory import cr_dataset

READER_ARGS = dict(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                   eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)


def _dx(path: Path, **elements: object) -> Path:
    """A real DX file written by pydicom with the given spacing elements (and no others)."""
    ds = cr_dataset(np.tile(np.arange(64, dtype=np.uint16) * 60, (64, 1)), modality="DX")
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_pixel_spacing_is_used_when_present(tmp_path: Path) -> None:
    item = read_xray(_dx(tmp_path / "a.dcm", PixelSpacing=[0.2, 0.25], ImagerPixelSpacing=[0.3, 0.3]), (32, 32))
    assert item.metadata["pixel_spacing_mm"] == [0.2, 0.25]
    assert item.metadata["pixel_spacing_source"] == "PixelSpacing"


def test_imager_pixel_spacing_fallback_is_reported(tmp_path: Path) -> None:
    path = _dx(tmp_path / "b.dcm", ImagerPixelSpacing=[0.143, 0.143])
    assert "PixelSpacing" not in pydicom.dcmread(path)
    item = read_xray(path, (32, 32))
    assert item.metadata["pixel_spacing_mm"] == [0.143, 0.143]
    assert item.metadata["pixel_spacing_source"].startswith("ImagerPixelSpacing")
    assert "not corrected for magnification" in item.metadata["pixel_spacing_source"]
    json.dumps(item.metadata)


def test_zero_pixel_spacing_falls_back_and_magnification_is_applied(tmp_path: Path) -> None:
    path = _dx(tmp_path / "c.dcm", PixelSpacing=[0, 0], ImagerPixelSpacing=[0.2, 0.2],
               EstimatedRadiographicMagnificationFactor=1.25)
    item = read_xray(path, (32, 32))
    np.testing.assert_allclose(item.metadata["pixel_spacing_mm"], [0.16, 0.16])
    assert "EstimatedRadiographicMagnificationFactor" in item.metadata["pixel_spacing_source"]


def test_no_spacing_at_all_is_none_with_reason_not_zero(tmp_path: Path) -> None:
    item = read_xray(_dx(tmp_path / "d.dcm"), (32, 32))
    assert item.metadata["pixel_spacing_mm"] is None
    assert item.metadata["pixel_spacing_source"].startswith("absent")


def test_fallback_reaches_the_manifest(tmp_path: Path) -> None:
    _dx(tmp_path / "src" / "xr" / "e.dcm", ImagerPixelSpacing=[0.175, 0.175])
    ingest(tmp_path / "src", None, tmp_path / "home", "test-secret", workers=1, config=ReaderConfig(**READER_ARGS))
    manifest = read_manifest(tmp_path / "home" / "manifest.parquet")
    assert list(manifest["status"]) == ["ok"]
    meta = json.loads(manifest["meta_json"].iloc[0])
    assert meta["pixel_spacing_mm"] == [0.175, 0.175]
    assert meta["pixel_spacing_source"].startswith("ImagerPixelSpacing")
