"""Turn the DICOM index (CT series, radiographs, quarantined groups, unreadable files) into work units.

:func:`ingestion.driver.dicom_index.index_dicom` walks the whole source root and
reads headers; this module keeps only the files the driver classified as
DICOM (the index also lists EDF and text files as 'not DICOM', which the
driver handles itself), hashes zip members, folds byte-identical slices of a
series, and names each series by its folder. Every DICOM candidate lands in
exactly one unit; one the index did not mention is quarantined, not lost.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingestion.driver.hashing import SourceFile, combined_sha, unreadable_id, zip_member_sha256
from ingestion.driver.worker import Readers, WorkUnit
from ingestion.readers.dicom_source import ZIP_SEPARATOR


def _container(rel: str) -> str:
    """The source file a relative path lives in: the archive for zip members, else itself."""
    return rel.split(ZIP_SEPARATOR, 1)[0] if ZIP_SEPARATOR in rel and ".zip" in rel.lower() else rel


def _folder(files: Sequence[str]) -> str:
    return posixpath.commonpath([posixpath.dirname(f) for f in files]) or "."


def _series_uri(files: Sequence[str], series_uid: str, shared_folders: Counter) -> str:
    """A series is named by its folder; several series in one folder get a hash of the UID appended."""
    folder = _folder(files)
    if shared_folders[folder] > 1:  # tell them apart without exposing the UID itself
        return f"{folder}#series-{hashlib.sha256(series_uid.encode()).hexdigest()[:12]}"
    return folder


def dicom_units(root: Path, candidates: Sequence[SourceFile], readers: Readers) -> list[WorkUnit]:
    """Work units for the DICOM ``candidates`` (files and .zip archives) under ``root``."""
    root = Path(root).resolve()
    sha_of: dict[str, str | None] = {c.relpath: c.sha256 for c in candidates}
    wanted = set(sha_of)
    index = readers.index_dicom(root)

    def mine(files: Sequence[str]) -> bool:
        return all(_container(f) in wanted for f in files)

    def sha(rel: str) -> str | None:
        if rel not in sha_of:
            archive, member = rel.split(ZIP_SEPARATOR, 1)
            sha_of[rel] = zip_member_sha256(root / archive, member)
        return sha_of[rel]

    units: list[WorkUnit] = []
    seen: set[str] = set()
    ct_folders = Counter(_folder(g.files) for g in index.groups if g.kind == "ct" and mine(g.files))
    for group in index.groups:
        if not mine(group.files):
            continue
        seen.update(group.files)
        units.append(_group_unit(index, group, sha, ct_folders))
    for bad in index.quarantined:
        if not mine(bad.files):
            continue
        seen.update(bad.files)
        shas = [sha(f) or unreadable_id(f) for f in bad.files]
        item = shas[0] if len(shas) == 1 else combined_sha(shas)
        uri = bad.files[0] if len(bad.files) == 1 else _series_uri(bad.files, bad.series_uid, Counter())
        units.append(WorkUnit("unknown", uri, tuple(bad.files), item, original_patient_id=bad.original_patient_id or None,
                              quarantine=bad.reason, extra={"dicom_modality": bad.dicom_modality}))
    for rel, reason in index.unreadable:
        if _container(rel) not in wanted:
            continue  # an EDF or text file the driver reads itself
        seen.add(rel)
        units.append(WorkUnit("unknown", rel, (rel,), sha(rel) or unreadable_id(rel), quarantine=reason))
    containers = {_container(s) for s in seen}  # one pass: a scan of `seen` per file was quadratic in the files
    for rel in sorted(wanted):
        if rel not in seen and rel not in containers:
            units.append(WorkUnit("unknown", rel, (rel,), sha_of[rel] or unreadable_id(rel),
                                  quarantine=f"{rel}: the DICOM index found no DICOM file in it; check the file"))
    return units


def _group_unit(index: Any, group: Any, sha: Callable[[str], str | None], ct_folders: Counter) -> WorkUnit:
    """One CT series or radiograph; byte-identical files in a series are read once and listed as duplicates."""
    first_of: dict[str, str] = {}
    reads, duplicates = [], []
    for rel in group.files:
        digest = sha(rel) or unreadable_id(rel)
        if digest in first_of:
            duplicates.append((rel, first_of[digest]))
        else:
            first_of[digest] = rel
            reads.append(index.path(rel))
    if group.kind == "xray":
        uri, item = group.files[0], next(iter(first_of))
    else:
        uri, item = _series_uri(group.files, group.series_uid, ct_folders), combined_sha(first_of)
    return WorkUnit(group.kind, uri, tuple(group.files), item, read_paths=tuple(reads),
                    original_patient_id=group.original_patient_id or None, duplicates=tuple(duplicates),
                    extra={"dicom_modality": group.dicom_modality})
