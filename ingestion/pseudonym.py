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
