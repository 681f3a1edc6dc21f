"""A warm re-run of ingest's source walk reads no unchanged file; content hashes still decide what is new."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingestion.driver.hashing import HashCache, sha256_file
from ingestion.driver.sources import KnownItem, discover_units
from ingestion.driver.worker import default_readers
from tests.ingestion.dicom_factory import write_ct_series
from tests.ingestion.source_factory import write_note

HOUR_AGO_NS = time.time_ns() - 3600 * 1_000_000_000


def _age(root: Path) -> None:
    """Date every file an hour back, as a cohort export that has settled (the cache skips fresh writes)."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(HOUR_AGO_NS, HOUR_AGO_NS))


class OpenedFiles:
    """Every file opened under ``root`` by this process (a ``sys.audit`` hook; hooks cannot be removed, so it mutes)."""

    def __init__(self, root: Path) -> None:
        self.root, self.paths, self.active = str(root), [], False
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and isinstance(args[0], str | Path) and str(args[0]).startswith(self.root):
            self.paths.append(str(args[0]))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_ct_series(root / "p1" / "ct", np.zeros((4, 16, 16), np.int16))
    write_note(root / "p1" / "note.txt", "MRN00000001", "No acute findings.")
    _age(root)
    return root


def test_unchanged_files_are_not_read_and_changed_ones_are(tmp_path: Path) -> None:
    f = write_note(tmp_path / "a.txt", "MRN1", "first")
    _age(tmp_path)
    cache = HashCache(tmp_path / "hashes.json")
    first = cache.sha256(f)
    cache.save()
    again = HashCache(tmp_path / "hashes.json")
    assert again.sha256(f) == first and again.hashed == 0
    os.utime(f, ns=(HOUR_AGO_NS + 10**9, HOUR_AGO_NS + 10**9))  # touched, content identical
    assert again.sha256(f) == first and again.hashed == 1
    f.write_text("different content")
    assert again.sha256(f) == sha256_file(f) != first and again.hashed == 2
    assert again.sha256(f) == sha256_file(f) and again.hashed == 3  # just written: not trusted yet (racy)


def test_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    f = write_note(tmp_path / "a.txt", "MRN1", "x")
    (tmp_path / "hashes.json").write_text("{not json")
    assert HashCache(tmp_path / "hashes.json").sha256(f) == sha256_file(f)


def test_warm_walk_opens_no_source_file(source: Path, tmp_path: Path) -> None:
    cache, readers = tmp_path / "home" / "source_hashes.json", default_readers()
    cold = discover_units(source, readers, hash_cache=cache)
    assert {u.kind for u in cold} == {"ct", "note"} and cache.is_file()
    known = [KnownItem(u.kind, u.source_uri, u.files, u.item_sha) for u in cold]
    opened = OpenedFiles(source)
    opened.active = True
    try:
        warm = discover_units(source, readers, known=known, hash_cache=cache)
    finally:
        opened.active = False
    assert opened.paths == [], f"a warm walk opened {opened.paths}"
    assert sorted((u.source_uri, u.item_sha, u.files) for u in warm) == \
        sorted((u.source_uri, u.item_sha, u.files) for u in cold)
    without_cache = discover_units(source, readers, known=known)
    assert sorted(u.item_sha for u in without_cache) == sorted(u.item_sha for u in warm)
