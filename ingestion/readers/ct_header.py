"""A CT image file's header, parsed by pydicom from the file's first bytes, and where its native pixels start.

Split from :mod:`ingestion.readers.ct_slices` (which decodes the pixels): the
header parse is most of a CT series' read time, one core, GIL-bound, so the
ways it is kept short live together here: parse from memory, not the file
handle; one pass of pydicom's ``read_dataset`` for plain little-endian files
(:func:`parse_native_header`); no per-slice value conversions; and the cyclic
collector paused while a series' headers are parsed (:func:`collector_paused`).
"""

from __future__ import annotations

import gc
import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom import filereader
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ingestion.readers.dicom_values import number

NATIVE_LITTLE_ENDIAN = frozenset({str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)})
_PIXEL_DATA = (0x7FE0, 0x0010)
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # pixel data, float and double float pixel data
_TRANSFER_SYNTAX = 0x00020010
_MODALITY_LUT = 0x00283000  # ModalityLUTSequence: such images take pydicom's decode
_NATIVE_SYNTAX_BYTES = {str(ImplicitVRLittleEndian).encode(): True, str(ExplicitVRLittleEndian).encode(): False}
_LONG_VRS = frozenset({b"OB", b"OW", b"UN"})
HEADER_CHUNK = 1 << 16  # bytes read to parse a header from memory; longer headers take the careful path


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


def parse_header(fh: io.BufferedIOBase | io.BytesIO) -> tuple[Dataset, tuple[str, int, int] | None, tuple[int, int] | None]:
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


def parse_native_header(head: bytes) -> tuple[Dataset, tuple[str, int, int] | None, tuple[int, int] | None] | None:
    """What :func:`parse_header` gives, for an uncompressed little-endian file, in one pass of pydicom's reader.

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
    ds.buffer = None  # as in parse_header: no deferred reads are made
    layout = _native_image_layout(ds)
    return ds, layout, (_pixel_element_start(fh, implicit) if layout else None)


def parse_head_chunk(path: Path) -> tuple[Dataset, tuple[str, int, int], tuple[int, int], int] | None:
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
        parsed = parse_native_header(head) or parse_header(io.BytesIO(head))
        ds, layout, found = parsed
    except Exception:  # noqa: BLE001 - any surprise here just means "take the careful path"
        return None
    if layout is None or found is None:
        return None
    return ds, layout, found, size


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
