"""Read a WADO-RS answer with bounds: a size cap, a total deadline, and a multipart parser that never trusts it.

Why: a PACS (or anything answering at its address) can lie. A socket timeout
alone does not stop a server that drips a byte a second forever, a
``Content-Length`` can announce a terabyte, a ``multipart/related`` answer can
stop mid-part, and a "DICOM" answer can be an HTML login page. Each of these
must end the series' download with a reason, having read a bounded number of
bytes in a bounded time, so the caller neither stages a partial series nor
advances its cursor past it.

The body is read with ``read1`` (whatever bytes have arrived, at most one
chunk), so the deadline is checked after every arrival: a download ends at
most one socket timeout after its deadline. Parts are held in memory one at a
time, each at most ``max_instance_bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds on one series' download (defaults fit a 2,000-slice CT series many times over)."""

    max_instance_bytes: int = 512 << 20
    """Largest single instance (one part) held in memory."""
    max_series_bytes: int = 8 << 30
    """Most bytes read for one series (announced or received)."""
    deadline_s: float = 1800.0
    """Longest one series' download may take, however the bytes arrive."""
    chunk_bytes: int = 1 << 16


class DownloadError(RuntimeError):
    """The answer broke a bound or the protocol; the message says which, with the bytes read and time taken."""


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _boundary(content_type: str) -> bytes | None:
    for item in content_type.split(";")[1:]:
        attr, _, value = item.strip().partition("=")
        if attr.lower() == "boundary" and value.strip('"'):
            return value.strip().strip('"').encode("latin-1")
    return None


class _Budget:
    """Counts bytes and time against the limits; raises :class:`DownloadError` when one is passed."""

    def __init__(self, limits: DownloadLimits) -> None:
        self.limits, self.started, self.read = limits, time.monotonic(), 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def take(self, n: int) -> None:
        self.read += n
        if self.read > self.limits.max_series_bytes:
            raise DownloadError(f"the answer passed the {_mb(self.limits.max_series_bytes)} limit per series "
                                f"({_mb(self.read)} read in {self.elapsed():.1f} s); the download was stopped")
        if self.elapsed() > self.limits.deadline_s:
            raise DownloadError(f"the answer did not finish within the {self.limits.deadline_s:g} s deadline "
                                f"({_mb(self.read)} read in {self.elapsed():.1f} s: a stalled or dripping server); "
                                "the download was stopped")


def _chunks(response: Any, budget: _Budget) -> Iterator[bytes]:
    """The body's bytes as they arrive, counted against ``budget``; a broken connection is a DownloadError."""
    raw = response.raw
    while True:
        try:
            chunk = raw.read1(budget.limits.chunk_bytes)
        except Exception as exc:  # noqa: BLE001 - urllib3/http.client raise many types for a cut connection
            raise DownloadError(f"the connection broke after {_mb(budget.read)} ({type(exc).__name__}: "
                                f"{str(exc)[:120]}); the answer is truncated") from None
        if not chunk:
            return
        budget.take(len(chunk))
        yield chunk


def _body(part: bytes) -> bytes:
    """A part's body: after its header block (a part without headers starts with an empty line)."""
    if part.startswith(b"\r\n"):
        return part[2:]
    head_end = part.find(b"\r\n\r\n")
    if head_end < 0:
        raise DownloadError("a multipart part has no end of headers; the answer is malformed")
    return part[head_end + 4:]


def _multipart(chunks: Iterator[bytes], boundary: bytes, limits: DownloadLimits, budget: _Budget) -> Iterator[bytes]:
    """Bodies of a ``multipart/related`` stream, one at a time; refuses an unclosed or oversized stream."""
    delim = b"\r\n--" + boundary
    buf = bytearray(b"\r\n")  # so the first boundary line matches the same delimiter as the others
    scan, in_part, parts = 0, False, 0
    for chunk in chunks:
        buf += chunk
        while True:
            i = buf.find(delim, scan)
            if i < 0 or len(buf) < i + len(delim) + 2:
                scan = max(0, len(buf) - len(delim) - 2) if i < 0 else i
                if len(buf) > limits.max_instance_bytes + 65536:
                    raise DownloadError(
                        f"{'instance ' + str(parts + 1) if in_part else 'the answer before any part'} passed "
                        f"the {_mb(limits.max_instance_bytes)} limit per instance ({_mb(budget.read)} read); "
                        "the download was stopped")
                break
            if in_part:
                parts += 1
                yield _body(bytes(buf[:i]))
            closing = bytes(buf[i + len(delim):i + len(delim) + 2]) == b"--"
            del buf[:i + len(delim) + 2]
            scan, in_part = 0, True
            if closing:
                return
    raise DownloadError(f"the multipart answer ended before its closing boundary after {parts} complete "
                        f"instance(s) and {_mb(budget.read)} (truncated); the series was not staged")


def iter_instances(response: Any, limits: DownloadLimits) -> Iterator[bytes]:
    """Each instance of a WADO-RS answer (``requests`` response opened with ``stream=True``), within ``limits``.

    Raises :class:`DownloadError` for a content type that is not DICOM, a compressed transfer encoding,
    an announced length over the cap, a truncated or malformed multipart body, an instance or series
    over its cap, or a download past its deadline.
    """
    budget = _Budget(limits)
    content_type = response.headers.get("Content-Type", "")
    media = content_type.split(";")[0].strip().lower()
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(f"the answer is {encoding}-encoded although identity was asked for; not read")
    announced = response.headers.get("Content-Length")
    if announced is not None:
        try:
            length = int(announced)
        except ValueError:
            raise DownloadError(f"the answer's Content-Length {announced[:40]!r} is not a number; not read") from None
        if length > limits.max_series_bytes:
            raise DownloadError(f"the answer announces {length:,} bytes, more than the "
                                f"{_mb(limits.max_series_bytes)} limit per series; not downloaded")
    if media == "application/dicom":
        body = bytearray()
        for chunk in _chunks(response, budget):
            body += chunk
            if len(body) > limits.max_instance_bytes:
                raise DownloadError(f"the instance passed the {_mb(limits.max_instance_bytes)} limit per instance")
        if announced is not None and len(body) < int(announced):
            raise DownloadError(f"the answer ended after {_mb(len(body))} of the {int(announced):,} announced "
                                "(truncated); the series was not staged")
        yield bytes(body)
        return
    boundary = _boundary(content_type) if media == "multipart/related" else None
    if boundary is None:
        raise DownloadError(f"the answer's content type is {content_type[:80]!r}, not multipart/related DICOM "
                            "with a boundary (an error page or a misconfigured server?); not read")
    yield from _multipart(_chunks(response, budget), boundary, limits, budget)
