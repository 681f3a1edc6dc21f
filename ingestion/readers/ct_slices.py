"""CT image files read in two steps: the header without its pixels, then the pixels straight into the volume.

pydicom parses each header and stops before the pixel data. For plain
little-endian, uncompressed 16-bit grey images, what nearly every CT scanner
exports, the reader notes where the pixel bytes start; once the series has
been checked and sorted they are read from there into a small buffer and
turned into HU in the preallocated float32 volume. File reads and numpy's
arithmetic release the GIL, so that step runs on every core. Everything else
(compressed, big-endian, a Modality LUT, other bit depths) is read whole by
pydicom and decoded by its pixel handlers, as before.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from ingestion.readers.ct_header import parse_head_chunk, parse_header
from ingestion.readers.dicom_source import (
    open_source,
    read_dataset,
    read_errors_are_quarantine,
    split_zip_member,
    transfer_syntax_name,
)
from ingestion.readers.dicom_values import number
from ingestion.readers.records import QuarantineError

AIR_HU = -1024.0
_MIN_SLICES_FOR_THREADS = 8  # below this, starting threads costs more than it saves
_CHUNK = 4  # slices per task: small enough to balance two busy cores, large enough to amortise the task


@dataclass(frozen=True)
class NativePixels:
    """Where a file's uncompressed little-endian 16-bit pixels are: file offset and element type.

    ``buffer`` holds the file's bytes for zip members (already in memory);
    plain files are read again at ``offset`` when the volume is filled.
    """

    path: str
    offset: int
    dtype: str
    frame_pixels: int
    frames: int
    buffer: memoryview | None = None


@dataclass
class ImageFile:
    """One DICOM image file: its header dataset and, where the fast path applies, where its pixels are.

    Without ``pixels`` the dataset is complete (pixel data included) and is
    decoded by pydicom.
    """

    name: str
    ds: Dataset
    pixels: NativePixels | None


def read_image_file(path: str | os.PathLike[str]) -> ImageFile:
    """Parse one file's header (stopping before the pixels) and locate native pixel data; QuarantineError if bad.

    Files the fast path cannot take are read again whole, so their pixel
    data reaches pydicom's decoders exactly as :func:`read_dataset` gives it.
    """
    name = os.fspath(path)
    archive, member = split_zip_member(path)
    chunk = parse_head_chunk(archive) if member is None else None
    buffer = None
    if chunk is not None:
        ds, layout, found, size = chunk
    else:
        with read_errors_are_quarantine(name):
            src = open_source(path)
            fh = src if isinstance(src, io.BytesIO) else open(src, "rb")  # noqa: SIM115 - closed below
            try:
                ds, layout, found = parse_header(fh)
                size = len(src.getbuffer()) if isinstance(src, io.BytesIO) else os.fstat(fh.fileno()).st_size
            finally:
                if fh is not src:
                    fh.close()
        if isinstance(src, io.BytesIO):
            buffer = src.getbuffer()  # the zip member's bytes, already in memory: no copy
    if layout is None or found is None:
        return ImageFile(name, read_dataset(path), None)
    dtype, frame_pixels, frames = layout
    offset, length = found
    expected = frame_pixels * frames * 2
    got = min(length, size - offset)
    if got < expected:
        raise QuarantineError(f"{name}: pixel data is truncated ({got} of {expected} bytes); re-export the file")
    return ImageFile(name, ds, NativePixels(name if buffer is None else "", offset, dtype, frame_pixels, frames, buffer))


@dataclass(frozen=True)
class FrameJob:
    """Decode frame ``frame`` of ``image`` into slice ``target`` of the volume with this rescale."""

    image: ImageFile
    frame: int
    target: int
    slope: float
    intercept: float


def _stored_bits_fixed(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """Drop bits above BitsStored (overlay bits or garbage) and sign-extend signed values."""
    bits_stored = int(number(ds, "BitsStored", 16))
    if bits_stored >= 16:
        return raw
    shift = 16 - bits_stored
    if raw.dtype.kind == "i":
        return (raw << shift) >> shift
    return raw & ((1 << bits_stored) - 1)


class _Scratch:
    """Per-thread buffers: the stored frame as read, and a float32 frame that stays in cache."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.raw = np.empty(shape[0] * shape[1] * 2, dtype=np.uint8)
        self.hu = np.empty(shape, dtype=np.float32)


def _to_hu(raw: np.ndarray, slope: float, intercept: float, out: np.ndarray, scratch: _Scratch) -> None:
    """``out = max(raw * slope + intercept, air)`` in float32.

    The clamp to air (outside-FOV padding such as -2000 or -3024 is air for
    every later step) costs as much as the rescale, so it runs only for
    frames whose lowest stored value maps below air; those are computed in a
    cache-resident buffer and clamped on the way into the volume.
    """
    extreme = raw.min() if slope > 0 else raw.max()
    needs_clamp = float(extreme) * slope + intercept < AIR_HU
    target = scratch.hu if needs_clamp and out.shape == scratch.hu.shape else out
    if slope == 1.0:
        np.add(raw, np.float32(intercept), out=target, casting="unsafe")
    else:
        np.multiply(raw, np.float32(slope), out=target, casting="unsafe")
        target += np.float32(intercept)
    if needs_clamp:
        np.maximum(target, np.float32(AIR_HU), out=out)


def _read_native(px: NativePixels, frame: int, scratch: np.ndarray) -> np.ndarray:
    """The frame's stored values, read from the file (or zip bytes) into ``scratch`` without a copy."""
    nbytes = px.frame_pixels * 2
    start = px.offset + frame * nbytes
    if px.buffer is not None:
        return np.frombuffer(px.buffer, dtype=px.dtype, count=px.frame_pixels, offset=start)
    view = scratch[:nbytes]
    if hasattr(os, "preadv"):  # one system call, no Python file object
        fd = os.open(px.path, os.O_RDONLY)
        try:
            got = os.preadv(fd, [view], start)
        finally:
            os.close(fd)
    else:
        with open(px.path, "rb", buffering=0) as fh:
            fh.seek(start)
            got = fh.readinto(view) or 0
    if got != nbytes:
        raise QuarantineError(f"{px.path}: pixel data is truncated (the file changed while it was read)")
    return view.view(px.dtype)


def _decode_job(job: FrameJob, hu: np.ndarray, scratch: _Scratch) -> None:
    out = hu[job.target]
    ds = job.image.ds
    px = job.image.pixels
    if px is not None:
        raw = _stored_bits_fixed(_read_native(px, job.frame, scratch.raw).reshape(out.shape), ds)
        _to_hu(raw, job.slope, job.intercept, out, scratch)
        return
    frames = int(number(ds, "NumberOfFrames", 1))
    raw = pixel_array(ds, index=job.frame if frames > 1 else None)  # not ds.pixel_array: that caches a copy
    if "ModalityLUTSequence" in ds:
        out[...] = np.maximum(apply_modality_lut(raw, ds), AIR_HU)
        return
    _to_hu(raw, job.slope, job.intercept, out, scratch)


def _decode_guarded(job: FrameJob, hu: np.ndarray, scratch: _Scratch) -> None:
    try:
        _decode_job(job, hu, scratch)
    except QuarantineError:
        raise
    except Exception as exc:  # decoder errors come in many types; all mean "cannot decode this file"
        raise QuarantineError(
            f"{job.image.name}: pixel data could not be decoded ({type(exc).__name__}: {exc}); "
            f"transfer syntax {transfer_syntax_name(job.image.ds)}"
        ) from None


def _run_chunk(jobs: Sequence[FrameJob], hu: np.ndarray) -> None:
    scratch = _Scratch(hu.shape[1:])
    for job in jobs:
        _decode_guarded(job, hu, scratch)


def worker_count() -> int:
    """Threads for decoding: the cores this process may use (at most 8; the disk is the next limit)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def decode_into(jobs: Sequence[FrameJob], hu: np.ndarray, workers: int | None = None) -> None:
    """Fill ``hu`` (float32, frames x rows x cols) with every job's HU; native frames on all cores.

    Frames pydicom must decode run on the calling thread (its plugins are
    not all thread-safe), overlapping with the native ones on the pool.
    """
    native = [j for j in jobs if j.image.pixels is not None]
    other = [j for j in jobs if j.image.pixels is None]
    workers = worker_count() if workers is None else workers
    if workers < 2 or len(native) < _MIN_SLICES_FOR_THREADS:
        _run_chunk(native, hu)
        _run_chunk(other, hu)
        return
    chunks = [native[i : i + _CHUNK] for i in range(0, len(native), _CHUNK)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ct-decode") as pool:
        futures = [pool.submit(_run_chunk, chunk, hu) for chunk in chunks]
        try:
            _run_chunk(other, hu)
        finally:
            errors = [f.exception() for f in futures]
    first_error = next((e for e in errors if e is not None), None)
    if first_error is not None:
        raise first_error


_PAGE_FLOATS = 1024  # float32 values per 4 KiB page: one write per page faults it in


class PendingVolume:
    """The series' float32 volume, allocated and faulted in on a background thread while headers are parsed.

    Why: the kernel maps and zeroes a fresh 200 MiB array page by page on its
    first write, which cost about a third of the decode's CPU time when the
    decode threads did it. Header parsing holds the GIL on one core; one
    numpy write per page releases it, so the other core takes the page
    faults meanwhile. The volume's values do not depend on it: every voxel is
    written by the decode. :meth:`take` hands the array over only when the
    final shape is the one guessed from the first header (one slice per file,
    no localisers dropped); otherwise, and when the series is too small for
    threads, it allocates as before.
    """

    def __init__(self, shape: tuple[int, int, int] | None) -> None:
        self._shape = shape
        self._array: np.ndarray | None = None
        self._thread: threading.Thread | None = None
        if shape is not None:
            self._thread = threading.Thread(target=self._fault_in, name="ct-prefault", daemon=True)
            self._thread.start()

    @classmethod
    def for_series(cls, first: ImageFile, n_files: int, workers: int | None = None) -> PendingVolume:
        """Start faulting in ``(n_files, rows, cols)`` when the first slice is a native single-frame image."""
        px = first.pixels
        workers = worker_count() if workers is None else workers
        if px is None or px.frames != 1 or n_files < _MIN_SLICES_FOR_THREADS or workers < 2:
            return cls(None)
        rows, cols = int(number(first.ds, "Rows", 0)), int(number(first.ds, "Columns", 0))
        return cls((n_files, rows, cols)) if rows * cols == px.frame_pixels else cls(None)

    def _fault_in(self) -> None:
        array = np.empty(self._shape, dtype=np.float32)  # type: ignore[arg-type]
        array.reshape(-1)[::_PAGE_FLOATS] = 0.0  # numpy releases the GIL for this write
        self._array = array

    def take(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The volume to decode into: the faulted-in one when ``shape`` matches, else a fresh array."""
        self.close()
        array, self._array = self._array, None
        if array is not None and array.shape == tuple(shape):
            return array
        return np.empty(shape, dtype=np.float32)

    def close(self) -> None:
        """Wait for the background thread (a quarantined series drops the array with this object)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def rescale_of(ds: Dataset) -> tuple[float, float]:
    """(slope, intercept) of a single-frame image; slope 0 or absent means 1."""
    return float(number(ds, "RescaleSlope", 1.0) or 1.0), float(number(ds, "RescaleIntercept", 0.0))

