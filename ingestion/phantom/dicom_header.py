"""DICOM header modules shared by the phantom CT and X-ray writers.

Deterministic on purpose: UIDs come from ``generate_uid`` with entropy drawn
from the patient's seeded generator and dates/times from the fake identity,
never from the clock, so a seed reproduces the export byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from ingestion.phantom.phi import FakeIdentity

MANUFACTURERS = ("PHANTOM MEDICAL SYSTEMS", "Acme Imaging", "NORTHWIND HEALTHCARE")


def seeded_uid(rng: np.random.Generator) -> str:
    """A UID under pydicom's root, derived from the generator (same seed, same UID)."""
    return generate_uid(entropy_srcs=[rng.bytes(16).hex()])


@dataclass(frozen=True)
class StudyInfo:
    """What every image of one study shares: UIDs, accession, date and time."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    accession: str
    study_date: str
    study_time: str
    description: str
    manufacturer: str

    @classmethod
    def draw(cls, rng: np.random.Generator, identity: FakeIdentity, prefix: str, description: str) -> "StudyInfo":
        return cls(
            study_uid=seeded_uid(rng),
            series_uid=seeded_uid(rng),
            frame_of_reference_uid=seeded_uid(rng),
            accession=f"{prefix}{identity.visit_date:%y}{int(rng.integers(0, 10**6)):06d}",
            study_date=identity.visit_date.strftime("%Y%m%d"),
            study_time=f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
            description=description,
            manufacturer=str(rng.choice(MANUFACTURERS)),
        )

    def planted_phi(self, identity: FakeIdentity) -> list[str]:
        """The identifying strings :func:`base_dataset` writes, as they appear in the header."""
        return [identity.dicom_name, identity.mrn, identity.birth_date.strftime("%Y%m%d"),
                identity.institution, identity.physician_dicom_name, self.accession, self.study_date]


def base_dataset(sop_class_uid: str, sop_instance_uid: str, identity: FakeIdentity, study: StudyInfo,
                 modality: str) -> Dataset:
    """Patient, study, series and SOP modules with valid file meta (Explicit VR Little Endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study.study_time
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.Manufacturer = study.manufacturer
    ds.InstitutionName = identity.institution
    ds.ReferringPhysicianName = identity.physician_dicom_name
    ds.StudyDescription = study.description
    ds.PatientName = identity.dicom_name
    ds.PatientID = identity.mrn
    ds.PatientBirthDate = identity.birth_date.strftime("%Y%m%d")
    ds.PatientSex = identity.sex
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = study.series_uid
    ds.StudyID = study.accession[-6:]
    ds.SeriesNumber = 1
    return ds


def set_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int, signed: bool, photometric: str) -> None:
    """Image pixel module for a single-frame greyscale image (little-endian 16-bit storage)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()


def write_dataset(ds: Dataset, path: Path) -> None:
    """Write with a DICOM preamble and file meta (what a PACS export holds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
