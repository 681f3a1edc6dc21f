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

import gc
import io
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom import filereader
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

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
NATIVE_LITTLE_ENDIAN = frozenset({str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)})
_PIXEL_DATA = (0x7FE0, 0x0010)
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # pixel data, float and double float pixel data
_TRANSFER_SYNTAX = 0x00020010
_MODALITY_LUT = 0x00283000  # ModalityLUTSequence: such images take pydicom's decode
_NATIVE_SYNTAX_BYTES = {str(ImplicitVRLittleEndian).encode(): True, str(ExplicitVRLittleEndian).encode(): False}
_LONG_VRS = frozenset({b"OB", b"OW", b"UN"})
_MIN_SLICES_FOR_THREADS = 8  # below this, starting threads costs more than it saves
HEADER_CHUNK = 1 << 16  # bytes read to parse a header from memory; longer headers take the careful path
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


def _native_layout(ds: Dataset) -> tuple[str, int, int] | None:
    """(dtype, pixels per frame, frames) when the fast path can decode this header's image, else None."""
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in NATIVE_LITTLE_ENDIAN or ds.original_encoding[1] is False:
        return None
    return _native_image_layout(ds)


def _native_image_layout(ds: Dataset) -> tuple[str, int, int] | None:
    """:func:`_native_layout` for a header already known to be uncompressed little endian."""
    if _MODALITY_LUT in ds or number(ds, "BitsAllocated", 0) != 16 or number(ds, "SamplesPerPixel", 0) != 1:
        return None
    rows, cols, frames = int(number(ds, "Rows", 0)), int(number(ds, "Columns", 0)), int(number(ds, "NumberOfFrames", 1))
    if rows <= 0 or cols <= 0 or frames <= 0:
        return None
    return ("<i2" if number(ds, "PixelRepresentation", 0) == 1 else "<u2"), rows * cols, frames


def _pixel_element_start(fh: io.BufferedIOBase | io.BytesIO, implicit: bool) -> tuple[int, int] | None:
    """(value offset, value length) of a defined-length Pixel Data element at the handle's position."""
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) != _PIXEL_DATA:
        return None
    if implicit:
        offset, length = start + 8, struct.unpack("<I", head[4:8])[0]
    elif head[4:6] in _LONG_VRS and len(head) == 12:
        offset, length = start + 12, struct.unpack("<I", head[8:12])[0]
    else:
        return None
    return (offset, length) if length != 0xFFFFFFFF else None


def _parse_header(fh: io.BufferedIOBase | io.BytesIO) -> tuple[Dataset, tuple[str, int, int] | None, tuple[int, int] | None]:
    """The header dataset, its native pixel layout and the pixel element's (offset, length), as far as found."""
    ds = pydicom.dcmread(fh, stop_before_pixels=True, force=False)
    ds.buffer = None  # pydicom keeps the in-memory source for deferred reads; none are made, so let it go
    if "TransferSyntaxUID" not in ds.file_meta:
        return ds, None, None
    layout = _native_layout(ds)
    return ds, layout, (_pixel_element_start(fh, bool(ds.original_encoding[0])) if layout else None)


def _not_file_meta(tag: int, vr: str | None, length: int) -> bool:
    return tag >> 16 != 2


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _parse_native_header(head: bytes) -> tuple[Dataset, tuple[str, int, int] | None, tuple[int, int] | None] | None:
    """What :func:`_parse_header` gives, for an uncompressed little-endian file, in one pass of pydicom's reader.

    ``dcmread`` reads the same elements but builds five datasets per file
    (file meta twice over, an empty command set, the body, the file dataset)
    and converts meta values to check them: about a third of a CT slice's
    header time. Here pydicom's own :func:`pydicom.filereader.read_dataset`
    reads the file meta and then the body up to the pixel data, and the two
    become the same ``FileDataset`` dcmread returns. Anything but a plain
    Part 10 file in implicit or explicit VR little endian returns None (the
    caller then takes ``dcmread``).
    """
    fh = io.BytesIO(head)
    preamble = filereader.read_preamble(fh, False)
    meta = filereader.read_dataset(fh, is_implicit_VR=False, is_little_endian=True, stop_when=_not_file_meta)
    syntax = meta.get_item(_TRANSFER_SYNTAX)
    if not isinstance(syntax, RawDataElement) or syntax.VR != "UI":
        return None
    implicit = _NATIVE_SYNTAX_BYTES.get((syntax.value or b"").rstrip(b"\0 "))
    if implicit is None:
        return None
    body = filereader.read_dataset(fh, is_implicit_VR=implicit, is_little_endian=True, stop_when=_at_pixel_data)
    ds = FileDataset(fh, body, preamble, FileMetaDataset(meta), implicit, True)
    ds.set_original_encoding(implicit, True, body._character_set)
    ds.buffer = None  # as in _parse_header: no deferred reads are made
    layout = _native_image_layout(ds)
    return ds, layout, (_pixel_element_start(fh, implicit) if layout else None)


def _parse_head_chunk(path: Path) -> tuple[Dataset, tuple[str, int, int], tuple[int, int], int] | None:
    """Parse the header from the file's first bytes held in memory; None unless that settles everything.

    Parsing from a file handle costs a system call per element (pydicom asks
    for the position each time); from memory it does not. A header longer
    than the chunk, or anything unusual, returns None and the caller parses
    from the file as usual.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_CHUNK)
            size = os.fstat(f.fileno()).st_size
        parsed = _parse_native_header(head) or _parse_header(io.BytesIO(head))
        ds, layout, found = parsed
    except Exception:  # noqa: BLE001 - any surprise here just means "take the careful path"
        return None
    if layout is None or found is None:
        return None
    return ds, layout, found, size


def read_image_file(path: str | os.PathLike[str]) -> ImageFile:
    """Parse one file's header (stopping before the pixels) and locate native pixel data; QuarantineError if bad.

    Files the fast path cannot take are read again whole, so their pixel
    data reaches pydicom's decoders exactly as :func:`read_dataset` gives it.
    """
    name = os.fspath(path)
    archive, member = split_zip_member(path)
    chunk = _parse_head_chunk(archive) if member is None else None
    buffer = None
    if chunk is not None:
        ds, layout, found, size = chunk
    else:
        with read_errors_are_quarantine(name):
            src = open_source(path)
            fh = src if isinstance(src, io.BytesIO) else open(src, "rb")  # noqa: SIM115 - closed below
            try:
                ds, layout, found = _parse_header(fh)
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


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a series' headers are parsed; restore it after.

    Each header allocates a few hundred objects (datasets, elements, bytes)
    and none of them is cyclic garbage, yet every 700 allocations trigger a
    collection that walks them all again: about a tenth of a 200-slice read's
    CPU time. Reference counting still frees everything as usual; the state
    is restored as found (a caller that disabled the collector keeps it off).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def rescale_of(ds: Dataset) -> tuple[float, float]:
    """(slope, intercept) of a single-frame image; slope 0 or absent means 1."""
    return float(number(ds, "RescaleSlope", 1.0) or 1.0), float(number(ds, "RescaleIntercept", 0.0))

