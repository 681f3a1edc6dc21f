"""The fault cases of docs/RELIABILITY.md: which test provokes each fault, and how to run them for their figures.

Each case names a test in ``tests/test_reliability_faults.py``. :func:`measure` runs those tests
(pytest, in a child process) with ``CLINFUSE_FAULT_RECORD`` set, so each test appends what it
measured (``tests/fault_record.py``): what happened, items lost, duplicates after the re-run, and
seconds to the outcome. A table row is therefore only ever written from a run whose assertions
were checked; a case whose test failed or was skipped is reported as such, never filled in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_FILE = "tests/test_reliability_faults.py"


@dataclass(frozen=True)
class FaultCase:
    """One fault: a short name and the pytest node (``-k`` expression) that provokes it."""

    name: str
    select: str


CASES: tuple[FaultCase, ...] = (
    FaultCase("disk full: ingest, encode", "on_a_full_disk_stops"),
    FaultCase("disk full: predictions write", "predictions_write_on_a_full_disk"),
    FaultCase("MLflow connection lost mid-registration", "registration_cut_midway"),
    FaultCase("MLflow down at registration (CLI)", "mlflow_down"),
    FaultCase("Orthanc restarted mid-pull", "orthanc_restart"),
    FaultCase("PostgreSQL restarted during registration", "postgres_restart"),
)


@dataclass(frozen=True)
class Measured:
    """The records the selected tests wrote, and pytest's summary line (passed / failed / skipped)."""

    rows: list[dict]
    summary: str
    returncode: int
    output: str = ""
    """pytest's output (its failures), shown when a test did not pass."""


def measure(cases: tuple[FaultCase, ...] = CASES, timeout_s: float = 3600) -> Measured:
    """Run the cases' tests once, with recording on; their rows in test order."""
    expr = " or ".join(f"({c.select})" for c in cases)
    with tempfile.TemporaryDirectory(prefix="clinfuse-faults-") as tmp:
        target = Path(tmp) / "faults.jsonl"
        env = {**os.environ, "CLINFUSE_FAULT_RECORD": str(target)}
        done = subprocess.run([sys.executable, "-m", "pytest", TEST_FILE, "-q", "-p", "no:cacheprovider", "-k", expr],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        rows = [json.loads(line) for line in target.read_text().splitlines()] if target.exists() else []
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    return Measured(rows, lines[-1] if lines else done.stderr[-500:], done.returncode,
                    (done.stdout + done.stderr)[-20000:])
