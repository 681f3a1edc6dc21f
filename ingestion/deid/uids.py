"""De-identified DICOM references of a patient's images, for results that point back at their source.

A result sent to the PACS (a DICOM Structured Report) names the studies,
series and instances it was computed from. Those must be the de-identified
UIDs, the same ones :func:`ingestion.deid.dicom.deidentify_dataset` writes into a
de-identified copy (dicognito maps each UID by a keyed hash of the site
secret), never the originals: the original UIDs stay inside ingestion. Only
the header is read (no pixel data), and only the elements a reference needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from ingestion.deid.dicom import deidentify_dataset

log = logging.getLogger(__name__)

_TAGS = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality"]


@dataclass(frozen=True)
class ImageRef:
    """One source instance, by its de-identified UIDs (SOP Class is not identifying and is kept)."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str


def deidentified_ref(path: Path, secret: str) -> ImageRef:
    """The de-identified reference of the DICOM file ``path`` (raises for a file without the UIDs)."""
    header = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_TAGS)
    missing = [t for t in _TAGS[1:5] if not header.get(t)]
    if missing:
        raise ValueError(f"{path.name}: no {', '.join(missing)}; it cannot be referenced")
    ds = deidentify_dataset(header, secret)
    return ImageRef(str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                    str(ds.SOPClassUID), str(ds.get("Modality", "") or ""))


def deidentified_refs(paths: Iterable[Path], secret: str) -> tuple[list[ImageRef], list[str]]:
    """References of every readable file in ``paths``, sorted by UIDs, and a reason per file left out.

    A file that is gone or unreadable is not an error here (the result is
    still reported, with fewer references); its reason names the file only.
    """
    refs, skipped = [], []
    for path in paths:
        try:
            refs.append(deidentified_ref(Path(path), secret))
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
            skipped.append(f"{Path(path).name}: {type(exc).__name__}: {exc}"[:200])
    return sorted(set(refs), key=lambda r: (r.study_uid, r.series_uid, r.sop_uid)), skipped
