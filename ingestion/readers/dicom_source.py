"""Open DICOM files wherever they live (plain files or members of .zip exports) and
check that their pixel data can be decoded, with reasons a person can act on.

Zip members are addressed as ``archive.zip!member/path`` so that one string
names every source file, in the index, the manifest and the quarantine.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from ingestion.readers.dicom_deflate import deflate_problem
from ingestion.readers.records import QuarantineError
from ingestion.readers.zip_limits import read_member

ZIP_SEPARATOR = "!"

_PLUGIN_HINT = (
    "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle, python-gdcm or pyjpegls"
)


def split_zip_member(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """Split ``a/b.zip!c/d.dcm`` into (``a/b.zip``, ``c/d.dcm``); plain paths give (path, None).

    Only a ``.zip!`` whose left side is an existing file counts, so a file
    name that merely contains ``!`` is still read as a plain file.
    """
    text = os.fspath(path)
    lower = text.lower()
    start = 0
    while (i := lower.find(".zip" + ZIP_SEPARATOR, start)) >= 0:
        archive = Path(text[: i + 4])
        if archive.is_file():
            return archive, text[i + 5 :]
        start = i + 1
    return Path(text), None


def open_source(path: str | os.PathLike[str]) -> BinaryIO | Path:
    """A handle pydicom can read: the path itself, or the zip member's bytes in memory.

    Raises ``OSError`` (permissions, missing file, bad archive) for the caller
    to turn into an 'unreadable' reason.
    """
    archive, member = split_zip_member(path)
    if member is None:
        return archive
    try:
        with zipfile.ZipFile(archive) as zf:
            return io.BytesIO(read_member(zf, member))  # bounded: a bomb member raises instead of inflating
    except (KeyError, zipfile.BadZipFile) as exc:
        raise OSError(f"cannot read member {member!r} of {archive.name}: {exc}") from exc


def read_dataset(path: str | os.PathLike[str], *, headers_only: bool = False) -> Dataset:
    """Read one DICOM Part 10 file strictly (``force=False``) or raise QuarantineError.

    Strict reading is deliberate: a file without the DICM preamble is far more
    often a stray document than a headerless DICOM, and guessing its encoding
    produces garbage silently.
    """
    name = os.fspath(path)
    with read_errors_are_quarantine(name):
        src = open_source(path)
        with open(src, "rb") if isinstance(src, Path) else nullcontext(src) as fh:
            problem = deflate_problem(fh)  # pydicom would inflate a deflated dataset whole, unbounded
        if problem:
            raise QuarantineError(f"{name}: {problem}")
        if not isinstance(src, Path):
            src.seek(0)
        ds = pydicom.dcmread(src, stop_before_pixels=headers_only, force=False)
    if "TransferSyntaxUID" not in ds.file_meta:
        raise QuarantineError(f"{name}: file meta has no TransferSyntaxUID; re-export the file")
    return ds


@contextmanager
def read_errors_are_quarantine(name: str) -> Iterator[None]:
    """Turn what opening and parsing a DICOM file can raise into a reason naming the file.

    Shared by :func:`read_dataset` and readers that parse from their own file
    handle (the CT reader locates the pixel data itself), so both give the same reasons.
    """
    try:
        yield
    except PermissionError:
        raise QuarantineError(f"{name}: permission denied; make the file readable by the ingest user") from None
    except FileNotFoundError:
        raise QuarantineError(f"{name}: file not found (a dangling link or a file removed during ingest)") from None
    except InvalidDicomError:
        raise QuarantineError(
            f"{name}: not a DICOM Part 10 file (no 'DICM' preamble); remove it or re-export it as DICOM"
        ) from None
    except (EOFError, ValueError, TypeError, KeyError, NotImplementedError, OSError) as exc:
        raise QuarantineError(
            f"{name}: DICOM header is truncated or corrupt ({type(exc).__name__}: {exc}); re-export the file"
        ) from None


def transfer_syntax_name(ds: Dataset) -> str:
    """The human name and UID of the file's transfer syntax, for metadata and reasons."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    return f"{ts.name} ({ts})" if ts.name != ts else str(ts)


def check_decodable(ds: Dataset, name: str) -> None:
    """Raise QuarantineError unless the pixel data is present and a decoder for it is installed."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise QuarantineError(
            f"{name}: no pixel data (SOP class {ds.get('SOPClassUID', 'unknown')}); "
            "it is not an image, or the export dropped the pixels"
        )
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel") if k not in ds]
    if missing:
        raise QuarantineError(
            f"{name}: pixel data without the image attributes {', '.join(missing)}; the file is malformed"
        )
    check_pixel_budget(ds, name)
    ts = UID(ds.file_meta.TransferSyntaxUID)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise QuarantineError(
            f"{name}: transfer syntax {transfer_syntax_name(ds)} is not supported by any pydicom pixel "
            "decoder; transcode the file to Explicit VR Little Endian (e.g. 'gdcmconv --raw')"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or _PLUGIN_HINT
        raise QuarantineError(
            f"{name}: transfer syntax {transfer_syntax_name(ds)} needs a decoder plugin that is not "
            f"installed: {missing}"
        )


MAX_PIXELS_PER_FILE = 1 << 28
"""Most pixels (rows x columns x frames x samples) one DICOM file may declare: 268 million, e.g. 1,000
frames of 512 x 512 or one 16,384 x 16,384 image. A decoder allocates what the header declares before it
finds the data missing, so a file declaring 60,000 x 60,000 x 1,000 frames is refused before decoding."""

J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
                          "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                          "1.2.840.10008.1.2.4.203"})
"""JPEG 2000 and HTJ2K transfer syntaxes: their codestreams carry their own image size (the SIZ marker)."""
JPEG_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                           "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
"""JPEG and JPEG-LS transfer syntaxes: the frame header (SOF marker) carries the image size."""
_SOF_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7})


def check_pixel_budget(ds: Dataset, name: str) -> None:
    """Raise QuarantineError when the header, or a JPEG 2000 codestream, declares more pixels than one file may.

    Why: decoders size their output from these declarations, not from the bytes present, so a few
    kilobytes can demand terabytes. A codestream larger than its DICOM header says is refused too: the
    decoder would allocate the codestream's size, whatever Rows and Columns promise.
    """
    rows, cols = _count(ds, "Rows"), _count(ds, "Columns")
    frames = _count(ds, "NumberOfFrames")
    pixels = rows * cols * frames * _count(ds, "SamplesPerPixel")
    if pixels > MAX_PIXELS_PER_FILE:
        raise QuarantineError(
            f"{name}: the header declares {pixels:,} pixels ({rows} x {cols} x {frames} frame(s)), more than the "
            f"{MAX_PIXELS_PER_FILE:,} clinfuse decodes from one file (a decompression bomb or a corrupt header)"
        )
    ts = str(ds.file_meta.TransferSyntaxUID)
    if "PixelData" not in ds or ts not in J2K_SYNTAXES | JPEG_SYNTAXES:
        return
    size = j2k_declared_size(ds.PixelData) if ts in J2K_SYNTAXES else jpeg_declared_size(ds.PixelData)
    if size is not None and (size[0] > cols or size[1] > rows):
        kind = "JPEG 2000" if ts in J2K_SYNTAXES else "JPEG"
        raise QuarantineError(
            f"{name}: its {kind} codestream declares {size[0]:,} x {size[1]:,} pixels but the header says "
            f"{cols} x {rows}; decoding would allocate the codestream's size (a decompression bomb): re-export it"
        )


def _count(ds: Dataset, keyword: str) -> int:
    """A positive count attribute, 1 when absent or malformed (the readers report malformed values themselves)."""
    try:
        return max(1, int(str(ds.get(keyword, 1) or 1).strip()))
    except (TypeError, ValueError):
        return 1


def j2k_declared_size(pixel_data: bytes) -> tuple[int, int] | None:
    """(width, height) the first JPEG 2000 codestream's SIZ marker declares, or None if there is none to read.

    Reads the first 4 KB of the encapsulated data only: the SIZ marker follows the start-of-codestream
    marker (also inside a JP2 wrapper), and its grid minus offsets is the image the decoder builds.
    """
    head = bytes(pixel_data[:4096])
    at = head.find(b"\xff\x4f\xff\x51")
    if at < 0 or len(head) < at + 4 + 20:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[at + 8:at + 24])
    return max(0, xsiz - xosiz), max(0, ysiz - yosiz)


def jpeg_declared_size(pixel_data: bytes) -> tuple[int, int] | None:
    """(width, height) the first JPEG / JPEG-LS frame header (SOF) declares, or None if there is none to read.

    Walks the marker segments from the start-of-image marker by their lengths (so bytes inside an APP
    segment are never mistaken for a frame header), over the first 64 KB of the encapsulated data.
    """
    head = bytes(pixel_data[:65536])
    at = head.find(b"\xff\xd8")
    if at < 0:
        return None
    pos = at + 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5:pos + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return None
        pos += 2 + struct.unpack(">H", head[pos + 2:pos + 4])[0]
    return None


def check_pixel_length(ds: Dataset, name: str, frames: int = 1) -> None:
    """For native (uncompressed) syntaxes, raise QuarantineError when the pixels are cut short.

    A truncated file still parses up to the pixel element; catching the short
    read here gives a reason instead of a reshape error deep in numpy.
    """
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if ts.is_compressed or "PixelData" not in ds:
        return
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames
    expected = expected * int(ds.BitsAllocated) // 8 if ds.BitsAllocated >= 8 else (expected + 7) // 8
    got = len(ds.PixelData)
    if got < expected:
        raise QuarantineError(
            f"{name}: pixel data is truncated ({got} of {expected} bytes); re-export the file"
        )


@contextmanager
def malformed_is_quarantine(name: str) -> Iterator[None]:
    """Turn the value errors that a malformed header raises deep in pydicom or numpy into a reason.

    Bad input must never crash ingest; an attribute like NumberOfFrames '1A'
    is the file's fault, and the person fixing it needs to know which file.
    """
    try:
        yield
    except QuarantineError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise QuarantineError(
            f"{name}: malformed DICOM attributes ({type(exc).__name__}: {exc}); validate the file (e.g. dciodvfy)"
        ) from None
