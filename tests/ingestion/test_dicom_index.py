"""DICOM discovery: folders and zip exports, grouping by header, every file accounted for."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from ingestion.driver.dicom_index import index_dicom
from ingestion.readers.ct_volume import read_ct_series
from ingestion.readers.xray_image import read_xray
from tests.ingestion.dicom_factory import cr_dataset, ct_slice_dataset, write_ct_series

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent


def _tree(root: Path) -> dict[str, Path]:
    """An export with misleading folder names, a zip, other modalities and junk."""
    stored = np.full((6, 16, 16), 1100, np.int16)
    # CT in a folder called "xray", radiograph in a folder called "ct": names must not matter.
    write_ct_series(root / "xray", stored, series_uid="1.2.3.100")
    cr = root / "ct" / "image.dcm"
    cr.parent.mkdir(parents=True)
    cr_dataset(np.zeros((32, 32), np.uint16), patient_id="MRN2").save_as(cr, enforce_file_format=True)
    shutil.copy(TEST_FILES / "MR_small.dcm", root / "mr.dcm")
    shutil.copy(TEST_FILES / "test-SR.dcm", root / "report.dcm")
    (root / "readme.dcm").write_text("not an image")
    truncated = root / "cut.dcm"
    truncated.write_bytes((TEST_FILES / "CT_small.dcm").read_bytes()[:200])
    zsrc = root.parent / "zipsrc"
    write_ct_series(zsrc / "series", stored, series_uid="1.2.3.200", patient_id="MRN3")
    cr_dataset(np.zeros((32, 32), np.uint16), patient_id="MRN3", modality="DX").save_as(
        zsrc / "dx.dcm", enforce_file_format=True
    )
    with zipfile.ZipFile(root / "export.zip", "w") as zf:
        for path in sorted(zsrc.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(zsrc).as_posix())
    return {"cr": cr}


def test_index_groups_by_header_and_accounts_for_every_file(tmp_path: Path) -> None:
    root = tmp_path / "export"
    _tree(root)
    index = index_dicom(root)
    kinds = sorted((g.kind, len(g.files), g.original_patient_id) for g in index.groups)
    assert kinds == [("ct", 6, "MRN00412345"), ("ct", 6, "MRN3"), ("xray", 1, "MRN2"), ("xray", 1, "MRN3")]
    ct_local = next(g for g in index.groups if g.kind == "ct" and g.original_patient_id == "MRN00412345")
    assert all(f.startswith("xray/") for f in ct_local.files)
    zipped = next(g for g in index.groups if g.kind == "ct" and g.original_patient_id == "MRN3")
    assert all(f.startswith("export.zip!series/") for f in zipped.files)
    assert next(g for g in index.groups if g.kind == "xray" and g.original_patient_id == "MRN2").files == (
        "ct/image.dcm",
    )
    reasons = {q.files[0]: q.reason for q in index.quarantined}
    assert "modality MR" in reasons["mr.dcm"] and "modality SR" in reasons["report.dcm"]
    unreadable = dict(index.unreadable)
    assert "not a DICOM Part 10 file" in unreadable["readme.dcm"]
    assert "cut.dcm" in unreadable
    disk_files = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".zip"]
    with zipfile.ZipFile(root / "export.zip") as zf:
        n_members = len(zf.namelist())
    assert index.n_files == len(disk_files) + n_members  # nothing silently dropped


def test_indexed_groups_are_readable_including_zip_members(tmp_path: Path) -> None:
    root = tmp_path / "export"
    _tree(root)
    index = index_dicom(root)
    for group in index.groups:
        if group.kind == "ct":
            item = read_ct_series(index.paths(group), (4.0, 2.0, 2.0), (4, 8, 8))
            assert item.array.shape == (4, 8, 8)
            assert item.array[2, 4, 4] == pytest.approx(1100 - 1024, abs=1e-3)
        else:
            assert read_xray(index.paths(group)[0], (16, 16)).array.shape == (16, 16)


def test_localiser_only_series_quarantined(tmp_path: Path) -> None:
    for i in range(2):
        ct_slice_dataset(
            np.zeros((8, 8), np.int16), (0, 0, i), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            series_uid="1.2.3.9",
        ).save_as(tmp_path / f"scout{i}.dcm", enforce_file_format=True)
    index = index_dicom(tmp_path)
    assert not index.groups
    assert "localiser" in index.quarantined[0].reason and len(index.quarantined[0].files) == 2


def test_pydicom_test_tree_classifies_ct_and_cr() -> None:
    index = index_dicom(TEST_FILES / "dicomdirtests" / "77654033")
    assert sorted(g.kind for g in index.groups) == ["ct", "xray", "xray", "xray"]
    assert next(g for g in index.groups if g.kind == "ct").files == tuple(
        f"CT2/{n}" for n in ("17106", "17136", "17166", "17196")
    )


def test_dangling_link_and_unreadable_file_reported(tmp_path: Path) -> None:
    (tmp_path / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    index = index_dicom(tmp_path)
    assert "file not found" in dict(index.unreadable)["gone.dcm"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_permission_denied_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked.dcm"
    shutil.copy(TEST_FILES / "CT_small.dcm", locked)
    locked.chmod(0)
    try:
        assert "permission denied" in dict(index_dicom(tmp_path).unreadable)["locked.dcm"]
    finally:
        locked.chmod(0o600)


def test_corrupt_zip_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    assert "cannot be opened" in dict(index_dicom(tmp_path).unreadable)["broken.zip"]


def test_dicom_modules_import_no_orchestration_or_monai() -> None:
    """The readers stay a plain library: importing them pulls in neither prefect/mlflow/streamlit nor MONAI
    (MONAI, imported lazily when resampling, itself imports mlflow through monai.handlers)."""
    import subprocess
    import sys

    code = (
        "import sys, ingestion.driver.dicom_index, ingestion.readers.ct_volume, ingestion.readers.xray_image, ingestion.deid.dicom;"
        "print(sorted(m for m in ('prefect', 'mlflow', 'streamlit', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
