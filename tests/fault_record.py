"""What each fault test measured, for `benchmarks/bench_faults.py` to put in docs/RELIABILITY.md.

The fault tests call :func:`record` with their figures; when ``CLINFUSE_FAULT_RECORD`` names a
file (the benchmark sets it), one JSON line per fault is appended there, otherwise nothing is
written. The figures come from the same run whose assertions passed, never typed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RECORD_ENV = "CLINFUSE_FAULT_RECORD"


def record(fault: str, happened: str, lost: int, duplicates: int, seconds: float, **extra: object) -> None:
    """Append one fault's outcome: what happened, items lost, duplicates after the re-run, seconds to the outcome."""
    target = os.environ.get(RECORD_ENV)
    if not target:
        return
    row = {"fault": fault, "happened": happened, "lost": int(lost), "duplicates": int(duplicates),
           "seconds": round(float(seconds), 1), **extra}
    with open(Path(target), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")
