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
from dicognito.anonymizer import Anonymizer
from pydicom.dataset import Dataset, FileMetaDataset

from ingestion.deid.dicom import patient_anonymizer

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


def deidentified_ref(path: Path, secret: str, anonymizers: dict[str, Anonymizer] | None = None) -> ImageRef:
    """The de-identified reference of the DICOM file ``path`` (raises for a file without the UIDs).

    Only the reference's elements are de-identified, in a small dataset of
    their own, by the anonymizer :func:`ingestion.deid.dicom.deidentify_dataset`
    builds for the patient (kept in ``anonymizers`` across a patient's files):
    dicognito maps each UID by a keyed hash of its value alone, so the UIDs are
    the ones a de-identified copy of the whole file holds. Copying and walking
    every header element per file, and building an anonymizer per file, was
    most of a predict batch's time per patient (one SR names every CT slice).
    """
    header = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_TAGS)
    missing = [t for t in _TAGS[1:5] if not header.get(t)]
    if missing:
        raise ValueError(f"{path.name}: no {', '.join(missing)}; it cannot be referenced")
    original_id = str(header.get("PatientID", "") or "")
    anonymizers = {} if anonymizers is None else anonymizers
    if original_id not in anonymizers:
        anonymizers[original_id] = patient_anonymizer(original_id, secret)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    for keyword in _TAGS:
        if keyword in header:
            ds[keyword] = header[keyword]  # the header is this function's own: its elements may change
    anonymizers[original_id].anonymize(ds)
    return ImageRef(str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                    str(ds.SOPClassUID), str(ds.get("Modality", "") or ""))


def deidentified_refs(paths: Iterable[Path], secret: str) -> tuple[list[ImageRef], list[str]]:
    """References of every readable file in ``paths``, sorted by UIDs, and a reason per file left out.

    A file that is gone or unreadable is not an error here (the result is
    still reported, with fewer references); its reason names the file only.
    """
    refs, skipped = [], []
    anonymizers: dict[str, Anonymizer] = {}
    for path in paths:
        try:
            refs.append(deidentified_ref(Path(path), secret, anonymizers))
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
            skipped.append(f"{Path(path).name}: {type(exc).__name__}: {exc}"[:200])
    return sorted(set(refs), key=lambda r: (r.study_uid, r.series_uid, r.sop_uid)), skipped
