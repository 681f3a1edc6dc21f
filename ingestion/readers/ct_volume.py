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

from ingestion.readers.ct_header import collector_paused
from ingestion.readers.ct_multiframe import frame_geometry
from ingestion.readers.ct_slices import (
    AIR_HU,
    FrameJob,
    ImageFile,
    PendingVolume,
    decode_into,
    read_image_file,
    rescale_of,
)
from ingestion.readers.dicom_source import check_decodable, check_pixel_length, malformed_is_quarantine, transfer_syntax_name
from ingestion.readers.dicom_values import first_number, iso_date, number, raw_numbers, raw_text, safe_description
from ingestion.readers.records import NormalisedItem, QuarantineError

GAP_FACTOR = 1.5  # a step above 1.5x the median spacing means at least one slice is missing
UNEVEN_TOLERANCE = 0.1  # steps may differ from the median by 10 % (scanner rounding) and no more
DUPLICATE_MM = 1e-3
OUTPUT_AXES = "SPL"  # (D, H, W) = towards superior, posterior, patient-left: radiological axial layout
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


def _read_images(files: Sequence[Path | str], workers: int | None = None) -> tuple[list[ImageFile], int, PendingVolume]:
    """Headers (and native pixel locations) of the non-localiser images, how many localisers were dropped,
    and the volume being faulted in meanwhile (guessed from the first image: one slice per file)."""
    kept: list[ImageFile] = []
    localizers = 0
    pending = PendingVolume(None)
    try:
        for path in files:
            image = read_image_file(path)
            if _is_localizer(image.ds):
                localizers += 1
                continue
            kept.append(image)
            if len(kept) == 1:
                pending = PendingVolume.for_series(image, len(files), workers)
    except BaseException:
        pending.close()
        raise
    if not kept:
        raise QuarantineError(
            f"series of {len(files)} file(s) holds only localiser (scout) images; there is no volume to read"
        )
    return kept, localizers, pending


@dataclass
class _Frames:
    """Every frame of the series in file order, with the geometry shared by all of them."""

    jobs: list[tuple[ImageFile, int, float, float]]  # image, frame index in it, slope, intercept
    names: list[str]
    positions: np.ndarray
    iop: np.ndarray
    pixel_spacing: np.ndarray
    thickness: float | None
    window: tuple[float | None, float | None]


def _differs(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    # plain max over six numbers: np.allclose costs ~10x more per slice
    return max(abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)) > tol


def _check_orthonormal(iop: np.ndarray, name: str) -> None:
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise QuarantineError(f"{name}: ImageOrientationPatient {iop.tolist()} is not two unit orthogonal vectors")


def _same(ds: Dataset, keyword: str, ref: bytes, ref_values: np.ndarray, n: int, name: str, tol: float) -> bool:
    """Whether ``keyword`` matches the first slice's: equal bytes settle it without parsing numbers."""
    return raw_text(ds, keyword) == ref or not _differs(_floats(ds, keyword, n, name), ref_values, tol)


def _single_frame_series(images: list[ImageFile]) -> _Frames:
    """Frames of a classic series (one slice per file); quarantine when slices do not share one geometry."""
    first, name0 = images[0].ds, images[0].name
    iop0 = _floats(first, "ImageOrientationPatient", 6, name0)
    ps0 = _floats(first, "PixelSpacing", 2, name0)
    iop_raw, ps_raw = raw_text(first, "ImageOrientationPatient"), raw_text(first, "PixelSpacing")
    shape0 = (number(first, "Rows", 0), number(first, "Columns", 0))
    pid0 = raw_text(first, "PatientID")
    checked_syntaxes: set[str] = set()
    for image in images:
        ds, name = image.ds, image.name
        if image.pixels is None:  # the syntax is read only here: converting the UID costs ~10 % of a slice's read
            syntax = str(ds.file_meta.TransferSyntaxUID)
            if syntax not in checked_syntaxes or "PixelData" not in ds:
                check_decodable(ds, name)
                checked_syntaxes.add(syntax)
        if _is_multi_frame(ds):
            raise QuarantineError(
                f"{name}: multi-frame image inside a CT series of {len(images)} files; "
                "a multi-frame (Enhanced) CT must be its own series"
            )
        if not _same(ds, "ImageOrientationPatient", iop_raw, iop0, 6, name, 1e-3):
            raise QuarantineError(
                f"mixed orientation in one series ({name} differs from {name0}); "
                "split the series (e.g. axial and reformatted slices) before ingest"
            )
        if (number(ds, "Rows", 0), number(ds, "Columns", 0)) != shape0:
            raise QuarantineError(
                f"mixed image sizes in one series: {name0} is {shape0[0]:.0f}x{shape0[1]:.0f} but {name} is "
                f"{ds.get('Rows')}x{ds.get('Columns')}; split the series before ingest"
            )
        if not _same(ds, "PixelSpacing", ps_raw, ps0, 2, name, 1e-4):
            raise QuarantineError(f"mixed pixel spacing in one series ({name} differs from {name0})")
        if raw_text(ds, "PatientID") != pid0:
            raise QuarantineError(f"one series holds several PatientIDs ({name} differs from {name0})")
        if image.pixels is None:
            check_pixel_length(ds, name)
    names = [image.name for image in images]
    positions = np.stack([_floats(im.ds, "ImagePositionPatient", 3, im.name) for im in images])
    jobs = [(image, 0, *rescale_of(image.ds)) for image in images]
    thickness = first_number(first.get("SpacingBetweenSlices")) or first_number(first.get("SliceThickness"))
    window = (first_number(first.get("WindowCenter")), first_number(first.get("WindowWidth")))
    return _Frames(jobs, names, positions, iop0, ps0, thickness, window)


def _multi_frame_series(image: ImageFile) -> _Frames:
    """Frames of one Enhanced CT file from its functional groups; quarantine mixed orientation or spacing."""
    ds, name = image.ds, image.name
    if image.pixels is None:
        check_decodable(ds, name)
        check_pixel_length(ds, name, frames=int(number(ds, "NumberOfFrames", 1)))
    geometry = frame_geometry(ds, name)
    names = [f"{name} frame {i + 1}" for i in range(len(geometry.positions))]
    iop0, ps0 = geometry.orientations[0], geometry.pixel_spacings[0]
    for i in range(1, len(names)):
        if _differs(geometry.orientations[i], iop0, 1e-3):
            raise QuarantineError(f"mixed orientation in one multi-frame image ({names[i]} differs from frame 1)")
        if _differs(geometry.pixel_spacings[i], ps0, 1e-4):
            raise QuarantineError(f"mixed pixel spacing in one multi-frame image ({names[i]} differs from frame 1)")
    if not raw_text(ds, "PatientID"):
        raise QuarantineError(f"{name}: no PatientID, so the series cannot be attributed to a patient")
    jobs = [(image, i, float(s), float(c)) for i, (s, c) in enumerate(zip(geometry.slopes, geometry.intercepts))]
    return _Frames(jobs, names, geometry.positions, iop0, ps0, geometry.slice_thickness, geometry.window)


def _slice_order(positions: np.ndarray, names: list[str], normal: np.ndarray) -> np.ndarray:
    """Sort order along the normal; quarantine duplicates, gaps and uneven steps."""
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    z = along[order]
    if len(z) < 2:
        return order
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
    return order


def _is_multi_frame(ds: Dataset) -> bool:
    """An Enhanced CT file (its geometry lives in functional groups), even when it holds a single frame."""
    return number(ds, "NumberOfFrames", 1) != 1 or "PerFrameFunctionalGroupsSequence" in ds


def _frames_of(images: list[ImageFile]) -> _Frames:
    if len(images) == 1 and _is_multi_frame(images[0].ds):
        return _multi_frame_series(images[0])
    frames = _single_frame_series(images)
    if not raw_text(images[0].ds, "PatientID"):
        raise QuarantineError(f"{images[0].name}: no PatientID, so the series cannot be attributed to a patient")
    return frames


def load_ct_volume(files: Sequence[Path | str], workers: int | None = None) -> CtVolume:
    """Sort, validate and decode a CT series to HU on its own grid; raise QuarantineError for bad input.

    ``files`` are the slices of a classic series or one Enhanced (multi-frame)
    CT file. Localiser images are dropped (and counted in the metadata) rather
    than quarantining the series, since scanners often file them with the
    axials. Only headers are held while checking; pixels then go straight into
    the float32 volume on ``workers`` threads (default: every core), so peak
    memory is about the volume itself.
    """
    if not files:
        raise QuarantineError("empty CT series: no files were given")
    with collector_paused():
        images, localizers, pending = _read_images(files, workers)
    try:
        frames = _frames_of(images)
    finally:
        pending.close()  # a quarantined series waits for the background thread, then drops its array
    iop = frames.iop
    _check_orthonormal(iop, frames.names[0])
    normal = np.cross(iop[:3], iop[3:])
    order = _slice_order(frames.positions, frames.names, normal)
    positions = frames.positions[order]
    first = frames.jobs[order[0]][0].ds
    n = len(order)
    if n > 1:
        step_vec = (positions[-1] - positions[0]) / (n - 1)
    else:
        step_vec = normal * (frames.thickness or 1.0)
    rows, cols = int(number(first, "Rows", 0)), int(number(first, "Columns", 0))
    hu = pending.take((n, rows, cols))
    jobs = [FrameJob(*frames.jobs[idx][:2], target=k, slope=frames.jobs[idx][2], intercept=frames.jobs[idx][3])
            for k, idx in enumerate(order)]
    decode_into(jobs, hu, workers)
    affine = np.eye(4)
    affine[:3, 0] = step_vec
    affine[:3, 1] = iop[3:] * frames.pixel_spacing[0]  # row index moves along the column direction
    affine[:3, 2] = iop[:3] * frames.pixel_spacing[1]  # column index moves along the row direction
    affine[:3, 3] = positions[0]
    along = float(abs(step_vec @ normal))  # slice spacing proper; the affine keeps any gantry-tilt shear
    tilt = float(np.degrees(np.arccos(min(1.0, along / max(float(np.linalg.norm(step_vec)), 1e-9)))))
    spacing = (along, float(frames.pixel_spacing[0]), float(frames.pixel_spacing[1]))
    metadata: dict[str, Any] = {
        "n_slices": n,
        "original_shape": [n, rows, cols],
        "original_spacing_mm": [round(s, 4) for s in spacing],
        "orientation": [round(float(v), 5) for v in iop],
        "gantry_tilt_deg": round(tilt, 3),
        "window_center": frames.window[0],
        "window_width": frames.window[1],
        "series_description": safe_description(first),
        "dropped_localizers": localizers,
        "transfer_syntax": transfer_syntax_name(first),
        "manufacturer": str(first.get("Manufacturer", "") or ""),
        "multi_frame": len(images) == 1 and _is_multi_frame(first),
    }
    return CtVolume(hu, affine, spacing, str(first.get("PatientID", "")), iso_date(first), metadata)


def _resample_in_place(
    hu: np.ndarray, affine: np.ndarray, spacing_mm: Sequence[float], shape: Sequence[int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reorient to SPL, resample to ``spacing_mm`` with MONAI, then fit the body into ``shape``; consumes ``hu``.

    Values are shifted by +1024 while resampling so that MONAI's zero padding
    (outside an oblique volume) is air, not water. The fit
    (:func:`ingestion.readers.ct_fit.fit_body`) centres the window on the body,
    not the array, and coarsens every axis alike when the body is larger than
    ``shape * spacing_mm``; its record (spacing used, field of view kept, tissue
    cut) is returned for the manifest.
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    from ingestion.readers.ct_fit import fit_body

    hu -= AIR_HU
    tensor = MetaTensor(torch.from_numpy(hu)[None], affine=torch.from_numpy(_LPS_TO_RAS @ affine))
    tensor = Orientation(axcodes=OUTPUT_AXES, labels=None)(tensor)
    tensor = Spacing(
        pixdim=tuple(float(s) for s in spacing_mm), mode="bilinear", padding_mode="zeros", dtype=torch.float32
    )(tensor)
    grid = tensor.as_tensor()[0].numpy().astype(np.float32, copy=False)
    grid += AIR_HU
    out, record = fit_body(grid, spacing_mm, shape, fill=AIR_HU)
    record["resampled_fov_shape"] = list(grid.shape)
    return out, record


def resample_ct(volume: CtVolume, spacing_mm: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """The volume as float32 ``shape`` in HU (D, H, W = superior, posterior, left), its body fitted in.

    ``spacing_mm`` is the finest spacing used; a body larger than ``shape * spacing_mm`` is coarsened to fit.
    """
    return _resample_in_place(volume.hu.copy(), volume.affine, spacing_mm, shape)[0]


def _refuse_single_slice(volume: CtVolume, first: str) -> None:
    """A lone slice has no slice spacing: resampling it would invent the volume's third dimension."""
    if volume.metadata["n_slices"] > 1:
        return
    dropped = volume.metadata["dropped_localizers"]
    extra = f" besides {dropped} localiser image(s)" if dropped else ""
    raise QuarantineError(
        f"{first}: single-slice CT 'series' (one image{extra}); with no second slice there is no slice spacing, "
        "and resampling it to a 3-D volume would invent one. Ingest the complete series (all slices) instead"
    )


def read_ct_series(
    files: Sequence[Path | str],
    spacing_mm: tuple[float, float, float] | None,
    shape: tuple[int, int, int] | None,
) -> NormalisedItem:
    """Read a CT series to the contract's normalised array (float32 HU, ``shape``, body fitted in).

    ``files`` are paths (``archive.zip!member`` for zip members) of one
    series. ``spacing_mm`` is the finest output spacing: the window follows the
    body, and a body too large for ``shape * spacing_mm`` is coarsened to fit;
    the metadata records the spacing used (``output_spacing_mm``, ``fit_scale``),
    ``fov_kept_fraction`` and ``tissue_cropped_fraction``. With ``spacing_mm`` and ``shape`` both None the volume stays on
    its acquisition grid in slice order (used by the benchmark). Raises
    QuarantineError with a reason a person can act on for bad input,
    including a single slice asked to be resampled into a volume.
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
        _refuse_single_slice(volume, first)
        array, fit = _resample_in_place(volume.hu, volume.affine, spacing_mm, shape)
        metadata.update(resampled=True, output_axes=OUTPUT_AXES, **fit)
    metadata["output_shape"] = list(array.shape)
    return NormalisedItem(
        modality="ct",
        original_patient_id=volume.original_patient_id,
        array=array,
        metadata=metadata,
        event_date=volume.event_date,
    )
