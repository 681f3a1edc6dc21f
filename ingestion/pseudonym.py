"""Keyed pseudonyms: the only patient identifier allowed past ingestion."""

from __future__ import annotations

import hashlib
import hmac


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
