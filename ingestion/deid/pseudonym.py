"""Keyed pseudonyms: the only patient identifier allowed past ingestion."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import tempfile
from pathlib import Path


PSEUDONYM_PATTERN = r"^P[0-9a-f]{12}$"
"""What :func:`pseudonymise` returns: ``P`` and 12 hex digits (schemas and checks use this one pattern)."""
PSEUDONYM_RE = re.compile(PSEUDONYM_PATTERN)


def is_pseudonym(value: object) -> bool:
    """True when ``value`` already is a pseudonym (so it must not be pseudonymised again)."""
    return bool(PSEUDONYM_RE.match(str(value)))


def pseudonymise(original_id: str, secret: str) -> str:
    """Return a stable pseudonym for ``original_id``.

    A keyed HMAC (not a bare hash) so that someone without the site secret
    cannot rebuild the mapping by hashing candidate MRNs.
    """
    digest = hmac.new(secret.encode("utf-8"), original_id.strip().encode("utf-8"), hashlib.sha256)
    return "P" + digest.hexdigest()[:12]


def date_shift_days(original_id: str, secret: str) -> int:
    """Days (0-364) to shift every date of this patient back by.

    Derived from the same keyed hash as the pseudonym, with a distinct label, so
    all sources of one patient (DICOM, EEG, notes) shift by the same offset and
    intervals between events survive, while the offset cannot be recovered
    without the site secret.
    """
    digest = hmac.new(
        secret.encode("utf-8"), b"date-shift:" + original_id.strip().encode("utf-8"), hashlib.sha256
    )
    return int.from_bytes(digest.digest()[:8], "big") % 365


SECRET_BYTES = 32
"""256 random bits: far beyond brute force, unlike any secret a person would type."""


def load_or_create_secret(path: Path) -> str:
    """The site secret stored at ``path``, generated there on first use (file mode 0600).

    There is no built-in default: a constant published in the code would let
    anyone rebuild pseudonyms by hashing candidate MRNs. Creation is atomic
    (written to a private temporary file, then hard-linked into place, which
    fails if another process got there first), so concurrent first runs agree
    on one secret. Raises ``ValueError`` for an empty or unreadable secret
    file rather than silently making a new one, which would re-key every
    pseudonym.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        finally:
            os.unlink(tmp)
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"pseudonym secret file {path} is empty; restore it from backup or set "
                         "CLINFUSE_PSEUDONYM_SECRET (a new secret re-keys every pseudonym)")
    return value


def file_mode(path: Path) -> str:
    """``0600``-style permission bits of ``path`` (for ``clinfuse doctor``)."""
    return f"{stat.S_IMODE(Path(path).stat().st_mode):04o}"
