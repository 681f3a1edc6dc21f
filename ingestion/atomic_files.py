"""Atomic file writes: the one implementation behind every file clinfuse publishes.

Readers (the dashboard, a second flow, the run that follows a crash) must see
the old file or the new one, never half of one. The bytes go to a temporary
file in the same folder (same filesystem, so the rename is atomic), are flushed
to disk, and one ``os.replace`` publishes them. On any error the temporary file
is removed and the target is untouched. Lives in ``ingestion`` because it is the
lowest layer: ``models`` and ``flows`` import it, never the other way round.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""No space left, or the user's quota spent: the disk's fault, never the input's."""

LOW_SPACE_BYTES = 1 << 20
"""A write that fails without an errno (numpy's ``tofile`` says only "N requested and M written") while the
folder's filesystem has less than this free is taken for a full disk."""


class DiskFullError(OSError):
    """No space left where clinfuse writes: not the item's fault, so never a quarantine reason.

    Raised instead of the bare ``OSError`` so that callers that set bad input aside
    (the ingest workers, the encoders) let it stop the run with a clear message, and
    a re-run after space is freed redoes only what was not published.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the filesystem holding ``folder`` (its nearest existing parent), None if unknown."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """True when ``exc`` (or an exception it was raised from) says the disk is full.

    ``folder``: where the failed write went; an ``OSError`` without an errno counts
    when that filesystem has under :data:`LOW_SPACE_BYTES` free.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFullError):
            return True
        if isinstance(current, OSError):
            if current.errno in FULL_ERRNOS:
                return True
            if current.errno is None and folder is not None:
                free = free_bytes(folder)
                if free is not None and free < LOW_SPACE_BYTES:
                    return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_error(exc: OSError, path: Path) -> DiskFullError:
    """A :class:`DiskFullError` naming the folder that could not be written and how much space it has."""
    folder = Path(path).parent
    free = free_bytes(folder)
    left = f"{free / 1e6:.1f} MB free" if free is not None else "free space unknown"
    return DiskFullError(errno.ENOSPC, f"disk full: no space left to write {Path(path).name} in {folder} ({left}); "
                                       "free space there and re-run: what was finished is kept", str(path))


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer (pyarrow, numpy, ...); on success it becomes ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc, path.parent):
            raise disk_full_error(exc, path) from exc
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # the bytes reach the disk before the name does
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        # Judged while the partial temporary file still holds its space, then removed below.
        if not isinstance(exc, DiskFullError) and is_disk_full(exc, path.parent):
            raise disk_full_error(exc, path) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Publish ``data`` as ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Publish ``text`` (UTF-8) as ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
