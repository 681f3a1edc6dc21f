"""CT geometry: the normalised volume keeps the body it contains, and records whatever it crops (issue 23).

A wide field of view (a 400 mm chest-like series written as DICOM here) must come
out whole, coarsened alike on every axis, where the former fixed crop kept the
central 128 mm; a real enhanced CT head (pydicom's ``eCT_Supplemental.dcm``, 158 mm
wide) must not lose its sides; a small body off the array centre is centred at
the configured spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from ingestion.readers.ct_fit import fit_body
from ingestion.readers.ct_volume import read_ct_series
from tests.ingestion.dicom_factory import write_ct_series

AIR = -1024.0


def _wide_chest(depth: int = 40, size: int = 200, mm: float = 2.0) -> np.ndarray:
    """HU (D, H, W): a 340 x 240 mm body 40 mm right of the FOV centre, two lungs, dense markers at both flanks."""
    y, x = (np.mgrid[:size, :size] - size / 2 + 0.5) * mm
    cx = 40.0
    body = ((x - cx) / 170.0) ** 2 + (y / 120.0) ** 2 < 1
    lungs = ((np.abs(x - cx) - 70.0) / 50.0) ** 2 + (y / 80.0) ** 2 < 1
    markers = ((np.abs(x - cx) - 150.0) ** 2 + y ** 2) < 14.0 ** 2
    plane = np.where(body, 40.0, -1000.0)
    plane = np.where(lungs, -850.0, plane)
    plane = np.where(markers & body, 900.0, plane)
    return np.repeat(plane[None], depth, axis=0)


def test_a_wide_field_of_view_keeps_the_whole_body(tmp_path: Path) -> None:
    hu = _wide_chest()
    files = write_ct_series(tmp_path / "chest", (hu + 1024).astype(np.int16), spacing=(5.0, 2.0, 2.0))
    item = read_ct_series(files, (4.0, 2.0, 2.0), (16, 32, 32))
    meta, arr = item.metadata, item.array
    assert arr.shape == (16, 32, 32) and np.isfinite(arr).all()
    assert meta["tissue_cropped_fraction"] < 0.01  # a centre crop of 64 mm would lose most of the body
    assert meta["fit_scale"] > 4.0 and 0.0 < meta["fov_kept_fraction"] <= 1.0
    spacing = np.asarray(meta["output_spacing_mm"]) / np.asarray([4.0, 2.0, 2.0])
    assert spacing.max() / spacing.min() < 1.1  # every axis coarsened by the same factor: aspect kept
    assert meta["body_extent_mm"][2] == pytest.approx(340.0, abs=12.0)
    middle = arr[arr.shape[0] // 2]
    assert middle[:, :16].max() > 300 and middle[:, 16:].max() > 300  # the markers at both flanks survive
    assert (arr > -500).any(axis=(0, 1)).sum() >= 28  # fitted: the body spans the width, not a shrunk corner


def test_a_real_enhanced_ct_head_is_not_cut_at_the_default_geometry() -> None:
    item = read_ct_series([get_testdata_file("eCT_Supplemental.dcm")], (4.0, 2.0, 2.0), (32, 64, 64))
    meta = item.metadata
    assert max(meta["body_extent_mm"][1:]) > 128.0  # wider than the former 128 mm crop
    assert meta["tissue_cropped_fraction"] < 0.01 and meta["fit_scale"] > 1.0
    assert item.array.shape == (32, 64, 64) and float(item.array.max()) > 0


def test_a_small_body_off_centre_is_centred_at_the_configured_spacing() -> None:
    hu = np.full((20, 80, 80), -1000.0, np.float32)
    hu[2:10, 50:70, 4:24] = 40.0  # near a corner of the field of view
    out, record = fit_body(hu, (4.0, 2.0, 2.0), (16, 32, 32), fill=AIR)
    assert record["fit_scale"] == 1.0 and record["output_spacing_mm"] == [4.0, 2.0, 2.0]
    assert record["tissue_cropped_fraction"] == 0.0
    zs, ys, xs = np.nonzero(out > -500)
    assert (zs.min() + zs.max()) / 2 == pytest.approx(7.5, abs=1) and (xs.min() + xs.max()) / 2 == pytest.approx(
        15.5, abs=1) and (ys.min() + ys.max()) / 2 == pytest.approx(15.5, abs=1)
    assert out.shape == (16, 32, 32) and (out > -500).sum() == 8 * 20 * 20  # nothing lost, nothing invented


def test_an_empty_volume_is_kept_whole_and_says_nothing_was_cut() -> None:
    out, record = fit_body(np.full((10, 40, 40), -1000.0, np.float32), (4.0, 2.0, 2.0), (8, 16, 16), fill=AIR)
    assert out.shape == (8, 16, 16) and record["tissue_cropped_fraction"] == 0.0
    assert record["fov_kept_fraction"] == 1.0
