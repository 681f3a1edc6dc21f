"""Content hashes that make ingest idempotent: files, zip members, multi-file items, unreadable files."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
"""Bytes hashed per read: files are streamed, never held whole in memory."""


@dataclass(frozen=True)
class SourceFile:
    """A file under the source root with its content hash, or why it could not be read.

    Lives here, beside the hashing, so that the source walk (``ingest_sources``)
    and the DICOM grouping (``ingest_dicom``) both import it without importing each other.
    """

    relpath: str
    path: Path
    sha256: str | None
    error: str | None = None


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    """SHA-256 of a file's content, streamed so large files never sit in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def combined_sha(shas: Iterable[str]) -> str:
    """Content id of a multi-file item: sha256 of its sorted, de-duplicated member hashes."""
    return hashlib.sha256("\n".join(sorted(set(shas))).encode()).hexdigest()


def unreadable_id(relpath: str) -> str:
    """A stable id for a file whose content cannot be read (so it still gets exactly one row)."""
    return hashlib.sha256(f"unreadable:{relpath}".encode()).hexdigest()


def zip_member_sha256(archive: Path, member: str, chunk: int = CHUNK) -> str | None:
    """SHA-256 of one member of a zip archive, streamed; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError):
        return None
    return digest.hexdigest()


RACY_NS = 2_000_000_000
"""A file modified this recently (or during hashing) is not remembered: another write within the
file system's timestamp resolution could change its content without changing its (size, mtime)."""


class HashCache:
    """Content hashes of source files remembered by (path, size, mtime, inode), in one JSON file in the home.

    Why: a warm re-run of ingest must not read every byte of an unchanged cohort
    again. A file whose size, mtime or inode changed is hashed again, so the
    content hash still decides what is new (a touched but identical file is
    found already ingested); only the reading of unchanged files is saved.
    The file is a cache: lost or corrupt, it is rebuilt by hashing.
    """

    def __init__(self, path: Path | None) -> None:
        import threading

        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, list] = {}
        self._dirty = False
        self.hashed = 0
        """Files whose bytes were read in this run (the rest were answered from the cache)."""
        if self.path is not None and self.path.is_file():
            import json

            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}

    @staticmethod
    def _stamp(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def sha256(self, path: Path) -> str:
        """The file's content hash: remembered when its stat is unchanged, else read (and remembered if settled)."""
        key = str(Path(path).absolute())
        before = os.stat(path)
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == self._stamp(before):
            return str(entry[3])
        sha = sha256_file(path)
        after = os.stat(path)
        with self._lock:
            self.hashed += 1
            if self._stamp(after) == self._stamp(before) and time.time_ns() - after.st_mtime_ns > RACY_NS:
                self._entries[key] = [*self._stamp(after), sha]
                self._dirty = True
        return sha

    def remembered(self) -> dict[str, list]:
        """The entries (absolute path -> [size, mtime_ns, inode, sha256]), to merge into another cache."""
        with self._lock:
            return dict(self._entries)

    def remember(self, entries: dict[str, list]) -> None:
        """Take entries hashed elsewhere (a cluster worker): a later lookup still checks each file's stat."""
        with self._lock:
            self._entries.update(entries)
            self._dirty = self._dirty or bool(entries)

    def save(self) -> None:
        """Write the remembered hashes atomically (no-op when nothing changed or no path was given)."""
        if self.path is None or not self._dirty:
            return
        import json

        from ingestion.atomic_files import atomic_write_text

        atomic_write_text(self.path, json.dumps(self._entries, separators=(",", ":")))
        self._dirty = False
