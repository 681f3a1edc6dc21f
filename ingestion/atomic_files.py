"""Atomic file writes: the one implementation behind every file clinfuse publishes.

Readers (the dashboard, a second flow, the run that follows a crash) must see
the old file or the new one, never half of one. The bytes go to a temporary
file in the same folder (same filesystem, so the rename is atomic), are flushed
to disk, and one ``os.replace`` publishes them. On any error the temporary file
is removed and the target is untouched. Lives in ``ingestion`` because it is the
lowest layer: ``models`` and ``flows`` import it, never the other way round.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer (pyarrow, numpy, ...); on success it becomes ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # the bytes reach the disk before the name does
            os.fsync(fh.fileno())
        os.replace(tmp, path)
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
