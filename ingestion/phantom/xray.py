"""Phantom chest radiograph: one CR or DX DICOM image per patient with a disease-dependent opacity.

Formats vary as they do across vendors, so readers are exercised: CR or DX SOP
class, MONOCHROME1 (high value = dark) or MONOCHROME2 (high value = bright),
12 or 16 bits stored. The opacity is a soft blob in one lung whose density
rises monotonically with the X-ray evidence of the latent model; its side is the
latent ``xray_side`` (the CT lesion's side for a share of patients set by ``SignalModel.shared``).
This module's chest is the ``standard`` anatomy; ``--anatomy varied`` draws it with
:mod:`ingestion.phantom.xray_varied` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

from ingestion.phantom.dicom_header import StudyInfo, base_dataset, seeded_uid, set_pixels, write_dataset
from ingestion.phantom.phi import FakeIdentity, PlantedItem, random_token
from ingestion.phantom.xray_varied import varied_chest_density


def opacity_density(evidence: float) -> float:
    """Peak added density of the opacity (fraction of full scale): softplus, always present, monotone."""
    return 0.04 + 0.06 * float(np.logaddexp(0.0, evidence))


def chest_density(rng: np.random.Generator, size: int, evidence: float, side: str | None = None) -> np.ndarray:
    """Density image in [0, 1] (1 = dense/bright on MONOCHROME2): body, lungs, mediastinum, ribs, opacity.

    ``side`` puts the opacity in the patient's 'L' lung (image right, as a PA film is read) or 'R';
    None leaves it to a coin of ``rng`` (drawn either way, so the rest of the image is unchanged).
    """
    y, x = np.mgrid[0:size, 0:size] / (size - 1.0) * 2.0 - 1.0  # [-1, 1]
    body = ((x / 0.92) ** 2 + (y / 1.05) ** 2) <= 1.0
    density = np.where(body, 0.55, 0.03)
    lungs = np.zeros_like(density, bool)
    for cx in (-0.42, 0.42):
        lungs |= (((x - cx) / 0.32) ** 2 + ((y + 0.05) / 0.62) ** 2) <= 1.0
    density = np.where(lungs, 0.18, density)
    ribs = 0.07 * (np.sin((y + 0.1 * x**2) * 28.0) > 0.55) * lungs
    density = density + ribs + 0.25 * np.exp(-(x / 0.12) ** 2) * (y > -0.6)
    lung_x = float(rng.choice([-0.42, 0.42]))
    if side is not None:
        lung_x = 0.42 if side == "L" else -0.42
    lung_x += rng.normal(0, 0.05)
    lung_y = rng.uniform(-0.3, 0.35)
    width = rng.uniform(0.10, 0.18)
    blob = np.exp(-(((x - lung_x) ** 2 + (y - lung_y) ** 2) / (2 * width**2)))
    density = density + opacity_density(evidence) * 3.0 * blob * lungs
    density += rng.normal(0, 0.015, density.shape)
    return np.clip(density, 0.0, 1.0)


def write_xray(dicom_root: Path, rng: np.random.Generator, identity: FakeIdentity, evidence: float,
               side: str | None = None, anatomy: str = "standard") -> PlantedItem:
    """Write one chest radiograph into a fresh random folder under ``dicom_root`` (opacity on ``side``).

    ``anatomy`` "varied" draws the chest with :func:`ingestion.phantom.xray_varied.varied_chest_density`.
    """
    size = int(rng.choice([192, 224, 256]))
    is_dx = bool(rng.random() < 0.5)
    photometric = "MONOCHROME1" if rng.random() < 0.4 else "MONOCHROME2"
    bits_stored = int(rng.choice([12, 16]))
    draw = varied_chest_density if anatomy == "varied" else chest_density
    density = draw(rng, size, evidence, side)
    full = 2**bits_stored - 1
    stored = np.round((1.0 - density if photometric == "MONOCHROME1" else density) * full).astype(np.uint16)

    sop_class = DigitalXRayImageStorageForPresentation if is_dx else ComputedRadiographyImageStorage
    modality = "DX" if is_dx else "CR"
    study = StudyInfo.draw(rng, identity, "XR", "XR CHEST 1 VIEW")
    ds = base_dataset(sop_class, seeded_uid(rng), identity, study, modality)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesDescription = "CHEST PA" if rng.random() < 0.7 else "CHEST AP"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = ds.SeriesDescription[-2:]
    ds.PatientOrientation = ["L", "F"]
    ds.InstanceNumber = 1
    spacing = round(430.0 / size, 6)
    ds.ImagerPixelSpacing = [spacing, spacing]
    if is_dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME1" else 1
    else:
        ds.PixelSpacing = [spacing, spacing]
    ds.WindowCenter, ds.WindowWidth = full // 2, full
    ds.KVP = int(rng.integers(100, 126))
    set_pixels(ds, stored, bits_stored, signed=False, photometric=photometric)
    path = dicom_root / random_token(rng) / f"{random_token(rng)}.dcm"
    write_dataset(ds, path)
    return PlantedItem("xray", (path,), tuple(study.planted_phi(identity)))
