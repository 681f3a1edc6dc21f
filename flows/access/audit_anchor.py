"""Anchoring the audit trail's head outside the home, in a file that is only ever appended to.

Why: the trail's own head file lives beside it, so someone who can write the home
can cut entries off the end and rewrite the head to match. An anchor line
(``trail``, ``seq``, ``hash``, ``kid``, ``at``) appended to a sink the home's
writers cannot rewrite (a file on another volume or owned by another account,
ideally made append-only with ``chattr +a``) fixes a point the trail must still
reach, with the hash it must still have there. Anchors from several homes may
share one sink; each line names its trail by absolute path. The same line can
also go to syslog (``/dev/log`` or a remote ``HOST:PORT`` over UDP, facility
authpriv), which hands it to another machine's append-only log; only the file
sink is read back by ``verify``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from datetime import UTC, datetime
from pathlib import Path


def trail_name(trail: Path) -> str:
    """How an anchor line names its trail (the absolute path, so several homes can share a sink)."""
    return str(Path(trail).expanduser().resolve())


def anchor_line(trail: Path, seq: int, digest: str, kid: str | None) -> dict:
    """The anchor of ``trail`` at ``seq``: what every sink receives."""
    return {"trail": trail_name(trail), "seq": seq, "hash": digest, "kid": kid,
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


def append_anchor(sink: Path, line: dict) -> dict:
    """Append ``line`` to the file ``sink`` (O_APPEND, fsync, created 0600); returns it."""
    sink = Path(sink)
    sink.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return line


def syslog_anchor(address: str, line: dict) -> None:
    """Send one anchor line to syslog at ``address`` (a socket path such as /dev/log, or HOST:PORT over UDP).

    Raises OSError when a local socket cannot be reached, so a configured sink that is missing is noticed.
    """
    host, _, port = address.rpartition(":")
    target: str | tuple[str, int] = (host, int(port)) if not address.startswith("/") and port.isdigit() else address
    handler = logging.handlers.SysLogHandler(address=target, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
    try:
        message = "clinfuse-audit-anchor: " + json.dumps(line, sort_keys=True)
        data = f"<{handler.encodePriority(handler.facility, 'info')}>{message}\0".encode("utf-8")
        if handler.unixsocket:
            handler.socket.send(data)
        else:
            handler.socket.sendto(data, target)
    finally:
        handler.close()


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
