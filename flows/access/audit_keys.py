"""The audit trail's HMAC keys: the current one that signs new entries, and older ones kept to verify.

Why a key: a plain hash chain proves nothing against someone who can write the
home, because they can recompute every hash after an edit. With HMAC-SHA256 under
a key kept outside the home (environment or a key file, like the
re-identification key), rewriting the trail consistently needs the key too.
Each keyed entry names its key by ``kid`` (the first 16 hex digits of the key's
SHA-256, which reveals nothing usable about the key), so after a rotation the
old entries still verify against the retired key while new ones use the new key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

KEY_BYTES = 32


def key_id(key: bytes) -> str:
    """Public name of ``key`` recorded in each entry it signs."""
    return hashlib.sha256(b"clinfuse-audit-kid:" + key).hexdigest()[:16]


@dataclass(frozen=True)
class AuditKeys:
    """``current`` signs new entries (None: unkeyed, legacy); every key in ``ring`` can verify."""

    current: bytes | None = None
    retired: tuple[bytes, ...] = field(default=())

    @property
    def current_id(self) -> str | None:
        return key_id(self.current) if self.current else None

    @property
    def ring(self) -> dict[str, bytes]:
        keys = [k for k in (self.current, *self.retired) if k]
        return {key_id(k): k for k in keys}

    def mac(self, kid: str, blob: bytes) -> str | None:
        """HMAC-SHA256 of ``blob`` under the key named ``kid``; None when that key is not configured."""
        key = self.ring.get(kid)
        return hmac.new(key, blob, hashlib.sha256).hexdigest() if key is not None else None


def generate_key() -> bytes:
    """A fresh random audit key (URL-safe text, 256 bits) to keep outside the home."""
    return secrets.token_urlsafe(KEY_BYTES).encode("ascii")


def write_new_key_file(out: Path, home: Path, key: bytes) -> Path:
    """Create ``out`` (mode 0600) holding ``key``; ValueError inside ``home`` or when ``out`` exists.

    The key must not live with the data it protects: whoever copies or writes the home
    must not get the key with it.
    """
    out = Path(out).expanduser().resolve()
    if out.is_relative_to(Path(home).expanduser().resolve()):
        raise ValueError(f"{out} is inside CLINFUSE_HOME; keep the key apart from the data")
    if out.exists():
        raise ValueError(f"{out} exists; refusing to overwrite a key")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return out
