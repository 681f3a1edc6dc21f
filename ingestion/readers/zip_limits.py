"""Limits on what clinfuse unpacks from a .zip export, so a decompression bomb is refused, not inflated.

Why: a .zip of a few megabytes can hold one 3 GiB member of zeros (or a
terabyte, for the patient). Reading such a member whole drove ``clinfuse
ingest`` to 6.3 GiB of memory. The sizes a zip declares are binding for
Python's ``zipfile`` (it stops at the declared size and fails the CRC check
on anything longer), so checking the declared sizes before unpacking bounds
both memory and time; members are then streamed, never read past the cap.

The limits are generous for real exports (a 2,000-slice CT series is about
1 GiB uncompressed and compresses 2-10x) and far below what would hurt a
worker. A refused archive is quarantined whole with the reason: an archive
built to explode is hostile, and no member of it is unpacked.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from typing import BinaryIO

MAX_MEMBER_BYTES = 512 << 20
"""Largest uncompressed member (one DICOM file): a whole multi-frame CT fits, a bomb does not."""
MAX_ARCHIVE_BYTES = 16 << 30
"""Largest uncompressed total of one archive: members are streamed, so this bounds time, not memory."""
MAX_MEMBERS = 200_000
"""Most members one archive may list (each becomes an index entry in memory)."""
MAX_RATIO = 200.0
"""Largest uncompressed/compressed ratio of a member above :data:`RATIO_FLOOR_BYTES`; zeros reach ~1,000."""
RATIO_FLOOR_BYTES = 8 << 20
"""Members smaller than this are not ratio-checked: small files of constant pixels compress very well."""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n < (1 << 30) else f"{n / (1 << 30):,.1f} GiB"


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why one member must not be unpacked (too large, or compressed suspiciously well), else None."""
    if info.file_size > MAX_MEMBER_BYTES:
        return (f"archive member {info.filename!r} declares {_mib(info.file_size)} uncompressed, more than the "
                f"{_mib(MAX_MEMBER_BYTES)} limit per member (a decompression bomb, or a file that is not one image)")
    ratio = info.file_size / max(1, info.compress_size)
    if info.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
        return (f"archive member {info.filename!r} expands {ratio:,.0f}:1 ({_mib(info.compress_size)} to "
                f"{_mib(info.file_size)}), more than the {MAX_RATIO:,.0f}:1 limit (a decompression bomb)")
    return None


def archive_problem(infos: Sequence[zipfile.ZipInfo]) -> str | None:
    """Why an archive must not be unpacked at all, else None: checked before any member is read."""
    if len(infos) > MAX_MEMBERS:
        return f"the archive lists {len(infos):,} members, more than the {MAX_MEMBERS:,} limit"
    total = sum(i.file_size for i in infos)
    if total > MAX_ARCHIVE_BYTES:
        return (f"the archive declares {_mib(total)} uncompressed, more than the {_mib(MAX_ARCHIVE_BYTES)} "
                "limit per archive (a decompression bomb, or an export to split)")
    for info in infos:
        problem = member_problem(info)
        if problem:
            return problem
    return None


def read_member(zf: zipfile.ZipFile, member: str, limit: int = MAX_MEMBER_BYTES) -> bytes:
    """The member's bytes, never more than ``limit`` read: raises ``OSError`` beyond it (whatever the header says)."""
    info = zf.getinfo(member)
    problem = member_problem(info)
    if problem:
        raise OSError(problem)
    with zf.open(info) as fh:
        return _read_capped(fh, limit, member)


def _read_capped(fh: BinaryIO, limit: int, member: str) -> bytes:
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"archive member {member!r} is larger than the {_mib(limit)} limit per member")
    return data
