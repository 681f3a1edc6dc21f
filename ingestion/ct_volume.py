"""Read one CT series into a Hounsfield-unit volume on a fixed grid, or say why not.

Slices are ordered by their position along the slice normal (the cross product
of the two ImageOrientationPatient direction cosines), never by file name or
InstanceNumber: exports shuffle both. Geometry problems that would silently
distort the anatomy (missing or duplicated slices, uneven spacing, mixed
orientation or size) quarantine the series instead of being papered over.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ingestion.dicom_source import (
    check_decodable,
    check_pixel_length,
    malformed_is_quarantine,
    read_dataset,
    transfer_syntax_name,
)
from ingestion.dicom_values import first_number, iso_date, number, raw_numbers, raw_text, safe_description
from ingestion.records import NormalisedItem, QuarantineError

AIR_HU = -1024.0
GAP_FACTOR = 1.5  # a step above 1.5x the median spacing means at least one slice is missing
UNEVEN_TOLERANCE = 0.1  # steps may differ from the median by 10 % (scanner rounding) and no more
DUPLICATE_MM = 1e-3
OUTPUT_AXES = "SPL"  # (D, H, W) = towards superior, posterior, patient-left: radiological axial layout
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PIXEL_DATA_TAG = 0x7FE00010
_NATIVE_LITTLE_ENDIAN = frozenset({str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)})


@dataclass(frozen=True)
class CtVolume:
    """A sorted, validated series in HU on its acquisition grid, with the geometry to resample it.

    ``hu`` is float32 ``(n_slices, rows, cols)``; ``affine`` maps voxel index
    ``(slice, row, col)`` to patient LPS millimetres.
    """

    hu: np.ndarray
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    original_patient_id: str
    event_date: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


def _floats(ds: Dataset, keyword: str, n: int, name: str) -> np.ndarray:
    values = raw_numbers(ds, keyword)
    if values is None:
        try:
            values = [float(v) for v in ds.get(keyword)]
        except (TypeError, ValueError):
            values = []
    if len(values) != n:
        raise QuarantineError(f"{name}: {keyword} is missing or malformed; the slice cannot be placed in 3-D")
    return np.asarray(values, dtype=np.float64)


def _is_localizer(ds: Dataset) -> bool:
    return b"LOCALIZER" in raw_text(ds, "ImageType").upper()


def _read_slices(files: Sequence[Path | str]) -> tuple[list[Dataset], list[str], int]:
    """Full datasets of the non-localiser slices, their names, and how many localisers were dropped."""
    kept: list[Dataset] = []
    names: list[str] = []
    localizers = 0
    for path in files:
        name = os.fspath(path)
        ds = read_dataset(path)
        if _is_localizer(ds):
            localizers += 1
            continue
        kept.append(ds)
        names.append(name)
    if not kept:
        raise QuarantineError(
            f"series of {len(files)} file(s) holds only localiser (scout) images; there is no volume to read"
        )
    return kept, names, localizers


def _differs(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    # plain max over six numbers: np.allclose costs ~10x more per slice
    return max(abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)) > tol


def _check_consistent(slices: list[Dataset], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Orientation (6,) and in-plane spacing (2,) shared by every slice, else QuarantineError."""
    iop0 = _floats(slices[0], "ImageOrientationPatient", 6, names[0])
    ps0 = _floats(slices[0], "PixelSpacing", 2, names[0])
    shape0 = (number(slices[0], "Rows", 0), number(slices[0], "Columns", 0))
    pid0 = raw_text(slices[0], "PatientID")
    checked_syntaxes: set[str] = set()
    for ds, name in zip(slices, names, strict=True):
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if syntax not in checked_syntaxes or "PixelData" not in ds:
            check_decodable(ds, name)
            checked_syntaxes.add(syntax)
        if number(ds, "NumberOfFrames", 1) != 1:
            raise QuarantineError(f"{name}: multi-frame image inside a CT series; export single-frame slices")
        if _differs(_floats(ds, "ImageOrientationPatient", 6, name), iop0, 1e-3):
            raise QuarantineError(
                f"mixed orientation in one series ({name} differs from {names[0]}); "
                "split the series (e.g. axial and reformatted slices) before ingest"
            )
        if (number(ds, "Rows", 0), number(ds, "Columns", 0)) != shape0:
            raise QuarantineError(
                f"mixed image sizes in one series: {names[0]} is {shape0[0]:.0f}x{shape0[1]:.0f} but {name} is "
                f"{ds.get('Rows')}x{ds.get('Columns')}; split the series before ingest"
            )
        if _differs(_floats(ds, "PixelSpacing", 2, name), ps0, 1e-4):
            raise QuarantineError(f"mixed pixel spacing in one series ({name} differs from {names[0]})")
        if raw_text(ds, "PatientID") != pid0:
            raise QuarantineError(f"one series holds several PatientIDs ({name} differs from {names[0]})")
    if not pid0:
        raise QuarantineError(f"{names[0]}: no PatientID, so the series cannot be attributed to a patient")
    row, col = iop0[:3], iop0[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise QuarantineError(f"{names[0]}: ImageOrientationPatient {iop0.tolist()} is not two unit orthogonal vectors")
    return iop0, ps0


def _slice_order(slices: list[Dataset], names: list[str], normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order along the normal and the sorted positions; quarantine duplicates, gaps, uneven steps."""
    positions = np.stack([_floats(ds, "ImagePositionPatient", 3, n) for ds, n in zip(slices, names, strict=True)])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    z = along[order]
    if len(z) < 2:
        return order, positions[order]
    steps = np.diff(z)
    dup = np.flatnonzero(steps < DUPLICATE_MM)
    if dup.size:
        a, b = names[order[dup[0]]], names[order[dup[0] + 1]]
        raise QuarantineError(
            f"duplicated slice position {z[dup[0]]:.2f} mm along the normal ({len(dup)} duplicate(s), "
            f"e.g. {a} and {b}); remove the repeated slices or split the acquisitions"
        )
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        i = gaps[0]
        missing = int(round(steps[i] / median)) - 1
        raise QuarantineError(
            f"missing slices: a gap of {steps[i]:.2f} mm between {z[i]:.2f} and {z[i + 1]:.2f} mm "
            f"where the spacing is {median:.2f} mm (about {missing} slice(s) missing, {len(gaps)} gap(s)); "
            "re-export the complete series"
        )
    if np.max(np.abs(steps - median)) > max(UNEVEN_TOLERANCE * median, 0.01):
        raise QuarantineError(
            f"uneven slice spacing: steps range from {steps.min():.2f} to {steps.max():.2f} mm "
            f"(median {median:.2f} mm); resample or re-export with uniform spacing"
        )
    return order, positions[order]


def _check_pixel_bytes(slices: list[Dataset], names: list[str]) -> None:
    """Quarantine a slice whose native pixel data is cut short (a truncated copy still parses)."""
    for ds, name in zip(slices, names, strict=True):
        if str(ds.file_meta.TransferSyntaxUID) not in _NATIVE_LITTLE_ENDIAN:
            check_pixel_length(ds, name)  # big-endian and compressed: pydicom's own attributes
            continue
        expected = int(number(ds, "Rows", 0) * number(ds, "Columns", 0) * number(ds, "BitsAllocated", 16)) // 8
        got = len(ds.get_item(PIXEL_DATA_TAG).value or b"")
        if got < expected:
            raise QuarantineError(f"{name}: pixel data is truncated ({got} of {expected} bytes); re-export the file")


def _decode_hu_into(ds: Dataset, out: np.ndarray) -> None:
    """Write one slice's HU into ``out`` (float32 rows x cols) without intermediate copies.

    Native little-endian 16-bit slices, the usual case, are viewed straight
    from the pixel bytes; anything else goes through pydicom's decoders.
    """
    native = str(ds.file_meta.TransferSyntaxUID) in _NATIVE_LITTLE_ENDIAN
    bits_alloc, bits_stored = int(number(ds, "BitsAllocated", 16)), int(number(ds, "BitsStored", 16))
    signed = number(ds, "PixelRepresentation", 0) == 1
    if "ModalityLUTSequence" in ds:
        out[...] = apply_modality_lut(ds.pixel_array, ds)
        return
    if native and bits_alloc == 16 and number(ds, "SamplesPerPixel", 1) == 1:
        raw = np.frombuffer(ds.PixelData, dtype="<i2" if signed else "<u2", count=out.size).reshape(out.shape)
        if bits_stored < 16:
            shift = 16 - bits_stored
            raw = (raw << shift) >> shift if signed else raw & ((1 << bits_stored) - 1)
    else:
        raw = ds.pixel_array
    slope = np.float32(number(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = np.float32(number(ds, "RescaleIntercept", 0.0))
    np.multiply(raw, slope, out=out, casting="unsafe")
    out += intercept


def load_ct_volume(files: Sequence[Path | str]) -> CtVolume:
    """Sort, validate and decode a CT series to HU on its own grid; raise QuarantineError for bad input.

    Localiser images are dropped (and counted in the metadata) rather than
    quarantining the series, since scanners often file them with the axials.
    Peak memory is the encoded slices plus the float32 volume.
    """
    if not files:
        raise QuarantineError("empty CT series: no files were given")
    slices, names, localizers = _read_slices(files)
    iop, pixel_spacing = _check_consistent(slices, names)
    normal = np.cross(iop[:3], iop[3:])
    order, positions = _slice_order(slices, names, normal)
    first = slices[order[0]]
    _check_pixel_bytes(slices, names)
    n = len(order)
    if n > 1:
        step_vec = (positions[-1] - positions[0]) / (n - 1)
    else:
        thickness = first_number(first.get("SpacingBetweenSlices")) or first_number(first.get("SliceThickness"))
        step_vec = normal * (thickness or 1.0)
    rows, cols = int(first.Rows), int(first.Columns)
    hu = np.empty((n, rows, cols), dtype=np.float32)
    for k, idx in enumerate(order):
        try:
            _decode_hu_into(slices[idx], hu[k])
        except QuarantineError:
            raise
        except Exception as exc:  # decoder errors come in many types; all mean "cannot decode this file"
            raise QuarantineError(
                f"{names[idx]}: pixel data could not be decoded ({type(exc).__name__}: {exc}); "
                f"transfer syntax {transfer_syntax_name(slices[idx])}"
            ) from None
        slices[idx] = None  # type: ignore[call-overload]  # free the encoded bytes as we go
    np.maximum(hu, AIR_HU, out=hu)  # outside-FOV padding (-2000, -3024) is air for every later step
    affine = np.eye(4)
    affine[:3, 0] = step_vec
    affine[:3, 1] = iop[3:] * pixel_spacing[0]  # row index moves along the column direction
    affine[:3, 2] = iop[:3] * pixel_spacing[1]  # column index moves along the row direction
    affine[:3, 3] = positions[0]
    along = float(abs(step_vec @ normal))  # slice spacing proper; the affine keeps any gantry-tilt shear
    tilt = float(np.degrees(np.arccos(min(1.0, along / max(float(np.linalg.norm(step_vec)), 1e-9)))))
    spacing = (along, float(pixel_spacing[0]), float(pixel_spacing[1]))
    metadata: dict[str, Any] = {
        "n_slices": n,
        "original_shape": [n, rows, cols],
        "original_spacing_mm": [round(s, 4) for s in spacing],
        "orientation": [round(float(v), 5) for v in iop],
        "gantry_tilt_deg": round(tilt, 3),
        "window_center": first_number(first.get("WindowCenter")),
        "window_width": first_number(first.get("WindowWidth")),
        "series_description": safe_description(first),
        "dropped_localizers": localizers,
        "transfer_syntax": transfer_syntax_name(first),
        "manufacturer": str(first.get("Manufacturer", "") or ""),
    }
    return CtVolume(hu, affine, spacing, str(first.PatientID), iso_date(first), metadata)


def _resample_in_place(
    hu: np.ndarray, affine: np.ndarray, spacing_mm: Sequence[float], shape: Sequence[int]
) -> np.ndarray:
    """Reorient to SPL, resample to ``spacing_mm`` and crop/pad to ``shape`` with MONAI; consumes ``hu``.

    Values are shifted by +1024 while resampling so that MONAI's zero padding
    (outside an oblique volume, and the crop/pad) is air, not water.
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, ResizeWithPadOrCrop, Spacing

    hu -= AIR_HU
    tensor = MetaTensor(torch.from_numpy(hu)[None], affine=torch.from_numpy(_LPS_TO_RAS @ affine))
    tensor = Orientation(axcodes=OUTPUT_AXES, labels=None)(tensor)
    tensor = Spacing(
        pixdim=tuple(float(s) for s in spacing_mm), mode="bilinear", padding_mode="zeros", dtype=torch.float32
    )(tensor)
    tensor = ResizeWithPadOrCrop(spatial_size=tuple(int(s) for s in shape))(tensor)
    out = tensor.as_tensor()[0].numpy().astype(np.float32, copy=False)
    out += AIR_HU
    return out


def resample_ct(volume: CtVolume, spacing_mm: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """The volume as float32 ``shape`` in HU on ``spacing_mm`` (D, H, W = superior, posterior, left)."""
    return _resample_in_place(volume.hu.copy(), volume.affine, spacing_mm, shape)


def read_ct_series(
    files: Sequence[Path | str],
    spacing_mm: tuple[float, float, float] | None,
    shape: tuple[int, int, int] | None,
) -> NormalisedItem:
    """Read a CT series to the contract's normalised array (float32 HU, ``spacing_mm``, ``shape``).

    ``files`` are paths (``archive.zip!member`` for zip members) of one
    series. With ``spacing_mm`` and ``shape`` both None the volume stays on
    its acquisition grid in slice order (used by the benchmark). Raises
    QuarantineError with a reason a person can act on for bad input.
    """
    first = os.fspath(files[0]) if files else "empty series"
    with malformed_is_quarantine(f"CT series starting with {first}"):
        volume = load_ct_volume(files)
    metadata = dict(volume.metadata)
    if spacing_mm is None and shape is None:
        array = volume.hu
        metadata.update(resampled=False, output_spacing_mm=metadata["original_spacing_mm"], output_axes="slice,row,col")
    else:
        if spacing_mm is None or shape is None:
            raise ValueError("give both spacing_mm and shape, or neither")
        array = _resample_in_place(volume.hu, volume.affine, spacing_mm, shape)
        metadata.update(resampled=True, output_spacing_mm=[float(s) for s in spacing_mm], output_axes=OUTPUT_AXES)
    metadata["output_shape"] = list(array.shape)
    return NormalisedItem(
        modality="ct",
        original_patient_id=volume.original_patient_id,
        array=array,
        metadata=metadata,
        event_date=volume.event_date,
    )
