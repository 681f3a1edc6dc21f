"""Find every DICOM file under a root (folders and .zip exports) and group it into items.

Only headers are read. Each file ends up in exactly one place: a CT series
group, an X-ray group (one per image file), a quarantined group (a modality
clinfuse does not read, with the reason) or the unreadable list (not DICOM,
truncated, no permission). Classification uses the headers (Modality and SOP
Class UID), never folder or file names, which exports make up freely.
"""

from __future__ import annotations

import os
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset
from pydicom.uid import UID

from ingestion.readers.dicom_source import ZIP_SEPARATOR, read_dataset
from ingestion.readers.records import QuarantineError
from ingestion.readers.zip_limits import archive_problem

CT_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.2"})  # CT Image Storage (single-frame slices)
MULTIFRAME_CT_SOP_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}  # Enhanced CT, Legacy Converted Enhanced CT
)
XRAY_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    }
)
XRAY_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"

Kind = Literal["ct", "xray"]


@dataclass(frozen=True)
class DicomGroup:
    """One item to read: a CT series (all its files) or one radiograph file.

    ``files`` are paths relative to the index root (``a.zip!m/x.dcm`` for zip
    members), sorted for a stable order; readers sort slices by geometry.
    """

    kind: Kind
    files: tuple[str, ...]
    original_patient_id: str
    study_uid: str
    series_uid: str
    dicom_modality: str
    study_date: str | None = None


@dataclass(frozen=True)
class QuarantinedGroup:
    """Files that are readable DICOM but not something clinfuse ingests (MR, SR, ...), with why."""

    files: tuple[str, ...]
    reason: str
    original_patient_id: str
    dicom_modality: str
    series_uid: str


@dataclass
class DicomIndex:
    """Everything found under ``root``: groups to read, groups quarantined, files unreadable."""

    root: Path
    groups: list[DicomGroup] = field(default_factory=list)
    quarantined: list[QuarantinedGroup] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def path(self, relpath: str) -> str:
        """The absolute path (``/abs/a.zip!member`` for members) that the readers accept."""
        return str(self.root / relpath)

    def paths(self, group: DicomGroup | QuarantinedGroup) -> list[str]:
        """Absolute paths of a group's files, in the group's order."""
        return [self.path(f) for f in group.files]

    @property
    def n_files(self) -> int:
        """Files accounted for; equals the number of files found (nothing is dropped)."""
        return (
            sum(len(g.files) for g in self.groups)
            + sum(len(q.files) for q in self.quarantined)
            + len(self.unreadable)
        )


def _iter_sources(root: Path) -> Iterator[tuple[str, str | None]]:
    """Yield (relative path, reason-if-unlistable) for every file, expanding .zip archives."""
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            if fname.lower().endswith(".zip") and full.is_file() and os.access(full, os.R_OK):
                try:
                    with zipfile.ZipFile(full) as zf:
                        infos = [i for i in zf.infolist() if not i.is_dir()]
                except (zipfile.BadZipFile, OSError) as exc:
                    yield rel, f"{rel}: .zip archive cannot be opened ({exc}); re-create the export"
                    continue
                problem = archive_problem(infos)  # declared sizes bind zipfile: checked before unpacking anything
                if problem:
                    yield rel, f"{rel}: {problem}; nothing in the archive is unpacked: re-create the export"
                    continue
                members = sorted(i.filename for i in infos)
                for member in members:
                    if member.startswith(("/", "\\")) or ".." in member.replace("\\", "/").split("/"):
                        yield (f"{rel}{ZIP_SEPARATOR}{member}", f"{rel}: archive member {member!r} has an absolute "
                               "or '..' path (a path-traversal archive) and is not read; re-create the export")
                        continue
                    yield f"{rel}{ZIP_SEPARATOR}{member}", None
            else:
                yield rel, None


@dataclass(frozen=True)
class _Header:
    """What grouping needs from one file's header, kept instead of the pydicom Dataset.

    Why: holding every slice's Dataset until the walk ended made the ingest
    parent's memory grow with the cohort (issue 25: peak RSS of the largest
    process 744 MiB at 200 patients, 1,470 MiB at 1,000, ~48 slices each), and
    forked reader workers inherited it.
    """

    patient_id: str
    modality: str
    series_uid: str
    study_date: str
    localizer: bool

    @classmethod
    def of(cls, ds: Dataset) -> _Header:
        return cls(_text(ds, "PatientID"), _text(ds, "Modality"), _text(ds, "SeriesInstanceUID"),
                   _text(ds, "StudyDate"), "LOCALIZER" in _image_types(ds))


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _image_types(ds: Dataset) -> set[str]:
    value = ds.get("ImageType") or []
    if isinstance(value, str):
        value = value.split("\\")
    return {str(v).upper() for v in value}


def classify(ds: Dataset) -> tuple[Kind | None, str]:
    """('ct' | 'xray', '') for what clinfuse reads, else (None, reason to quarantine).

    The SOP Class decides when it is a known image class; Modality is the
    fallback for the rest, since a Secondary Capture tagged 'CT' is a
    screenshot, not a slice.
    """
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = _text(ds, "Modality").upper()
    if sop == MEDIA_DIRECTORY_SOP_CLASS:
        return None, "DICOMDIR media directory (an index of files, not an image); nothing to ingest"
    if sop in CT_SOP_CLASSES or sop in MULTIFRAME_CT_SOP_CLASSES:
        return "ct", ""  # an Enhanced CT file is a whole series: its frames are placed by its functional groups
    if sop in XRAY_SOP_CLASSES:
        return "xray", ""
    sop_name = UID(sop).name if sop else "no SOP Class UID"
    if not sop and modality == "CT":
        return "ct", ""
    if not sop and modality in XRAY_MODALITIES:
        return "xray", ""
    return None, (
        f"modality {modality or 'unknown'} ({sop_name}) is not ingested; clinfuse reads CT series and "
        "CR/DX radiographs only"
    )


def index_dicom(root: Path) -> DicomIndex:
    """Walk ``root`` (folders and .zip exports), read headers only, and group the files.

    CT slices are grouped by (StudyInstanceUID, SeriesInstanceUID), an
    Enhanced (multi-frame) CT file with its series like a slice; each
    radiograph file is its own group (multi-frame files included). Series made
    only of localiser images, other modalities and DICOMDIRs are quarantined
    with a reason; non-DICOM, truncated and unreadable files are listed in
    ``unreadable``.
    """
    root = Path(root).resolve()
    index = DicomIndex(root=root)
    ct_files: dict[tuple[str, str], list[tuple[str, _Header]]] = defaultdict(list)
    other: dict[tuple[str, str], list[tuple[str, _Header]]] = defaultdict(list)
    other_reason: dict[tuple[str, str], str] = {}
    for rel, listing_error in _iter_sources(root):
        if listing_error:
            index.unreadable.append((rel, listing_error))
            continue
        try:
            ds = read_dataset(root / rel, headers_only=True)
        except QuarantineError as exc:
            index.unreadable.append((rel, exc.reason.replace(str(root / rel), rel)))
            continue
        kind, reason = classify(ds)
        study, series = _text(ds, "StudyInstanceUID"), _text(ds, "SeriesInstanceUID")
        if kind == "xray":
            index.groups.append(
                DicomGroup("xray", (rel,), _text(ds, "PatientID"), study, series, _text(ds, "Modality"),
                           _text(ds, "StudyDate") or None)
            )
        elif kind == "ct" and not series:
            index.quarantined.append(
                QuarantinedGroup((rel,), f"{rel}: CT slice without SeriesInstanceUID; cannot be grouped into a series",
                                 _text(ds, "PatientID"), "CT", "")
            )
        elif kind == "ct":
            ct_files[(study, series)].append((rel, _Header.of(ds)))
        else:
            key = (series or rel, _text(ds, "Modality"))
            other[key].append((rel, _Header.of(ds)))
            other_reason[key] = reason
    for (study, series), members in ct_files.items():
        _add_ct_group(index, study, series, members)
    for key, members in other.items():
        first = members[0][1]
        index.quarantined.append(
            QuarantinedGroup(tuple(sorted(r for r, _ in members)), other_reason[key], first.patient_id,
                             first.modality, first.series_uid)
        )
    index.groups.sort(key=lambda g: g.files[0])
    index.quarantined.sort(key=lambda q: q.files[0])
    return index


def _add_ct_group(index: DicomIndex, study: str, series: str, members: list[tuple[str, _Header]]) -> None:
    """Add one CT series as a group, or quarantine it when headers already show it is unusable."""
    files = tuple(sorted(r for r, _ in members))
    first = members[0][1]
    patients = {h.patient_id for _, h in members}
    if len(patients) > 1:
        index.quarantined.append(
            QuarantinedGroup(files, f"CT series {series} mixes {len(patients)} PatientIDs; the export is corrupt",
                             "", "CT", series)
        )
    elif all(h.localizer for _, h in members):
        index.quarantined.append(
            QuarantinedGroup(files, f"CT series of {len(files)} localiser (scout) image(s) only; not a volume",
                             first.patient_id, "CT", series)
        )
    else:
        index.groups.append(
            DicomGroup("ct", files, first.patient_id, study, series, "CT", first.study_date or None)
        )
