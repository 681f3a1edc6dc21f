"""DICOM grouping stays linear in the number of files (a 2,000-patient phantom has ~80,000 DICOM files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.driver.dicom_index import DicomGroup, DicomIndex
import ingestion.driver.dicom_units as ingest_dicom
from ingestion.driver.hashing import SourceFile
from ingestion.driver.worker import Readers

N_SERIES, SLICES = 60, 10


def _index(root: Path) -> DicomIndex:
    index = DicomIndex(root=root)
    for s in range(N_SERIES):
        files = tuple(f"dicom/s{s:03d}/{k:03d}.dcm" for k in range(SLICES))
        index.groups.append(DicomGroup("ct", files, f"MRN{s}", f"study{s}", f"series{s}", "CT"))
    return index


def test_grouping_reads_each_path_a_bounded_number_of_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = _index(tmp_path)
    files = [f for g in index.groups for f in g.files] + ["dicom/orphan.dcm"]  # one the index never mentioned
    candidates = [SourceFile(f, tmp_path / f, f"{i:064x}") for i, f in enumerate(files)]
    readers = Readers(index_dicom=lambda root: index, read_ct_series=None, read_xray=None, read_eeg=None,
                      read_notes=None)
    calls = 0
    real = ingest_dicom._container

    def counting(rel: str) -> str:
        nonlocal calls
        calls += 1
        return real(rel)

    monkeypatch.setattr(ingest_dicom, "_container", counting)
    units = ingest_dicom.dicom_units(tmp_path, candidates, readers)

    assert len(files) == N_SERIES * SLICES + 1
    assert calls <= 4 * len(files)  # a scan of all seen files per candidate made this len(files) ** 2 (~361,000)
    assert sorted(u.kind for u in units) == ["ct"] * N_SERIES + ["unknown"]
    orphan = next(u for u in units if u.kind == "unknown")
    assert orphan.source_uri == "dicom/orphan.dcm" and "found no DICOM file" in orphan.quarantine
    assert {f for u in units for f in u.files} == set(files)  # every candidate in exactly one unit
