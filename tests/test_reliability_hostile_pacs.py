"""A DICOMweb server that lies: each lie ends the pull with a reason, bounded bytes and time, cursor intact.

The server (tests/corpus/hostile_dicomweb.py, http.server on 127.0.0.1, a free port) answers QIDO-RS
honestly with two series; the first is served properly, the second lies. The pull must stage and
record the first, then stop on the second with a reason naming the lie, having read a bounded number
of bytes within its deadline, staging nothing of the lying series and never recording it in the cursor.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ingestion.pacs import PacsError, connect, pull
from ingestion.pacs_cursor import load_cursor, uid_token
from ingestion.pacs_stream import DownloadLimits
from tests.corpus.hostile_dicomweb import GOOD, LIAR, STUDY, LyingDicomweb

pytestmark = [pytest.mark.server]

LIMITS = DownloadLimits(max_instance_bytes=1 << 20, max_series_bytes=16 << 20, deadline_s=3.0)
SOCKET_TIMEOUT_S = 2.0
ELAPSED_BOUND_S = 30.0
"""Deadline + one socket timeout + slack for a loaded machine: a lie must never hold the pull longer."""

EXPECTED = {
    "wrong content type": r"content type is 'text/html",
    "truncated multipart": r"truncated",
    "huge Content-Length": r"announces 1,000,000,000,000 bytes",
    "slow drip": r"deadline",
    "endless instance": r"limit per instance",
}


def pull_from(server: LyingDicomweb, pacs_dir: Path) -> tuple[str, float]:
    client = connect(server.url, timeout_s=SOCKET_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(PacsError) as failure:
        pull(client, server.url, pacs_dir, limits=LIMITS)
    return str(failure.value), time.monotonic() - started


@pytest.mark.parametrize("lie", list(EXPECTED))
def test_a_lying_answer_stops_the_pull_bounded_and_keeps_the_cursor_honest(tmp_path: Path, lie: str) -> None:
    with LyingDicomweb(lie) as server:
        reason, elapsed = pull_from(server, tmp_path)
        sent = dict(server.sent)
    assert re.search(EXPECTED[lie], reason), reason
    assert "a series could not be downloaded" in reason and "1 series pulled before the failure" in reason
    assert elapsed < ELAPSED_BOUND_S, f"{lie}: the pull took {elapsed:.1f} s"
    assert sent[LIAR] <= LIMITS.max_series_bytes + (8 << 20), f"{lie}: {sent[LIAR]:,} bytes sent"
    cursor = load_cursor(tmp_path / "cursor.json", server.url)
    assert set(cursor.series) == {GOOD}, "only the series staged whole is recorded"
    study = tmp_path / "staging" / uid_token(STUDY)
    assert len(list((study / uid_token(GOOD)).glob("*.dcm"))) == 2
    assert not (study / uid_token(LIAR)).exists(), "nothing of the lying series is staged"
    assert not any((tmp_path / "tmp").iterdir()), "no private download folder is left behind"


def test_the_drip_is_stopped_by_the_deadline_not_the_socket_timeout(tmp_path: Path) -> None:
    with LyingDicomweb("slow drip") as server:
        reason, elapsed = pull_from(server, tmp_path)
        dripped = server.sent[LIAR]
    assert "3 s deadline" in reason
    assert elapsed >= LIMITS.deadline_s, "stopped by the deadline, which had to pass first"
    assert dripped < 2000, f"{dripped} bytes dripped: each arrived well within the socket timeout"
