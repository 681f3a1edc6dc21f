"""Refuse a Deflated Explicit VR Little Endian DICOM whose dataset inflates past a limit, before pydicom reads it.

Why: for this transfer syntax pydicom calls ``zlib.decompress`` on the whole
rest of the file, with no limit, on every read, headers-only included. A 3 MB
file of deflated zeros is a 3 GiB decompression bomb in the process that
indexes the source. Here the file meta group (always explicit VR little
endian, right after the 128-byte preamble and ``DICM``) is parsed by hand to
find the transfer syntax; a deflated dataset is then inflated in chunks,
counting, and refused as soon as it passes :data:`MAX_INFLATED_BYTES`. Only
then may pydicom read it (and inflate it again, now known to be bounded).
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
MAX_INFLATED_BYTES = 256 << 20
"""Largest inflated dataset accepted: deflated DICOM is used for structured reports and small images."""
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}


def _meta_transfer_syntax(fh: BinaryIO) -> str | None:
    """The file meta's TransferSyntaxUID, leaving ``fh`` at the dataset's start; None if not a Part 10 file."""
    if fh.read(132)[128:] != b"DICM":
        return None
    syntax = None
    while True:
        head = fh.read(6)
        if len(head) < 6:
            return syntax
        group, element = struct.unpack("<HH", head[:4])
        if group != 2:
            fh.seek(-6, 1)
            return syntax
        vr = head[4:6]
        if vr in _LONG_VRS:
            length = struct.unpack("<I", fh.read(6)[2:])[0]
        else:
            length = struct.unpack("<H", fh.read(2))[0]
        value = fh.read(min(length, 1024))
        if len(value) < min(length, 1024):
            return syntax
        if length > 1024:
            fh.seek(length - 1024, 1)
        if element == 0x0010:
            syntax = value.rstrip(b"\0 ").decode("ascii", "replace")


def deflate_problem(fh: BinaryIO, limit: int = MAX_INFLATED_BYTES, chunk: int = 1 << 20) -> str | None:
    """Why this file must not be read (its deflated dataset inflates past ``limit``), else None.

    Reads ``fh`` from its start; the caller rewinds or reopens it afterwards.
    """
    if _meta_transfer_syntax(fh) != DEFLATED_TS:
        return None
    inflater, total, read = zlib.decompressobj(-zlib.MAX_WBITS), 0, 0
    while block := fh.read(chunk):
        read += len(block)
        data = block
        while data:
            total += len(inflater.decompress(data, chunk))
            if total > limit:
                return (f"its deflated dataset inflates past {limit >> 20} MiB ({read:,} compressed bytes read so "
                        "far): a decompression bomb; re-export it uncompressed")
            data = inflater.unconsumed_tail
        if inflater.eof:
            break
    return None
