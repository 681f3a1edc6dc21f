"""Authorised re-identification: the encrypted pseudonym -> MRN map written from the cohort at ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.deid.pseudonym import pseudonymise
from ingestion.deid.reidentify import ReidKeyError, generate_key, read_map, record_cohort, reveal, rotate_key

SECRET = "site-secret-for-test"


def _cohort(path: Path) -> Path:
    path.write_text("patient_id,label,age\nMRN-00012345,1,61\nMRN-00067890,0,47\n,1,50\nMRN-00067890,1,40\n"
                    "MRN-00055555,,33\n")
    return path


def test_map_opens_only_with_the_key(tmp_path: Path) -> None:
    key, map_path = generate_key(), tmp_path / "home" / "reidentify.fernet"
    n = record_cohort(_cohort(tmp_path / "cohort.csv"), SECRET, map_path, key)
    assert n == 2  # the blank id and both copies of the duplicated id were set aside, as ingest does
    pid = pseudonymise("MRN-00012345", SECRET)
    assert reveal(map_path, key, pid) == "MRN-00012345"
    assert reveal(map_path, key, pseudonymise("MRN-00067890", SECRET)) is None
    raw = map_path.read_bytes()
    assert b"MRN-" not in raw and pid.encode() not in raw  # neither ids nor pseudonyms readable in the file
    with pytest.raises(ReidKeyError, match="cannot be opened"):
        read_map(map_path, generate_key())
    with pytest.raises(ReidKeyError, match="not a Fernet key"):
        read_map(map_path, b"not-a-key")
    # Re-running ingest (same cohort, more rows) merges; a rotated key opens it, the old one no longer does.
    (tmp_path / "more.csv").write_text("patient_id,label\nMRN-00077777,0\n")
    assert record_cohort(tmp_path / "more.csv", SECRET, map_path, key) == 3
    new = generate_key()
    assert rotate_key(map_path, key, new) == 3
    assert reveal(map_path, new, pid) == "MRN-00012345"
    with pytest.raises(ReidKeyError):
        read_map(map_path, key)


def test_key_file_inside_home_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.settings import Settings

    home = tmp_path / "home"
    (home).mkdir()
    inside, outside = home / "reid.key", tmp_path / "keys" / "reid.key"
    outside.parent.mkdir()
    key = generate_key()
    inside.write_bytes(key)
    outside.write_bytes(key + b"\n")
    monkeypatch.delenv("CLINFUSE_REID_KEY", raising=False)
    assert Settings(home=home).reid_key_bytes() is None
    assert Settings(home=home, reid_key_file=outside).reid_key_bytes() == key
    with pytest.raises(ValueError, match="inside CLINFUSE_HOME"):
        Settings(home=home, reid_key_file=inside).reid_key_bytes()
