"""Clinician reviews: the confirmed outcome of a patient, who confirmed it, when, and for which prediction.

Stored in SQLite beside the users (append-only: a new review supersedes, never
overwrites, so the history of opinions stays). The newest review of a patient
counts; ``positive``/``negative`` become training labels
(:func:`confirmed_labels`), ``uncertain`` withdraws an earlier confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flows.access.access_db import AccessDb
from flows.access.audit import PSEUDONYM_RE

OUTCOMES: tuple[str, ...] = ("positive", "negative", "uncertain")
LABEL_OF = {"positive": 1, "negative": 0}
MAX_COMMENT = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT, patient_id TEXT NOT NULL, outcome TEXT NOT NULL, comment TEXT NOT NULL,
    username TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL,
    run_id TEXT, model_version TEXT, batch_id TEXT, risk REAL);
CREATE INDEX IF NOT EXISTS reviews_patient ON reviews (patient_id, id);
"""
_COLUMNS = "id, patient_id, outcome, comment, username, role, created_at, run_id, model_version, batch_id, risk"


@dataclass(frozen=True)
class PredictionRef:
    """The prediction a review answers (run, model version, batch, the risk shown)."""

    run_id: str | None = None
    model_version: str | None = None
    batch_id: str | None = None
    risk: float | None = None


@dataclass(frozen=True)
class Review:
    id: int
    patient_id: str
    outcome: str
    comment: str
    username: str
    role: str
    created_at: str
    prediction: PredictionRef


class ReviewStore(AccessDb):
    """Reviews of one clinfuse home (``<access_dir>/access.db``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def add(self, patient_id: str, outcome: str, comment: str, username: str, role: str,
            prediction: PredictionRef = PredictionRef()) -> Review:
        """Record a review; ValueError for a non-pseudonymous id, an unknown outcome or an over-long comment."""
        if not PSEUDONYM_RE.match(patient_id):
            raise ValueError("reviews are keyed by the pseudonymous patient id")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        comment = comment.strip()
        if len(comment) > MAX_COMMENT:
            raise ValueError(f"keep the comment under {MAX_COMMENT} characters")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        p = prediction
        with self._db() as con:
            cur = con.execute(f"INSERT INTO reviews ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (patient_id, outcome, comment, username, role, now, p.run_id, p.model_version,
                               p.batch_id, p.risk))
            return Review(int(cur.lastrowid), patient_id, outcome, comment, username, role, now, p)

    def _select(self, where: str = "", args: tuple = ()) -> list[Review]:
        if not self.exists:
            return []  # nobody reviewed yet: reading creates nothing
        with self._db() as con:
            rows = con.execute(f"SELECT {_COLUMNS} FROM reviews {where} ORDER BY id DESC", args).fetchall()
        return [Review(r[0], r[1], r[2], r[3], r[4], r[5], r[6], PredictionRef(r[7], r[8], r[9], r[10]))
                for r in rows]

    def for_patient(self, patient_id: str) -> list[Review]:
        """A patient's reviews, newest first."""
        return self._select("WHERE patient_id = ?", (patient_id,))

    def latest(self) -> dict[str, Review]:
        """The newest review of every reviewed patient."""
        out: dict[str, Review] = {}
        for review in self._select():
            out.setdefault(review.patient_id, review)
        return out


def confirmed_labels(store: ReviewStore) -> dict[str, int]:
    """Pseudonym -> 1/0 from each patient's newest review; patients whose newest review is uncertain are absent."""
    return {pid: LABEL_OF[r.outcome] for pid, r in store.latest().items() if r.outcome in LABEL_OF}


def access_db(access_dir: Path) -> Path:
    """The SQLite file holding users and reviews of a home."""
    return Path(access_dir) / "access.db"


def audit_path(access_dir: Path) -> Path:
    """The audit trail of a home."""
    return Path(access_dir) / "audit.jsonl"


def confirmed_labels_in(access_dir: Path) -> dict[str, int]:
    """:func:`confirmed_labels` of a home's store; {} when nobody has reviewed yet (creates nothing)."""
    db = access_db(access_dir)
    return confirmed_labels(ReviewStore(db)) if db.exists() else {}
