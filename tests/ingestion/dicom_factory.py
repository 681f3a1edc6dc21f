"""Write small but real DICOM files (CT series, radiographs) for tests and benchmarks.

Every file is a complete Part 10 file written by pydicom, so the readers under
test see exactly what a scanner export would give them; the known geometry and
pixel values let tests check sorting, spacing and HU values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)


def _base_dataset(sop_class: str, patient_id: str, study_uid: str, series_uid: str, modality: str) -> Dataset:
    """A dataset with file meta, patient/study/series identity and PHI to strip later."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600214"
    ds.PatientSex = "F"
    ds.InstitutionName = "St Example General Hospital"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.AccessionNumber = "ACC123456"
    ds.StudyDate = "20240503"
    ds.SeriesDate = "20240503"
    ds.StudyTime = "101500"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.Modality = modality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def ct_slice_dataset(
    pixels: np.ndarray,
    position: Sequence[float],
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (0.8, 0.8),
    *,
    patient_id: str = "MRN00412345",
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
    series_uid: str = "1.2.826.0.1.3680043.8.498.2",
    instance: int = 1,
    slope: float = 1.0,
    intercept: float = -1024.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
) -> Dataset:
    """One CT slice; ``pixels`` are stored values (int16), HU = stored * slope + intercept."""
    ds = _base_dataset(CTImageStorage, patient_id, study_uid, series_uid, "CT")
    ds.ImageType = list(image_type)
    ds.SeriesDescription = "CHEST W/O CONTRAST"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = pixels.shape
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds


def write_ct_series(
    folder: Path,
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (-100.0, -120.0, 50.0),
    *,
    skip: Sequence[int] = (),
    rng_seed: int = 0,
    **kwargs: object,
) -> list[Path]:
    """Write ``volume`` (stored int16 values, (D, H, W)) as one slice per file.

    Slices are placed along the normal of ``orientation`` at ``spacing[0]``;
    file names and InstanceNumbers are shuffled so that a reader which sorts by
    either gets the wrong order. ``skip`` leaves slices out (to make gaps).
    """
    folder.mkdir(parents=True, exist_ok=True)
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    rng = np.random.default_rng(rng_seed)
    order = rng.permutation(volume.shape[0])
    paths = []
    for k in range(volume.shape[0]):
        if k in skip:
            continue
        pos = np.asarray(origin, float) + k * spacing[0] * normal
        ds = ct_slice_dataset(
            volume[k], pos, orientation, spacing[1:], instance=int(order[k]) + 1, **kwargs  # type: ignore[arg-type]
        )
        path = folder / f"{rng.integers(1 << 40):x}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def cr_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME1",
    bits_stored: int = 12,
    patient_id: str = "MRN00412345",
    modality: str = "CR",
) -> Dataset:
    """A computed radiograph with unsigned stored values in ``bits_stored`` bits."""
    ds = _base_dataset(
        ComputedRadiographyImageStorage, patient_id, generate_uid(), generate_uid(), modality
    )
    ds.PhotometricInterpretation = photometric
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds
