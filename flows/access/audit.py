"""The append-only, hash-chained audit trail: who did what to which (pseudonymous) patient, and its check.

One JSON object per line: ``seq`` (1, 2, ...), ``at`` (UTC), ``user``, ``role``,
``action``, ``patient_id`` (a pseudonym or null, never an original id),
``detail``, ``prev`` (the previous entry's hash) and ``hash`` = SHA-256 of the
entry's other fields. A separate head file keeps the last ``seq`` and hash, so
cutting entries off the end is caught too. :func:`verify` names each edited,
removed or reordered entry by its ``seq`` and line. Appends hold a file lock,
so dashboard sessions and CLI commands writing at once keep one chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from ingestion.atomic_files import atomic_write_text

GENESIS = "0" * 64
ACTIONS = ("sign_in", "sign_in_failed", "sign_out", "session_expired", "view_patient", "reveal_mrn",
           "export_csv", "batch_trigger", "review", "denied", "user_add", "user_disable", "user_reset",
           "key_rotate")
PSEUDONYM_RE = re.compile(r"^P[0-9a-f]{12}$")
_FIELDS = ("seq", "at", "user", "role", "action", "patient_id", "detail", "prev")


@dataclass(frozen=True)
class Problem:
    """One defect of the trail: ``kind`` is edited / removed / reordered / duplicated / corrupt."""

    kind: str
    seq: int | None
    line: int | None
    message: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    n_entries: int
    problems: tuple[Problem, ...]


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the entry's fields (``prev`` included, ``hash`` excluded)."""
    blob = json.dumps({k: entry.get(k) for k in _FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AuditLog:
    """The trail at ``path`` (``audit.jsonl``), its head ``audit.head`` and lock beside it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_suffix(".head")
        self._lock = FileLock(str(self.path.with_suffix(".lock")), timeout=30)

    def _head(self) -> tuple[int, str]:
        if self.head_path.exists():
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(head["seq"]), str(head["hash"])
        return 0, GENESIS

    def append(self, user: str, role: str, action: str, patient_id: str | None = None, detail: str = "") -> dict:
        """Append one entry and return it; refuses unknown actions and any patient id that is not a pseudonym."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        if patient_id is not None and not PSEUDONYM_RE.match(patient_id):
            raise ValueError("the audit trail records pseudonymous patient ids only")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            seq, prev = self._head()
            entry = {"seq": seq + 1, "at": datetime.now(UTC).isoformat(timespec="milliseconds"), "user": user,
                     "role": role, "action": action, "patient_id": patient_id, "detail": detail[:300], "prev": prev}
            entry["hash"] = entry_hash(entry)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            atomic_write_text(self.head_path, json.dumps({"seq": entry["seq"], "hash": entry["hash"]}))
        return entry

    def entries(self) -> list[dict]:
        """Every parseable entry in file order (the admin page filters these)."""
        if not self.path.exists():
            return []
        out = []
        for text in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        return out

    def verify(self) -> Verification:
        """Check every entry's hash, the chain, the order and the head; name each broken entry."""
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        problems: list[Problem] = []
        parsed: list[tuple[int, dict]] = []
        for lineno, text in enumerate(lines, 1):
            try:
                entry = json.loads(text)
                int(entry["seq"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                problems.append(Problem("corrupt", None, lineno, f"line {lineno} is not an audit entry"))
                continue
            parsed.append((lineno, entry))
        intact = {}
        for lineno, e in parsed:
            if entry_hash(e) != e.get("hash"):
                problems.append(Problem("edited", e["seq"], lineno, f"entry seq={e['seq']} (line {lineno}) was "
                                        "edited: its content no longer matches its hash"))
            elif e["seq"] in intact:
                problems.append(Problem("duplicated", e["seq"], lineno, f"entry seq={e['seq']} appears again at "
                                        f"line {lineno}"))
            else:
                intact[e["seq"]] = (lineno, e)
        problems += _order_problems(parsed)
        problems += _chain_problems(intact, {e["seq"] for _, e in parsed}, self._head())
        problems.sort(key=lambda p: (p.seq or 0, p.kind))
        return Verification(not problems, len(parsed), tuple(problems))


def _order_problems(parsed: list[tuple[int, dict]]) -> list[Problem]:
    """Entries outside the longest run of increasing ``seq`` were moved (patience sorting, O(n log n))."""
    seqs = [int(e["seq"]) for _, e in parsed]
    tails: list[int] = []
    tail_idx: list[int] = []
    back = [-1] * len(seqs)
    for i, s in enumerate(seqs):
        k = bisect_left(tails, s)
        back[i] = tail_idx[k - 1] if k else -1
        if k == len(tails):
            tails.append(s)
            tail_idx.append(i)
        else:
            tails[k], tail_idx[k] = s, i
    keep, i = set(), tail_idx[-1] if tail_idx else -1
    while i >= 0:
        keep.add(i)
        i = back[i]
    return [Problem("reordered", seqs[i], parsed[i][0], f"entry seq={seqs[i]} (line {parsed[i][0]}) is out of "
                    "order: it was moved from its place in the trail")
            for i in range(len(seqs)) if i not in keep]


def _chain_problems(intact: dict[int, tuple[int, dict]], present: set[int], head: tuple[int, str]) -> list[Problem]:
    """Missing seqs (removed), broken prev links between intact neighbours (rewritten entry), a cut-off tail."""
    problems = []
    head_seq, head_hash = head
    last = max([head_seq, *present]) if present or head_seq else 0
    for seq in range(1, last + 1):
        if seq not in present:
            where = "at the end of the trail (cut off)" if seq > max(present, default=0) else "from the trail"
            problems.append(Problem("removed", seq, None, f"entry seq={seq} was removed {where}"))
    for seq, (lineno, e) in intact.items():
        before = intact.get(seq - 1)
        expected = GENESIS if seq == 1 else (before[1]["hash"] if before else None)
        if expected is not None and e["prev"] != expected and seq == 1:
            problems.append(Problem("edited", 1, lineno, "entry seq=1 was rewritten: it does not start the chain"))
        elif expected is not None and e["prev"] != expected:
            problems.append(Problem("edited", seq - 1, before[0] if before else None,
                                    f"entry seq={seq - 1} was rewritten: entry seq={seq} recorded a different "
                                    "hash for it"))
    if head_seq in intact and intact[head_seq][1]["hash"] != head_hash:
        problems.append(Problem("edited", head_seq, intact[head_seq][0], f"entry seq={head_seq} was rewritten: "
                                "the head file recorded a different hash for it"))
    return problems
