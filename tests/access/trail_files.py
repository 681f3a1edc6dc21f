"""Reading and rewriting an audit trail's JSON lines as an attacker with write access to the home would."""

from __future__ import annotations

import json
from pathlib import Path

from flows.access.audit import AuditLog

PID = "P0123456789ab"


def fill(log: AuditLog, n: int) -> AuditLog:
    """``n`` entries of a clinician's session (view, reveal, review, ...) on one patient."""
    for i in range(n):
        log.append("a.smith", "clinician", ("view_patient", "reveal_mrn", "review")[i % 3], PID, f"step {i + 1}")
    return log


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
