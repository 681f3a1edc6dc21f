"""Phantom head CT: one axial DICOM series per patient with a disease-dependent lesion.

This module's drawing is the ``standard`` anatomy; ``--anatomy varied`` draws the
volume with :mod:`ingestion.phantom.ct_varied` instead (the header is the same).

The head is an ellipsoid of soft tissue (~40 HU) inside a bone shell (~700 HU)
in air (-1000 HU), with two CSF ventricles. The lesion is a brighter sphere in
the LEFT or RIGHT hemisphere; its contrast rises monotonically with the CT
evidence of the latent model, and its side enters the label only through the
CT x EEG concordance (see :mod:`ingestion.phantom.signal_model`).

Patient coordinates are DICOM LPS: +x is the patient's left, so with the
standard axial orientation a LEFT lesion lies at higher column indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import CTImageStorage

from ingestion.phantom.ct_varied import varied_head_volume
from ingestion.phantom.dicom_header import StudyInfo, base_dataset, seeded_uid, set_pixels, write_dataset
from ingestion.phantom.phi import FakeIdentity, PlantedItem, random_token

AIR_HU, TISSUE_HU, BONE_HU, CSF_HU = -1000.0, 40.0, 700.0, 8.0
FOV_MM = 240.0


def lesion_contrast_hu(evidence: float) -> float:
    """Lesion brightness above tissue: a softplus of the evidence, so always visible and monotone."""
    return 8.0 + 14.0 * float(np.logaddexp(0.0, evidence))


def head_volume(rng: np.random.Generator, n_slices: int, size: int, pixel_mm: float, slice_mm: float,
                evidence: float, side: str) -> np.ndarray:
    """HU volume ``(n_slices, size, size)``; slice k lies at z = (k - centre) * slice_mm."""
    zc = (np.arange(n_slices) - (n_slices - 1) / 2.0) * slice_mm
    xy = (np.arange(size) - (size - 1) / 2.0) * pixel_mm
    z, y, x = np.meshgrid(zc, xy, xy, indexing="ij", sparse=True)
    ax, ay, az = 72.0 + rng.normal(0, 3), 90.0 + rng.normal(0, 3), 0.6 * n_slices * slice_mm
    outer = (x / ax) ** 2 + (y / ay) ** 2 + (z / az) ** 2
    shell = 7.0
    inner = (x / (ax - shell)) ** 2 + (y / (ay - shell)) ** 2 + (z / (az - shell)) ** 2
    vol = np.full(outer.shape, AIR_HU, np.float32)
    vol[outer <= 1.0] = BONE_HU
    vol[inner <= 1.0] = TISSUE_HU
    for sign in (-1.0, 1.0):
        ventricle = ((x - sign * 9.0) / 6.0) ** 2 + (y / 22.0) ** 2 + (z / (0.25 * az)) ** 2
        vol[ventricle <= 1.0] = CSF_HU
    lx = (1.0 if side == "L" else -1.0) * 0.45 * ax + rng.normal(0, 4)
    ly, lz = rng.normal(0, 15), rng.normal(0, 0.15 * az)
    radius = rng.uniform(10.0, 16.0)
    lesion = ((x - lx) ** 2 + (y - ly) ** 2 + (z - lz) ** 2) <= radius**2
    vol[lesion & (inner <= 1.0)] += lesion_contrast_hu(evidence)
    vol += rng.normal(0.0, 6.0, vol.shape).astype(np.float32)
    return vol


def write_ct_series(dicom_root: Path, rng: np.random.Generator, identity: FakeIdentity,
                    evidence: float, side: str, anatomy: str = "standard") -> PlantedItem:
    """Write one series of 32-64 axial slices (64-128 px) into a fresh random folder under ``dicom_root``.

    ``anatomy`` "varied" draws the head with :func:`ingestion.phantom.ct_varied.varied_head_volume`
    (same header, same draws before and after the volume); "standard" with :func:`head_volume`.
    """
    n_slices = int(rng.integers(32, 65))
    size = int(rng.choice([64, 96, 128]))
    pixel_mm = FOV_MM / size
    slice_mm = float(rng.choice([3.0, 4.0, 5.0]))
    slope, intercept = [(1.0, -1024.0), (1.0, -1000.0), (1.0, 0.0), (0.5, -1024.0)][int(rng.integers(4))]
    bits_stored = 16 if intercept == 0.0 or slope != 1.0 else int(rng.choice([12, 16]))
    draw = varied_head_volume if anatomy == "varied" else head_volume
    vol = draw(rng, n_slices, size, pixel_mm, slice_mm, evidence, side)
    stored = np.round((np.clip(vol, -1024.0, 3000.0) - intercept) / slope)
    lim = 2 ** (bits_stored - 1)
    stored = np.clip(stored, -lim, lim - 1).astype(np.int16)

    study = StudyInfo.draw(rng, identity, "CT", "CT HEAD WITHOUT CONTRAST")
    folder = dicom_root / random_token(rng)
    z0 = float(rng.uniform(-40.0, 40.0))
    ascending = bool(rng.random() < 0.5)
    origin_xy = -(size - 1) / 2.0 * pixel_mm
    names = [random_token(rng) for _ in range(n_slices)]
    ds = base_dataset(CTImageStorage, "1.2.3", identity, study, "CT")  # one header, per-slice fields below
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesDescription = f"Head {slice_mm:g}mm"
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [round(pixel_mm, 6), round(pixel_mm, 6)]
    ds.SliceThickness = slice_mm
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 80
    files = []
    for k in rng.permutation(n_slices):  # written in random order, as an export arrives
        z = z0 + (k - (n_slices - 1) / 2.0) * slice_mm
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = seeded_uid(rng)
        ds.InstanceNumber = int(k + 1 if ascending else n_slices - k)
        ds.ImagePositionPatient = [round(origin_xy, 4), round(origin_xy, 4), round(z, 4)]
        ds.SliceLocation = round(z, 4)
        set_pixels(ds, stored[k], bits_stored, signed=True, photometric="MONOCHROME2")
        path = folder / f"{names[k]}.dcm"
        write_dataset(ds, path)
        files.append(path)
    return PlantedItem("ct", tuple(files), tuple(study.planted_phi(identity)))
