"""A loopback DICOMweb server that lies: the test (or benchmark) picks how, and it counts what it sent.

QIDO-RS answers honestly: one study holding two series, ``GOOD`` (sorted first, served as a proper
``multipart/related`` answer of two CT instances) and ``LIAR`` (served per :data:`LIES`). WADO-RS for
``LIAR`` then lies: a wrong content type, a multipart body cut after one and a half parts, a
Content-Length of a terabyte, a slow drip (a byte every 50 ms, forever), or an endless instance.
The server binds 127.0.0.1 on a free port and runs in a thread; ``sent[series]`` is the body bytes it
managed to write, so a test can bound what the client read.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from tests.ingestion.dicom_factory import ct_slice_dataset

STUDY = "1.2.826.0.1.3680043.8.498.777"
GOOD = "1.2.826.0.1.3680043.8.498.777.1"
LIAR = "1.2.826.0.1.3680043.8.498.777.2"
BOUNDARY = "clinfuse-test-boundary"


def instance(k: int, series: str) -> bytes:
    """A real CT slice (Part 10 bytes) of ``series``."""
    ds = ct_slice_dataset(np.full((16, 16), 900 + k, np.int16), (0.0, 0.0, 2.5 * k), instance=k + 1,
                          patient_id="MRN97000001", study_uid=STUDY, series_uid=series)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart(parts: list[bytes], close: bool = True) -> bytes:
    body = b"".join(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts)
    return body + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _qido(tags: dict[str, tuple[str, object]]) -> dict:
    return {tag: {"vr": vr, "Value": [value]} for tag, (vr, value) in tags.items()}


class LyingDicomweb:
    """The server; ``lie`` is a key of :data:`LIES`. Use as a context manager."""

    def __init__(self, lie: str) -> None:
        self.lie, self.sent, self.stop = lie, {GOOD: 0, LIAR: 0}, threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer._route(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/dicom-web"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LyingDicomweb":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def _json(self, h: BaseHTTPRequestHandler, payload: list) -> None:
        body = json.dumps(payload).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/dicom+json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _route(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        if re.fullmatch(r"/dicom-web/studies", path):
            offset = int((re.search(r"offset=(\d+)", h.path) or [0, "0"])[1])
            self._json(h, [] if offset else [_qido({"0020000D": ("UI", STUDY), "00080020": ("DA", "20240503")})])
        elif re.fullmatch(r"/dicom-web/studies/[\d.]+/series", path):
            offset = int((re.search(r"offset=(\d+)", h.path) or [0, "0"])[1])
            self._json(h, [] if offset else [
                _qido({"0020000E": ("UI", uid), "00080060": ("CS", "CT"), "00201209": ("IS", 2)})
                for uid in (GOOD, LIAR)])
        elif (m := re.fullmatch(r"/dicom-web/studies/[\d.]+/series/([\d.]+)", path)):
            series = m[1]
            if series == GOOD:
                self._send(h, series, 200, MULTIPART, multipart([instance(0, GOOD), instance(1, GOOD)]))
            else:
                try:
                    LIES[self.lie](self, h)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: what the test wants
        else:
            h.send_error(404)

    def _send(self, h: BaseHTTPRequestHandler, series: str, code: int, content_type: str, body: bytes,
              length: int | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)
        self.sent[series] += len(body)


def _wrong_type(server: LyingDicomweb, h: BaseHTTPRequestHandler) -> None:
    server._send(h, LIAR, 200, "text/html; charset=utf-8", b"<html><body>Please sign in</body></html>")


def _truncated(server: LyingDicomweb, h: BaseHTTPRequestHandler) -> None:
    whole = multipart([instance(0, LIAR), instance(1, LIAR)])
    cut = whole[: len(whole) * 3 // 4]  # one and a half parts, no closing boundary
    h.send_response(200)
    h.send_header("Content-Type", MULTIPART)
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(cut)
    server.sent[LIAR] += len(cut)
    h.close_connection = True


def _huge_length(server: LyingDicomweb, h: BaseHTTPRequestHandler) -> None:
    server._send(h, LIAR, 200, MULTIPART, multipart([instance(0, LIAR)]), length=10**12)
    h.close_connection = True


def _drip(server: LyingDicomweb, h: BaseHTTPRequestHandler) -> None:
    body = multipart([instance(0, LIAR), instance(1, LIAR)])
    h.send_response(200)
    h.send_header("Content-Type", MULTIPART)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    for i in range(len(body)):  # a byte every 50 ms: each read sees data, so no socket timeout ever fires
        if server.stop.is_set():
            return
        h.wfile.write(body[i:i + 1])
        h.wfile.flush()
        server.sent[LIAR] += 1
        time.sleep(0.05)


def _endless(server: LyingDicomweb, h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", MULTIPART)
    h.send_header("Connection", "close")
    h.end_headers()
    head = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
    h.wfile.write(head)
    block = bytes(1 << 16)
    while not server.stop.is_set():  # one instance that never ends, as fast as the client reads
        h.wfile.write(block)
        server.sent[LIAR] += len(block)
    h.close_connection = True


LIES: dict[str, Callable[[LyingDicomweb, BaseHTTPRequestHandler], None]] = {
    "wrong content type": _wrong_type,
    "truncated multipart": _truncated,
    "huge Content-Length": _huge_length,
    "slow drip": _drip,
    "endless instance": _endless,
}
"""How the server answers WADO-RS for the ``LIAR`` series."""
