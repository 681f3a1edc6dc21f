"""Read one radiograph (CR/DX) into a [0, 1] image where bright means dense.

The display pipeline of the standard is applied in order: decode (any
transfer syntax that an installed pydicom plugin handles), modality LUT,
VOI LUT or window, then MONOCHROME1 inversion, so that every image reaches the
encoder looking the way a radiologist would see it on a workstation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from ingestion.readers.dicom_source import (
    check_decodable,
    check_pixel_length,
    malformed_is_quarantine,
    read_dataset,
    transfer_syntax_name,
)
from ingestion.readers.dicom_values import first_number, iso_date
from ingestion.readers.records import NormalisedItem, QuarantineError

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R BT.601, as used for greyscale conversion


def _stored_range(ds: Dataset) -> np.ndarray:
    """The smallest and largest storable pixel values, from BitsStored and PixelRepresentation."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.float64)
    return np.array([0, 2**bits - 1], dtype=np.float64)


def _has_voi(ds: Dataset) -> bool:
    return bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)


def _decode_first_frame(ds: Dataset, name: str) -> np.ndarray:
    """The first frame as decoded by pydicom (RGB for colour, never YBR)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pixel_array(ds, index=0)
    except Exception as exc:  # decoder plugins raise many types; each means the same to the user
        raise QuarantineError(
            f"{name}: pixel data could not be decoded with transfer syntax {transfer_syntax_name(ds)} "
            f"({type(exc).__name__}: {exc}); check the file or install another decoder plugin "
            "(pylibjpeg-libjpeg, pylibjpeg-openjpeg, python-gdcm)"
        ) from None
    return frame


def _to_unit_range(frame: np.ndarray, ds: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
    """Modality LUT, VOI (LUT or window) and normalisation to [0, 1], before any inversion.

    The normalisation uses the range the VOI stage can output (or, without VOI,
    the range the bit depth allows), not the image's own min and max, so that
    intensities stay comparable between images.
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    info: dict[str, Any] = {}
    if photometric == "PALETTE COLOR":
        frame = apply_color_lut(frame, ds)
        photometric = "RGB"
    if frame.ndim == 3 and frame.shape[-1] in (3, 4):
        bits = int(ds.get("BitsStored", 8))
        info["voi"] = "none (colour image converted to luminance)"
        grey = frame[..., :3].astype(np.float64) @ _LUMA / (2**bits - 1)
        return np.clip(grey, 0.0, 1.0), info
    bounds = apply_modality_lut(_stored_range(ds), ds).astype(np.float64)
    values = apply_modality_lut(frame, ds)
    if _has_voi(ds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = apply_voi_lut(values, ds, index=0)
            bounds = apply_voi_lut(np.array([-1e12, 1e12]), ds, index=0).astype(np.float64)
        if ds.get("VOILUTSequence"):
            info["voi"] = "VOI LUT"
        else:
            info["voi"] = "window"
            info["window_center"] = first_number(ds.get("WindowCenter"))
            info["window_width"] = first_number(ds.get("WindowWidth"))
    else:
        info["voi"] = "none (bit-depth range)"
    lo, hi = float(np.min(bounds)), float(np.max(bounds))
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        lo, hi = float(np.min(values)), float(np.max(values))
        info["voi"] += ", min-max fallback"
    scaled = (np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip(scaled, 0.0, 1.0), info


def _resize(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize with torch's ``interpolate``, keeping float32.

    Shrinking uses area averaging, which is anti-aliased and ~100x faster than
    Gaussian pre-smoothing on a 1760x1760 radiograph; enlarging is bilinear.
    This is the call MONAI's ``Resize`` makes (bit for bit the same arrays,
    tests/ingestion/test_xray_resize.py), without importing MONAI: ``import
    monai`` loads its whole package tree (~5 s), which an ingest that reads
    X-rays but no CT paid in every run for this one function.
    """
    import torch

    target = tuple(int(s) for s in shape)
    mode = "area" if all(t <= s for t, s in zip(target, image.shape, strict=True)) else "bilinear"
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = torch.nn.functional.interpolate(tensor, size=target, mode=mode,
                                          align_corners=None if mode == "area" else False)
    return np.asarray(out[0, 0], dtype=np.float32)


def _positive_pair(value: Any) -> list[float] | None:
    """Two positive finite numbers (row, column spacing), or None for absent, empty, zero or malformed values."""
    try:
        pair = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(pair) != 2 or not all(np.isfinite(v) and v > 0 for v in pair):
        return None
    return pair


def pixel_spacing(ds: Dataset) -> tuple[list[float] | None, str]:
    """Pixel spacing in mm (row, column) and where it came from.

    PixelSpacing is the spacing in the patient; many DX/CR files carry only
    ImagerPixelSpacing, the spacing at the detector, which overstates the
    anatomy by the geometric magnification. It is used as the fallback, divided
    by EstimatedRadiographicMagnificationFactor when the modality recorded one,
    and the source says which was used, so nobody mistakes a detector spacing
    for a calibrated one. A zero or malformed value counts as absent: spacing
    is never recorded as 0.
    """
    patient = _positive_pair(ds.get("PixelSpacing") or ())
    if patient is not None:
        return patient, "PixelSpacing"
    imager = _positive_pair(ds.get("ImagerPixelSpacing") or ())
    if imager is None:
        return None, "absent (neither PixelSpacing nor ImagerPixelSpacing holds two positive numbers)"
    magnification = first_number(ds.get("EstimatedRadiographicMagnificationFactor"))
    if magnification is not None and np.isfinite(magnification) and magnification > 0:
        return ([v / magnification for v in imager],
                f"ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor ({magnification:g}): "
                "no PixelSpacing, detector spacing corrected to the patient plane")
    return imager, ("ImagerPixelSpacing: no PixelSpacing, so this is the spacing at the detector, "
                    "not corrected for magnification")


def read_xray(path: Path | str, shape: tuple[int, int] = (128, 128)) -> NormalisedItem:
    """Read one radiograph file (``archive.zip!member`` for zip members) to the contract's array.

    Returns float32 ``shape`` in [0, 1], bright = dense; a multi-frame file
    contributes its first frame and records ``n_frames``. Raises
    QuarantineError with an actionable reason for bad input.
    """
    with malformed_is_quarantine(os.fspath(path)):
        return _read_xray(path, shape)


def _read_xray(path: Path | str, shape: tuple[int, int]) -> NormalisedItem:
    name = os.fspath(path)
    ds = read_dataset(path)
    check_decodable(ds, name)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_pixel_length(ds, name, frames=n_frames)
    patient_id = str(ds.get("PatientID", "") or "")
    if not patient_id:
        raise QuarantineError(f"{name}: no PatientID, so the image cannot be attributed to a patient")
    frame = _decode_first_frame(ds, name)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        image, voi_info = _to_unit_range(frame, ds)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise QuarantineError(f"{name}: modality/VOI LUT could not be applied ({exc}); check the LUT attributes") from None
    inverted = photometric == "MONOCHROME1"
    if inverted:
        image = 1.0 - image
    array = _resize(image, shape)
    spacing, spacing_source = pixel_spacing(ds)
    metadata: dict[str, Any] = {
        "dicom_modality": str(ds.get("Modality", "") or ""),
        "photometric": photometric,
        "inverted": inverted,
        "n_frames": n_frames,
        "original_shape": [int(ds.Rows), int(ds.Columns)],
        "pixel_spacing_mm": spacing,
        "pixel_spacing_source": spacing_source,
        "bits_stored": int(ds.get("BitsStored", 0) or 0),
        "transfer_syntax": transfer_syntax_name(ds),
        "view_position": str(ds.get("ViewPosition", "") or ""),
        "body_part": str(ds.get("BodyPartExamined", "") or ""),
        "burned_in_annotation": str(ds.get("BurnedInAnnotation", "") or "unknown"),
        "output_shape": list(array.shape),
        **voi_info,
    }
    return NormalisedItem(
        modality="xray",
        original_patient_id=patient_id,
        array=array,
        metadata=metadata,
        event_date=iso_date(ds),
    )
