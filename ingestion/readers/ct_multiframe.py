"""Per-frame geometry of an Enhanced (multi-frame) CT image from its functional groups.

An Enhanced CT or Legacy Converted Enhanced CT file holds a whole series as
frames; where each frame lies (Plane Position), how it is oriented (Plane
Orientation), its pixel spacing (Pixel Measures) and its rescale (Pixel Value
Transformation) are in the Per-frame Functional Groups, or once for all frames
in the Shared Functional Groups. The volume reader sorts and checks the frames
exactly like the files of a classic series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ingestion.readers.dicom_values import first_number, number
from ingestion.readers.records import QuarantineError


@dataclass(frozen=True)
class FrameGeometry:
    """One row per frame (in file order): position, orientation, in-plane spacing and rescale."""

    positions: np.ndarray  # (n, 3) ImagePositionPatient
    orientations: np.ndarray  # (n, 6) ImageOrientationPatient
    pixel_spacings: np.ndarray  # (n, 2) PixelSpacing (row, column)
    slopes: np.ndarray  # (n,)
    intercepts: np.ndarray  # (n,)
    slice_thickness: float | None
    window: tuple[float | None, float | None]


def _macro(frame: Dataset, shared: Dataset, sequence: str) -> Dataset | None:
    """The first item of a functional-group macro, from the frame's own groups first, then the shared ones."""
    for groups in (frame, shared):
        seq = groups.get(sequence)
        if seq:
            return seq[0]
    return None


def _values(frame: Dataset, shared: Dataset, sequence: str, keyword: str, n: int, what: str) -> list[float]:
    item = _macro(frame, shared, sequence)
    value = item.get(keyword) if item is not None else None
    try:
        numbers = [float(v) for v in value] if value is not None else []
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != n:
        raise QuarantineError(f"{what}: {sequence} > {keyword} is missing or malformed; the frame cannot be placed")
    return numbers


def _rescale(frame: Dataset, shared: Dataset, ds: Dataset) -> tuple[float, float]:
    item = _macro(frame, shared, "PixelValueTransformationSequence")
    source = item if item is not None and "RescaleSlope" in item else ds
    return float(number(source, "RescaleSlope", 1.0) or 1.0), float(number(source, "RescaleIntercept", 0.0))


def frame_geometry(ds: Dataset, name: str) -> FrameGeometry:
    """Geometry of every frame of a multi-frame image, or QuarantineError naming what is missing."""
    n = int(number(ds, "NumberOfFrames", 1))
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else Dataset()
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != n:
        raise QuarantineError(
            f"{name}: {n} frames but {len(per_frame)} Per-frame Functional Groups items; "
            "the multi-frame header is incomplete, so the frames cannot be placed in 3-D"
        )
    positions, orientations, spacings, slopes, intercepts = [], [], [], [], []
    for i, frame in enumerate(per_frame):
        what = f"{name} frame {i + 1}"
        positions.append(_values(frame, shared, "PlanePositionSequence", "ImagePositionPatient", 3, what))
        orientations.append(_values(frame, shared, "PlaneOrientationSequence", "ImageOrientationPatient", 6, what))
        spacings.append(_values(frame, shared, "PixelMeasuresSequence", "PixelSpacing", 2, what))
        slope, intercept = _rescale(frame, shared, ds)
        slopes.append(slope)
        intercepts.append(intercept)
    measures = _macro(per_frame[0], shared, "PixelMeasuresSequence")
    voi = _macro(per_frame[0], shared, "FrameVOILUTSequence")
    return FrameGeometry(
        positions=np.asarray(positions, dtype=np.float64),
        orientations=np.asarray(orientations, dtype=np.float64),
        pixel_spacings=np.asarray(spacings, dtype=np.float64),
        slopes=np.asarray(slopes, dtype=np.float64),
        intercepts=np.asarray(intercepts, dtype=np.float64),
        slice_thickness=first_number(measures.get("SliceThickness")) if measures is not None else None,
        window=(
            (first_number(voi.get("WindowCenter")), first_number(voi.get("WindowWidth"))) if voi is not None
            else (None, None)
        ),
    )
