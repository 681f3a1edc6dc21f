"""Content hashes that make ingest idempotent: files, zip members, multi-file items, unreadable files."""

from __future__ import annotations

import hashlib
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
