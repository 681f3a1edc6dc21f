"""`clinfuse encode` runs a bounded number of encode chunks at once, not one thread per chunk.

Prefect's default ThreadPoolTaskRunner has no worker limit, so the encode flow started every
chunk together (125 at 1,000 patients, each with its encoders and a batch in memory) and its
peak memory grew with the cohort.
"""

from __future__ import annotations

import sys

from flows.flows.encode import CHUNK_THREADS, encode_flow


def test_encode_flow_task_runner_is_bounded() -> None:
    runner = encode_flow.task_runner
    assert runner._max_workers == CHUNK_THREADS <= 4  # the pipeline's thread runner uses 4
    assert runner._max_workers < sys.maxsize
