"""The bounded WADO-RS reader on answers delivered in every possible split (no server needed)."""

from __future__ import annotations

import pytest

from ingestion.pacs_stream import DownloadError, DownloadLimits, iter_instances

BOUNDARY = "b0undary"
PARTS = [b"first instance \r\n-- not a boundary", b"", b"third\r\n\r\nwith a blank line inside"]


class _Raw:
    """``response.raw`` handing out the body in fixed pieces, like a socket would."""

    def __init__(self, body: bytes, piece: int) -> None:
        self.body, self.piece, self.at = body, piece, 0

    def read1(self, n: int) -> bytes:
        chunk = self.body[self.at:self.at + min(n, self.piece)]
        self.at += len(chunk)
        return chunk


class _Response:
    def __init__(self, body: bytes, content_type: str, piece: int, **headers: str) -> None:
        self.raw = _Raw(body, piece)
        self.headers = {"Content-Type": content_type, **headers}


def _body(parts: list[bytes], preamble: bytes = b"", headers: bool = True) -> bytes:
    head = b"Content-Type: application/dicom\r\n\r\n" if headers else b"\r\n"
    return preamble + b"".join(b"--" + BOUNDARY.encode() + b"\r\n" + head + p + b"\r\n" for p in parts) \
        + b"--" + BOUNDARY.encode() + b"--\r\nepilogue"


CT = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 16, 1 << 16])
def test_parts_come_out_whole_however_the_bytes_arrive(piece: int) -> None:
    assert list(iter_instances(_Response(_body(PARTS, b"preamble\r\n"), CT, piece), DownloadLimits())) == PARTS
    assert list(iter_instances(_Response(_body(PARTS, headers=False), CT, piece), DownloadLimits())) == PARTS


def test_a_single_application_dicom_answer_is_one_instance() -> None:
    got = list(iter_instances(_Response(b"DICM" * 10, "application/dicom", 5, **{"Content-Length": "40"}),
                              DownloadLimits()))
    assert got == [b"DICM" * 10]


def test_a_short_single_answer_is_truncated() -> None:
    with pytest.raises(DownloadError, match="truncated"):
        list(iter_instances(_Response(b"DICM", "application/dicom", 5, **{"Content-Length": "40"}), DownloadLimits()))


def test_an_unclosed_multipart_is_truncated_and_says_how_many_parts_came() -> None:
    body = _body(PARTS)
    with pytest.raises(DownloadError, match="after 2 complete instance"):
        list(iter_instances(_Response(body[: body.rfind(b"third") + 3], CT, 4), DownloadLimits()))


def test_compressed_or_boundaryless_answers_are_refused() -> None:
    with pytest.raises(DownloadError, match="gzip-encoded"):
        list(iter_instances(_Response(b"", CT, 4, **{"Content-Encoding": "gzip"}), DownloadLimits()))
    with pytest.raises(DownloadError, match="boundary"):
        list(iter_instances(_Response(b"", "multipart/related", 4), DownloadLimits()))


def test_size_caps_stop_the_read() -> None:
    big = _body([b"x" * 300_000])
    with pytest.raises(DownloadError, match="limit per instance"):
        list(iter_instances(_Response(big, CT, 4096), DownloadLimits(max_instance_bytes=100_000)))
    with pytest.raises(DownloadError, match="limit per series"):
        list(iter_instances(_Response(big, CT, 4096), DownloadLimits(max_series_bytes=200_000)))
