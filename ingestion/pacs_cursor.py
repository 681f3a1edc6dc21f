"""The PACS pull cursor: which series were already pulled, persisted so a schedule pulls only what is new.

A study date alone is not a safe cursor: PACS receive studies late (a
scanner's queue, a prior study imported from another hospital) with dates
older than the newest seen. The cursor therefore records every series pulled
with its instance count; a series is pulled again only when the PACS reports
more (or fewer) instances than were pulled. The newest study date seen is kept
too, so an operator can bound queries by date on a very large archive.

The file is rewritten atomically after every series, so a pull that fails
half-way keeps what it finished and the next run resumes from there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ingestion.atomic_files import atomic_write_text

CURSOR_VERSION = 1


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part: the only form of a PACS URL that is logged or stored."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def pacs_key(url: str) -> str:
    """A short stable name for one PACS (its redacted URL's hash): names its cursor and staging folder."""
    return hashlib.sha256(redact_url(url).encode("utf-8")).hexdigest()[:12]


def uid_token(uid: str) -> str:
    """A file-name-safe stand-in for a DICOM UID (UIDs can identify a study, so they are not used as names)."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:20]


@dataclass
class PacsCursor:
    """Series already pulled from one PACS: ``series[series_uid] = {"study": uid, "n": instances, ...}``."""

    url: str
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_study_date: str | None = None
    pending_ingest: bool = False
    updated_at: str | None = None

    def is_current(self, series_uid: str, n_instances: int | None) -> bool:
        """True when the series was pulled before with the instance count the PACS reports now."""
        seen = self.series.get(series_uid)
        return seen is not None and n_instances is not None and int(seen.get("n", -1)) == int(n_instances)

    def record(self, series_uid: str, study_uid: str, n_instances: int, study_date: str | None) -> None:
        self.series[series_uid] = {"study": study_uid, "n": int(n_instances),
                                   "pulled_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if study_date and (self.last_study_date is None or study_date > self.last_study_date):
            self.last_study_date = study_date
        self.pending_ingest = True


def load_cursor(path: Path, url: str) -> PacsCursor:
    """The cursor at ``path``, or an empty one for a PACS never pulled from.

    Raises ``ValueError`` for a cursor written for another PACS or unreadable,
    rather than re-pulling a whole archive because of a corrupt file.
    """
    path = Path(path)
    if not path.exists():
        return PacsCursor(url=redact_url(url))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"PACS cursor {path} is not valid JSON ({exc}); restore it or delete it to pull "
                         "everything again (re-pulled items are recognised by content hash)") from None
    if data.get("url") != redact_url(url):
        raise ValueError(f"PACS cursor {path} belongs to {data.get('url')}, not {redact_url(url)}")
    return PacsCursor(url=data["url"], series=dict(data.get("series", {})),
                      last_study_date=data.get("last_study_date"),
                      pending_ingest=bool(data.get("pending_ingest", False)), updated_at=data.get("updated_at"))


def save_cursor(cursor: PacsCursor, path: Path) -> None:
    """Write the cursor atomically (temporary file, then one ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cursor.updated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    payload = {"version": CURSOR_VERSION, "url": cursor.url, "last_study_date": cursor.last_study_date,
               "pending_ingest": cursor.pending_ingest, "updated_at": cursor.updated_at, "series": cursor.series}
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True))
