"""Anchoring the audit trail's head outside the home, in a file that is only ever appended to.

Why: the trail's own head file lives beside it, so someone who can write the home
can cut entries off the end and rewrite the head to match. An anchor line
(``trail``, ``seq``, ``hash``, ``kid``, ``at``) appended to a sink the home's
writers cannot rewrite (a file on another volume or owned by another account,
ideally made append-only with ``chattr +a``) fixes a point the trail must still
reach, with the hash it must still have there. Anchors from several homes may
share one sink; each line names its trail by absolute path.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path


def trail_name(trail: Path) -> str:
    """How an anchor line names its trail (the absolute path, so several homes can share a sink)."""
    return str(Path(trail).expanduser().resolve())


def append_anchor(sink: Path, trail: Path, seq: int, digest: str, kid: str | None) -> dict:
    """Append one anchor line for ``trail`` at ``seq`` (O_APPEND, fsync); returns it."""
    line = {"trail": trail_name(trail), "seq": seq, "hash": digest, "kid": kid,
            "at": datetime.now(UTC).isoformat(timespec="seconds")}
    sink = Path(sink)
    sink.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return line


def read_anchors(sink: Path, trail: Path) -> list[dict]:
    """Every parseable anchor of ``trail`` in ``sink`` (oldest first); [] when the sink does not exist."""
    sink = Path(sink)
    if not sink.is_file():
        return []
    name, out = trail_name(trail), []
    for text in sink.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
            if line.get("trail") == name:
                out.append({"seq": int(line["seq"]), "hash": str(line["hash"]), "kid": line.get("kid")})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
    return out
