"""Authorised re-identification: the pseudonym -> original id (MRN) map, encrypted with a site key.

Pseudonyms are keyed hashes, so nobody can turn one back into an MRN; a
clinician acting on a prediction must. Ingestion, the only place that sees
original ids, writes each pseudonym's MRN into one Fernet token
(``<home>/reidentify.fernet``: AES-128-CBC + HMAC-SHA256, from ``cryptography``),
never into the manifest, arrays, MLflow or logs. The key lives outside the home
(environment or a key file), so a copy of the home alone reveals nothing. Without
a key no map is written and the platform stays pseudonymous only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from filelock import FileLock

from ingestion.cohort import read_cohort
from ingestion.atomic_files import atomic_path

MAP_VERSION = 1


class ReidKeyError(Exception):
    """The key does not open the map (wrong, rotated away, or damaged): nothing is revealed."""


def generate_key() -> bytes:
    """A fresh Fernet key (URL-safe base64, 32 random bytes) to keep outside the home."""
    return Fernet.generate_key()


def _fernet(key: bytes | str) -> Fernet:
    try:
        return Fernet(key.encode("ascii") if isinstance(key, str) else key)
    except (ValueError, TypeError) as exc:
        raise ReidKeyError("the re-identification key is not a Fernet key (32 url-safe base64 bytes); "
                           "make one with `clinfuse users keygen`") from exc


def read_map(path: Path, key: bytes | str) -> dict[str, str]:
    """The whole pseudonym -> MRN map; {} when none was written; ReidKeyError when ``key`` does not open it."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        payload = json.loads(_fernet(key).decrypt(path.read_bytes()))
    except InvalidToken:
        raise ReidKeyError(f"{path.name} cannot be opened with this key (wrong or rotated key, or a damaged "
                           "file); see docs/OPERATIONS.md, 'Re-identification key'") from None
    return dict(payload["map"])


def _write(path: Path, mapping: dict[str, str], key: bytes | str) -> None:
    blob = json.dumps({"version": MAP_VERSION, "map": mapping}, sort_keys=True).encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(_fernet(key).encrypt(blob))


def add_to_map(path: Path, pairs: Iterable[tuple[str, str]], key: bytes | str) -> int:
    """Merge (pseudonym, MRN) pairs into the map at ``path``; returns how many pseudonyms it now holds.

    Read-modify-write under a file lock, so concurrent ingests keep every pair.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=60):
        mapping = read_map(path, key)
        before = dict(mapping)
        mapping.update({str(p): str(o).strip() for p, o in pairs})
        if mapping != before or not path.exists():
            _write(path, mapping, key)
    return len(mapping)


def reveal(path: Path, key: bytes | str, pseudonym: str) -> str | None:
    """The original id of ``pseudonym``, or None when the map does not hold it."""
    return read_map(path, key).get(pseudonym)


def rotate_key(path: Path, old_key: bytes | str, new_key: bytes | str) -> int:
    """Re-encrypt the map under ``new_key`` (MultiFernet.rotate); returns the number of pseudonyms kept."""
    path = Path(path)
    with FileLock(str(path) + ".lock", timeout=60):
        try:
            token = MultiFernet([_fernet(new_key), _fernet(old_key)]).rotate(path.read_bytes())
        except InvalidToken:
            raise ReidKeyError(f"{path.name} cannot be opened with the old key; nothing was rotated") from None
        with atomic_path(path) as tmp:
            tmp.write_bytes(token)
    return len(read_map(path, new_key))


def record_cohort(cohort_csv: Path, secret: str, map_path: Path, key: bytes | str) -> int:
    """Add every valid cohort row's (pseudonym, MRN) to the map; returns the map's size.

    Reads the cohort with the same rules as ingest (:func:`ingestion.cohort.read_cohort`),
    so the pseudonyms match the manifest's and rows set aside there are left out here too.
    """
    table = read_cohort(Path(cohort_csv), secret)
    return add_to_map(map_path, table.originals, key)
