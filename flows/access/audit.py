"""The append-only, HMAC-chained audit trail: who did what to which (pseudonymous) patient, and its check.

One JSON object per line: ``seq`` (1, 2, ...), ``at`` (UTC), ``user``, ``role``,
``action``, ``patient_id`` (a pseudonym or null, never an original id),
``detail``, ``prev`` (the previous entry's hash), ``kid`` (which audit key signed
it) and ``hash`` = HMAC-SHA256 under that key of the entry's other fields. The
key lives outside the home (:mod:`flows.access.audit_keys`), so someone who can
write the home cannot rewrite the chain consistently. A head file keeps the last
``seq`` and hash, and every ``anchor_every`` entries the head is also appended to
an anchor sink outside the home (:mod:`flows.access.audit_anchor`), so cutting
entries off the end is caught even when the head file is rewritten too.
:func:`AuditLog.verify` names each edited, removed, reordered or unkeyed entry by
its ``seq`` and line. Appends hold a file lock, so dashboard sessions and CLI
commands writing at once keep one chain.

Trails written before a key was configured (entries without ``kid``, hashed
with plain SHA-256) are migrated by a *seal*, an explicit, one-time operator act
(:meth:`AuditLog.seal`, ``clinfuse audit seal``): an ``audit_keyed`` entry whose
``sealed`` field covers every earlier entry and whose HMAC covers the link to
them. Unkeyed entries no seal covers fail verification, so a trail rewritten with
the old unkeyed hashing is detected, also after later keyed appends. Sealing is
never automatic and is refused once the trail (or the anchor sink) holds a keyed
entry: otherwise someone could rewrite the whole trail unkeyed and let the next
append vouch for it.
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

from flows.access.audit_anchor import anchor_line, append_anchor, read_anchors, syslog_anchor
from flows.access.audit_keys import AuditKeys
from ingestion.atomic_files import atomic_write_text

GENESIS = "0" * 64
ACTIONS = ("sign_in", "sign_in_failed", "sign_out", "session_expired", "view_patient", "reveal_mrn",
           "export_csv", "batch_trigger", "review", "denied", "user_add", "user_disable", "user_reset",
           "key_rotate", "audit_keyed")
PSEUDONYM_RE = re.compile(r"^P[0-9a-f]{12}$")
_FIELDS = ("seq", "at", "user", "role", "action", "patient_id", "detail", "prev")


@dataclass(frozen=True)
class Problem:
    """One defect of the trail: ``kind`` is edited / removed / reordered / duplicated / corrupt / unkeyed /
    unverifiable (signed with a key that is not configured)."""

    kind: str
    seq: int | None
    line: int | None
    message: str


@dataclass(frozen=True)
class Verification:
    """The outcome of :meth:`AuditLog.verify`; ``keyed`` is False when no audit key is configured (weak check)."""

    ok: bool
    n_entries: int
    problems: tuple[Problem, ...]
    keyed: bool = False
    n_anchors: int = 0


def entry_hash(entry: dict[str, Any], keys: AuditKeys | None = None) -> str | None:
    """The hash an entry must carry: HMAC-SHA256 under its ``kid``'s key over every field but ``hash``;
    for a legacy entry without ``kid``, SHA-256 over the original fields. None when the key is not configured."""
    if entry.get("kid") is None:
        blob = json.dumps({k: entry.get(k) for k in _FIELDS}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
    blob = json.dumps({k: v for k, v in entry.items() if k != "hash"}, sort_keys=True, separators=(",", ":"))
    return (keys or AuditKeys()).mac(str(entry["kid"]), blob.encode("utf-8"))


class AuditLog:
    """The trail at ``path`` (``audit.jsonl``), its head ``audit.head`` and lock beside it.

    ``keys`` sign and verify (no current key: entries are written unkeyed, as before keys existed);
    ``anchor`` (a file outside the home) and/or ``syslog`` (a socket path or HOST:PORT) get the head every
    ``anchor_every`` entries.
    """

    def __init__(self, path: Path, keys: AuditKeys | None = None, anchor: Path | None = None,
                 anchor_every: int = 10, syslog: str | None = None) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_suffix(".head")
        self.keys = keys or AuditKeys()
        self.anchor, self.anchor_every = (Path(anchor) if anchor else None), max(1, int(anchor_every))
        self.syslog = syslog or None
        self._lock = FileLock(str(self.path.with_suffix(".lock")), timeout=30)

    def _head(self) -> tuple[int, str]:
        return self._head_record()[:2]

    def _head_record(self) -> tuple[int, str, str | None]:
        if self.head_path.exists():
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(head["seq"]), str(head["hash"]), head.get("kid")
        return 0, GENESIS, None

    def _write(self, entry: dict, anchor: bool) -> dict:
        """Sign ``entry`` (current key, else legacy SHA-256), append it, move the head, anchor when due."""
        if self.keys.current is not None:
            entry["kid"] = self.keys.current_id
        entry["hash"] = entry_hash(entry, self.keys)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_text(self.head_path, json.dumps({"seq": entry["seq"], "hash": entry["hash"],
                                                      "kid": entry.get("kid")}))
        if anchor or entry["seq"] % self.anchor_every == 0:
            self._anchor(entry["seq"], entry["hash"], entry.get("kid"))
        return entry

    def _anchor(self, seq: int, digest: str, kid: str | None) -> dict | None:
        """Send the head to every configured sink (the entry is already written when a sink fails)."""
        if self.anchor is None and self.syslog is None:
            return None
        line = anchor_line(self.path, seq, digest, kid)
        if self.anchor is not None:
            append_anchor(self.anchor, line)
        if self.syslog is not None:
            syslog_anchor(self.syslog, line)
        return line

    def _new(self, seq: int, prev: str, user: str, role: str, action: str, patient_id: str | None,
             detail: str) -> dict:
        return {"seq": seq, "at": datetime.now(UTC).isoformat(timespec="milliseconds"), "user": user,
                "role": role, "action": action, "patient_id": patient_id, "detail": detail[:300], "prev": prev}

    def seal(self) -> dict | None:
        """Vouch, once, for the unkeyed entries written before the key was configured; None when empty.

        ValueError without a current key, or when the trail or the anchor sink already holds a keyed
        entry: after that point unkeyed entries may be a rewrite, and a seal would bless it.
        """
        if self.keys.current is None:
            raise ValueError("no audit key is configured: nothing to seal with")
        keyed = [e["seq"] for e in self.entries() if e.get("kid") is not None]
        if self.anchor is not None:
            keyed += [a["seq"] for a in read_anchors(self.anchor, self.path) if a.get("kid")]
        if keyed:
            raise ValueError(f"the trail already holds keyed entries (from seq {min(keyed)}): sealing now could "
                             "vouch for entries rewritten since, so the unkeyed ones stay reported")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            seq, prev = self._head()
            if seq == 0:
                return None
            entry = self._new(seq + 1, prev, "clinfuse", "-", "audit_keyed", None,
                              f"entries 1-{seq} were written before the audit key; sealed as they stand")
            entry["sealed"] = seq
            return self._write(entry, anchor=True)

    def anchor_now(self) -> dict | None:
        """Send the current head to the anchor sinks now (e.g. from cron); None without a sink or entries."""
        with self._lock:
            seq, digest, kid = self._head_record()
            return self._anchor(seq, digest, kid) if seq else None

    def append(self, user: str, role: str, action: str, patient_id: str | None = None, detail: str = "") -> dict:
        """Append one entry and return it; refuses unknown actions and any patient id that is not a pseudonym."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        if patient_id is not None and not PSEUDONYM_RE.match(patient_id):
            raise ValueError("the audit trail records pseudonymous patient ids only")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            seq, prev = self._head()
            return self._write(self._new(seq + 1, prev, user, role, action, patient_id, detail), anchor=False)

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
            expected = entry_hash(e, self.keys)
            if expected is None:
                problems.append(Problem("unverifiable", e["seq"], lineno, f"entry seq={e['seq']} (line {lineno}) "
                                        f"is signed with audit key {e.get('kid')}, which is not configured: set "
                                        "CLINFUSE_AUDIT_KEY_FILE (or list a retired key in "
                                        "CLINFUSE_AUDIT_RETIRED_KEY_FILES)"))
            elif expected != e.get("hash"):
                problems.append(Problem("edited", e["seq"], lineno, f"entry seq={e['seq']} (line {lineno}) was "
                                        "edited: its content no longer matches its hash"))
            elif e["seq"] in intact:
                problems.append(Problem("duplicated", e["seq"], lineno, f"entry seq={e['seq']} appears again at "
                                        f"line {lineno}"))
            else:
                intact[e["seq"]] = (lineno, e)
        anchors = read_anchors(self.anchor, self.path) if self.anchor is not None else []
        present = {e["seq"] for _, e in parsed}
        problems += _order_problems(parsed)
        problems += _chain_problems(intact, present, self._head())
        problems += _unkeyed_problems(intact, bool(self.keys.ring))
        problems += _anchor_problems(intact, present, anchors, self.anchor)
        problems = _dedupe(problems)
        problems.sort(key=lambda p: (p.seq or 0, p.kind))
        return Verification(not problems, len(parsed), tuple(problems), self.keys.current is not None, len(anchors))


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


def _unkeyed_problems(intact: dict[int, tuple[int, dict]], keyed: bool) -> list[Problem]:
    """With a key configured, an entry without ``kid`` is accepted only when a keyed seal covers it."""
    if not keyed:
        return []
    sealed = max((int(e.get("sealed") or 0) for _, e in intact.values()
                  if e.get("kid") is not None and e.get("action") == "audit_keyed"), default=0)
    return [Problem("unkeyed", seq, lineno, f"entry seq={seq} (line {lineno}) carries no audit key id and no "
                    "seal covers it: it was written or rewritten without the audit key (entries from before "
                    "the key are sealed once with `clinfuse audit seal`, before any keyed entry)")
            for seq, (lineno, e) in sorted(intact.items()) if e.get("kid") is None and seq > sealed]


def _anchor_problems(intact: dict[int, tuple[int, dict]], present: set[int], anchors: list[dict],
                     sink: Path | None) -> list[Problem]:
    """Each anchor fixes a seq the trail must still reach, with the hash it must still have there."""
    problems, last = [], max(present, default=0)
    for anchor in anchors:
        seq = anchor["seq"]
        if seq > last:
            problems.append(Problem("removed", seq, None, f"entry seq={seq} was removed at the end of the trail "
                                    f"(cut off): the anchor in {sink} recorded it"))
        elif seq in intact and intact[seq][1].get("hash") != anchor["hash"]:
            problems.append(Problem("edited", seq, intact[seq][0], f"entry seq={seq} was rewritten: the anchor "
                                    f"in {sink} recorded a different hash for it"))
    return problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.kind, p.seq) not in seen:
            seen.add((p.kind, p.seq))
            out.append(p)
    return out
