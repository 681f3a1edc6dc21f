"""Pull from a lying loopback DICOMweb server in this process and report what happened as JSON.

``python -m tests.corpus.pull_lie LIE WORK OUT.json``: starts :class:`LyingDicomweb` with ``LIE``, pulls
into ``WORK/pacs`` with the test limits, and writes the reason, elapsed time, bytes the server sent
for the lying series, and whether the cursor and staging hold exactly the good series. Run under
:mod:`tests.corpus.measure` so its peak memory is the kernel's figure for a whole process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ingestion.pacs import PacsError, connect, pull
from ingestion.pacs_cursor import load_cursor, uid_token
from ingestion.pacs_stream import DownloadLimits
from tests.corpus.hostile_dicomweb import GOOD, LIAR, STUDY, LyingDicomweb

LIMITS = DownloadLimits(max_instance_bytes=1 << 20, max_series_bytes=16 << 20, deadline_s=3.0)
SOCKET_TIMEOUT_S = 2.0


def pull_lie(lie: str, pacs_dir: Path) -> dict:
    """One pull against the ``lie`` server: reason, seconds, bytes sent, and what the cursor/staging hold."""
    with LyingDicomweb(lie) as server:
        client = connect(server.url, timeout_s=SOCKET_TIMEOUT_S)
        started = time.monotonic()
        try:
            pull(client, server.url, pacs_dir, limits=LIMITS)
            reason = "pull completed (the lie was not detected)"
        except PacsError as exc:
            reason = str(exc)
        elapsed = time.monotonic() - started
        sent = server.sent[LIAR]
        url = server.url
    cursor = load_cursor(pacs_dir / "cursor.json", url)
    study = pacs_dir / "staging" / uid_token(STUDY)
    good_staged = len(list((study / uid_token(GOOD)).glob("*.dcm")))
    return {"reason": reason.replace(url, "<pacs>"), "elapsed_s": elapsed, "liar_bytes_sent": sent,
            "cursor_series": sorted("good" if s == GOOD else "liar" for s in cursor.series),
            "good_staged": good_staged, "liar_staged": (study / uid_token(LIAR)).exists()}


if __name__ == "__main__":
    result = pull_lie(sys.argv[1], Path(sys.argv[2]))
    Path(sys.argv[3]).write_text(json.dumps(result))
