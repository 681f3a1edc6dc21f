"""A cheap, exact listing of what files a set of paths holds: one stat per file, no reading.

Why: deciding that a command has nothing to do must cost milliseconds, before any
heavy import. A file's (size, mtime_ns, ctime_ns, inode) changes whenever it is
written, replaced or renamed over, and ``ctime`` cannot be set back by a tool,
so an unchanged listing means unchanged files for every writer clinfuse knows.
Anything that cannot be listed raises: the caller treats that as "changed".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def _file_row(path: str, root: str) -> str:
    st = os.stat(path)  # follows links: a linked source file counts by its target
    rel = os.path.relpath(path, root)
    return f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{st.st_ino}"


def _raise(error: OSError) -> None:
    raise error


def listing(root: Path, skip: Iterable[Path] = ()) -> list[str]:
    """Sorted rows ``relative path, size, mtime_ns, ctime_ns, inode`` of every file under ``root``.

    ``root`` may be a file (one row) or absent (the row ``<missing>``); folders in
    ``skip`` are left out (e.g. Prefect's own database inside a home). An
    unreadable folder raises ``OSError`` instead of being passed over.
    """
    top = os.fspath(root)
    if not os.path.lexists(top):
        return ["<missing>"]
    if not os.path.isdir(top):
        return [_file_row(top, os.path.dirname(top))]
    skipped = {os.path.abspath(os.fspath(p)) for p in skip}
    rows: list[str] = []
    for folder, dirs, files in os.walk(top, onerror=_raise):
        dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(folder, d)) not in skipped)
        rows.extend(_file_row(os.path.join(folder, name), top) for name in files)
    return sorted(rows)


def digest(roots: Iterable[Path], skip: Iterable[Path] = ()) -> str:
    """SHA-256 of the listings of ``roots`` (each under its absolute path), in the order given."""
    skip = tuple(skip)
    h = hashlib.sha256()
    for root in roots:
        h.update(f"== {os.path.abspath(os.fspath(root))}\n".encode())
        for row in listing(root, skip):
            h.update(row.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()
