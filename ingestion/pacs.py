"""Pull images from a PACS over DICOMweb into a staging folder that folder ingest then reads.

QIDO-RS finds the studies (by modality and, optionally, a study-date range)
and their series; WADO-RS streams each new series' instances, which are
written byte for byte as the PACS stored them (original transfer syntax), so
an instance pulled from the PACS has the same content hash as the same file
ingested from a folder, and the manifest's content-hash idempotency applies
unchanged. A persisted cursor (``ingestion.pacs_cursor``) records what was
pulled, so a scheduled pull moves only new series and a re-run moves no data.

Files are written to a private temporary folder and moved into the staging
tree in one rename, so ingest never sees a partial file. Credentials live in
the HTTP session only; the URL logged, stored and shown is the redacted one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pydicom
import requests
from requests.adapters import HTTPAdapter

from ingestion.atomic_files import atomic_write_bytes

from ingestion.pacs_cursor import PacsCursor, load_cursor, redact_url, save_cursor, uid_token
from ingestion.pacs_stream import DownloadError, DownloadLimits, iter_instances

log = logging.getLogger(__name__)

DEFAULT_MODALITIES: tuple[str, ...] = ("CT", "CR", "DX")
ACCEPT_ORIGINAL = 'multipart/related; type="application/dicom"; transfer-syntax=*'
"""Ask for instances in the transfer syntax the PACS stored (no transcoding: same bytes, same hash)."""

_TAG = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "Modality": "00080060",
        "StudyDate": "00080020", "NumberOfSeriesRelatedInstances": "00201209"}


class PacsError(RuntimeError):
    """The PACS could not be queried or read; the message says why and that nothing was lost."""


@dataclass(frozen=True)
class PacsQuery:
    """Which studies to pull: modalities, and an optional StudyDate range (``YYYYMMDD``, inclusive)."""

    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    study_date_from: str | None = None
    study_date_to: str | None = None
    page_size: int = 500

    def date_filter(self) -> str | None:
        if not (self.study_date_from or self.study_date_to):
            return None
        return f"{self.study_date_from or ''}-{self.study_date_to or ''}"


@dataclass(frozen=True)
class SeriesRef:
    """One series the PACS holds (UIDs stay inside ingestion: they are never logged)."""

    study_uid: str
    series_uid: str
    modality: str
    n_instances: int | None
    study_date: str | None


@dataclass(frozen=True)
class PullReport:
    """What one pull found and moved. ``pending_ingest``: staged data not yet ingested."""

    pacs: str
    staging: str
    series_found: int
    series_pulled: int
    series_current: int
    instances_written: int
    instances_unchanged: int
    bytes_written: int
    pending_ingest: bool
    elapsed_s: float


class _TimeoutAdapter(HTTPAdapter):
    """Every request gets a timeout, so a PACS that stops answering fails the run instead of hanging it."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' own signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().send(request, **kwargs)


def connect(url: str, username: str | None = None, password: str | None = None, timeout_s: float = 30.0) -> Any:
    """A ``dicomweb_client.DICOMwebClient`` for ``url`` (the DICOMweb root, e.g. ``http://pacs/dicom-web``).

    User and password come from the arguments or from ``user:password@`` in
    the URL; they go into the session's basic auth, never into the URL the
    client logs.
    """
    from dicomweb_client.api import DICOMwebClient

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"PACS URL {redact_url(url)!r} is not an http(s) DICOMweb URL, e.g. http://pacs:8042/dicom-web")
    user = username or (unquote(parts.username) if parts.username else None)
    secret = password if password is not None else (unquote(parts.password) if parts.password else None)
    session = requests.Session()
    if user:
        session.auth = (user, secret or "")
    adapter = _TimeoutAdapter(timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # its INFO lines carry study/series UIDs
    client = DICOMwebClient(url=redact_url(url), session=session)
    client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=250)
    return client


def _value(obj: dict[str, Any], keyword: str) -> Any:
    values = obj.get(_TAG[keyword], {}).get("Value") or [None]
    return values[0]


def _paged(search: Callable[..., list[dict[str, Any]]], page_size: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every result of a QIDO search, page by page (PACS cap the size of one answer)."""
    offset = 0
    while True:
        page = search(offset=offset, limit=page_size, **kwargs)
        yield from page
        if len(page) < page_size:
            return
        offset += len(page)


def find_series(client: Any, query: PacsQuery) -> list[SeriesRef]:
    """QIDO-RS: the series of the wanted modalities in studies matching the query, sorted by UIDs."""
    wanted = {m.upper() for m in query.modalities}
    studies: dict[str, str | None] = {}
    for modality in sorted(wanted):
        filters = {"ModalitiesInStudy": modality}
        if query.date_filter():
            filters["StudyDate"] = query.date_filter()
        for study in _paged(client.search_for_studies, query.page_size, search_filters=filters):
            studies[str(_value(study, "StudyInstanceUID"))] = _value(study, "StudyDate")
    refs = []
    for study_uid, study_date in sorted(studies.items()):
        for series in _paged(client.search_for_series, query.page_size, study_instance_uid=study_uid,
                             fields=["NumberOfSeriesRelatedInstances"]):
            modality = str(_value(series, "Modality") or "").upper()
            if modality not in wanted:
                continue
            count = _value(series, "NumberOfSeriesRelatedInstances")
            refs.append(SeriesRef(study_uid, str(_value(series, "SeriesInstanceUID")), modality,
                                  int(count) if count is not None else None, study_date))
    return sorted(refs, key=lambda r: (r.study_uid, r.series_uid))


def _count_instances(client: Any, ref: SeriesRef, page_size: int) -> int:
    """Instances of a series, for a PACS that does not report NumberOfSeriesRelatedInstances."""
    return sum(1 for _ in _paged(client.search_for_instances, page_size, study_instance_uid=ref.study_uid,
                                 series_instance_uid=ref.series_uid))


def _instance_bytes(client: Any, ref: SeriesRef, limits: DownloadLimits = DownloadLimits()) -> Iterator[bytes]:
    """WADO-RS: each instance of the series as the PACS stored it, streamed part by part within ``limits``.

    Parses the raw multipart answer itself (:mod:`ingestion.pacs_stream`) so the bytes are the stored
    file's and a lying server (wrong type, truncated, huge, dripping) is stopped with a reason; if the
    client's (non-public) URL helpers ever go, falls back to its public iterator and writes each
    dataset like the original.
    """
    try:
        from dicomweb_client.web import _Transaction

        url = client._get_series_url(_Transaction.RETRIEVE, ref.study_uid, ref.series_uid)
        response = client._http_get(url, headers={"Accept": ACCEPT_ORIGINAL, "Accept-Encoding": "identity"},
                                    stream=True)
    except AttributeError:
        for ds in client.iter_series(ref.study_uid, ref.series_uid, media_types=(("application/dicom", "*"),)):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=False)
            yield buffer.getvalue()
        return
    try:
        yield from iter_instances(response, limits)  # a single application/dicom answer is one instance
    finally:
        response.close()


def _same_file(path: Path, data: bytes) -> bool:
    if not path.is_file() or path.stat().st_size != len(data):
        return False
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").digest() == hashlib.sha256(data).digest()


def _stage_series(client: Any, ref: SeriesRef, staging: Path, tmp_dir: Path,
                  limits: DownloadLimits = DownloadLimits()) -> tuple[int, int, int]:
    """Write one series' instances under ``staging``; returns (instances, written, bytes written).

    Instances go to a private folder first and move into ``staging`` only once the whole answer was
    read: a download stopped half-way (truncated, too large, past its deadline) stages nothing of the
    series, so ingest never reads a series with slices missing.
    """
    folder = staging / uid_token(ref.study_uid) / uid_token(ref.series_uid)
    pending = Path(tempfile.mkdtemp(prefix="series-", dir=_mkdir(tmp_dir)))
    try:
        n, moves = 0, []
        for data in _instance_bytes(client, ref, limits):
            n += 1
            sop = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True,
                                  specific_tags=["SOPInstanceUID"]).get("SOPInstanceUID")
            name = uid_token(str(sop)) if sop else hashlib.sha256(data).hexdigest()[:20]
            if _same_file(folder / f"{name}.dcm", data):
                continue
            atomic_write_bytes(pending / f"{name}.dcm", data)
            moves.append((pending / f"{name}.dcm", folder / f"{name}.dcm", len(data)))
        _mkdir(folder)
        for source, target, _ in moves:
            os.replace(source, target)
        return n, len(moves), sum(size for _, _, size in moves)
    finally:
        shutil.rmtree(pending, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _explain(exc: Exception, pacs: str, pulled: int) -> PacsError:
    """A PacsError that says what went wrong, for whom to fix it, and that nothing was lost."""
    kept = (f"nothing was lost: {pulled} series pulled before the failure are staged and in the cursor, "
            "the manifest is untouched, and the next pull resumes")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return PacsError(f"PACS {pacs} refused the credentials (HTTP {code}); set CLINFUSE_PACS_USERNAME and "
                             f"CLINFUSE_PACS_PASSWORD; {kept}")
        return PacsError(f"PACS {pacs} answered HTTP {code} ({exc.response.reason}); {kept}")
    if isinstance(exc, DownloadError):
        return PacsError(f"PACS {pacs}: a series could not be downloaded: {exc}; {kept}")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return PacsError(f"PACS {pacs} did not answer ({type(exc).__name__}); check the URL and that the server "
                         f"is running and reachable; {kept}")
    return PacsError(f"PACS {pacs}: {type(exc).__name__}: {exc}; {kept}")


def pull(client: Any, url: str, pacs_dir: Path, query: PacsQuery = PacsQuery(),
         limits: DownloadLimits = DownloadLimits()) -> PullReport:
    """Pull every series not yet pulled (or whose instance count changed) into ``pacs_dir/staging``.

    The cursor (``pacs_dir/cursor.json``) is saved after each series, so a
    failure keeps what was finished and never records a series it did not
    stage whole. Raises :class:`PacsError` with a clear reason when the PACS
    cannot be queried or read, or an answer breaks ``limits`` (size, deadline).
    """
    started = time.perf_counter()
    pacs, pacs_dir = redact_url(url), Path(pacs_dir)
    staging, cursor_path = pacs_dir / "staging", pacs_dir / "cursor.json"
    cursor = load_cursor(cursor_path, url)
    pulled = current = written = unchanged = nbytes = 0
    try:
        refs = find_series(client, query)
        for ref in refs:
            if ref.n_instances is None:
                ref = SeriesRef(ref.study_uid, ref.series_uid, ref.modality,
                                _count_instances(client, ref, query.page_size), ref.study_date)
            if cursor.is_current(ref.series_uid, ref.n_instances):
                current += 1
                continue
            n, new, size = _stage_series(client, ref, staging, pacs_dir / "tmp", limits)
            cursor.record(ref.series_uid, ref.study_uid, n, ref.study_date)
            save_cursor(cursor, cursor_path)
            pulled, written, unchanged, nbytes = pulled + 1, written + new, unchanged + n - new, nbytes + size
    except PacsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear, credential-free message
        raise _explain(exc, pacs, pulled) from None
    report = PullReport(pacs, str(staging), len(refs), pulled, current, written, unchanged, nbytes,
                        cursor.pending_ingest, time.perf_counter() - started)
    log.info("PACS pull from %s: %d series found, %d pulled (%d instances, %.1f MB), %d already current",
             pacs, report.series_found, pulled, written, nbytes / 1e6, current)
    return report


def mark_ingested(pacs_dir: Path, url: str) -> None:
    """Clear the cursor's ``pending_ingest`` once the staged data is in the manifest."""
    cursor_path = Path(pacs_dir) / "cursor.json"
    cursor: PacsCursor = load_cursor(cursor_path, url)
    if cursor.pending_ingest:
        cursor.pending_ingest = False
        save_cursor(cursor, cursor_path)


def pacs_modalities(values: Sequence[str]) -> tuple[str, ...]:
    """Upper-cased DICOM modality codes, e.g. ``ct, dx`` -> ``("CT", "DX")``."""
    return tuple(sorted({v.strip().upper() for v in values if v.strip()}))
