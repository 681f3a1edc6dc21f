"""Pull images from a PACS over DIMSE (C-FIND + C-GET) into the same staging folder as the DICOMweb pull.

For a PACS that speaks only DICOM networking. The PACS is named by a URL
``dicom://HOST:PORT/CALLED_AE`` (so it has a cursor and a staging folder like
any PACS), and our own AE title is an argument. C-FIND at study level finds
the studies holding the wanted modalities (and, optionally, a StudyDate
range), C-FIND at series level lists their series with instance counts, and
C-GET retrieves each new series on the same association (no storage SCP to
open, no entry in the PACS's list of destinations: C-GET needs only that the
PACS accepts our AE). The cursor, the staging layout and the file names are
those of :mod:`ingestion.pacs`, so the incremental rules are the same: a
series is fetched again only when its instance count changed.

Each instance is written as received: the dataset exactly as the PACS sent it
in the transfer syntax it stored (one presentation context per SOP class and
transfer syntax is proposed, so the PACS need not transcode), behind a
standard file meta header. The dataset bytes, SOP UIDs and pixel data equal
those of the DICOMweb pull; the file meta header names this receiver.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydicom.dataset import Dataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1,
                         JPEGLSLossless, RLELossless)

from ingestion.atomic_files import atomic_write_bytes
from ingestion.pacs import PacsError, PacsQuery, PullReport, SeriesRef
from ingestion.pacs_cursor import load_cursor, redact_url, save_cursor, uid_token

log = logging.getLogger(__name__)

STORAGE_CLASSES = {
    "CT": ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"),  # CT Image, Enhanced CT Image
    "CR": ("1.2.840.10008.5.1.4.1.1.1",),  # Computed Radiography Image
    "DX": ("1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1"),  # Digital X-Ray, for presentation/processing
}
"""Storage SOP classes received per pulled modality (C-GET's sub-operations need each one negotiated)."""
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit,
                     JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, JPEG2000, RLELossless)
FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
GET = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve Information Model - GET


@dataclass(frozen=True)
class DimseTarget:
    """Where the PACS listens and the AE title it answers to."""

    host: str
    port: int
    called_aet: str


def parse_dimse_url(url: str) -> DimseTarget:
    """``dicom://HOST:PORT/CALLED_AE`` -> :class:`DimseTarget` (raises :class:`PacsError` with an example)."""
    parts = urlsplit(url)
    aet = parts.path.strip("/")
    if parts.scheme != "dicom" or not parts.hostname or not parts.port or not aet or len(aet) > 16:
        raise PacsError(f"DIMSE PACS URL {redact_url(url)!r} must read dicom://HOST:PORT/CALLED_AE, "
                        "e.g. dicom://pacs:104/PACS (AE titles have at most 16 characters)")
    return DimseTarget(parts.hostname, int(parts.port), aet)


def is_dimse_url(url: str) -> bool:
    """True for a ``dicom://`` URL (DIMSE), False for http(s) (DICOMweb)."""
    return urlsplit(url).scheme == "dicom"


def _application_entity(our_aet: str, modalities: tuple[str, ...], timeout_s: float):
    """A pynetdicom AE proposing FIND, GET and, per wanted storage class, one context per transfer syntax."""
    from pynetdicom import AE, build_role

    ae = AE(ae_title=our_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(FIND)
    ae.add_requested_context(GET)
    classes = sorted({c for m in modalities for c in STORAGE_CLASSES.get(m.upper(), ())})
    for sop_class in classes:
        for syntax in TRANSFER_SYNTAXES:
            ae.add_requested_context(sop_class, [syntax])
    roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    return ae, roles


def _find(assoc, identifier: Dataset) -> Iterator[Dataset]:
    """The matches of one C-FIND (raises :class:`PacsError` on a failure status)."""
    for status, match in assoc.send_c_find(identifier, FIND):
        code = int(getattr(status, "Status", -1))
        if code in (0xFF00, 0xFF01) and match is not None:
            yield match
        elif code != 0x0000:
            raise PacsError(f"C-FIND failed with status 0x{code:04X}" if code >= 0 else
                            "C-FIND got no answer: the PACS closed the association or timed out (a PACS that does "
                            "not allow our AE title to query aborts like this: register it there)")


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def find_series_dimse(assoc, query: PacsQuery) -> list[SeriesRef]:
    """C-FIND: the series of the wanted modalities in studies matching the query, sorted by UIDs."""
    wanted = {m.upper() for m in query.modalities}
    studies: dict[str, str | None] = {}
    for modality in sorted(wanted):
        ident = Dataset()
        ident.QueryRetrieveLevel, ident.StudyInstanceUID, ident.ModalitiesInStudy = "STUDY", "", modality
        ident.StudyDate = query.date_filter() or ""
        for match in _find(assoc, ident):
            if _text(match, "StudyInstanceUID"):
                studies[str(match.StudyInstanceUID)] = _text(match, "StudyDate")
    refs = []
    for study_uid, study_date in sorted(studies.items()):
        ident = Dataset()
        ident.QueryRetrieveLevel, ident.StudyInstanceUID = "SERIES", study_uid
        ident.SeriesInstanceUID, ident.Modality, ident.NumberOfSeriesRelatedInstances = "", "", ""
        for match in _find(assoc, ident):
            modality = (_text(match, "Modality") or "").upper()
            if modality in wanted and _text(match, "SeriesInstanceUID"):
                count = _text(match, "NumberOfSeriesRelatedInstances")
                refs.append(SeriesRef(study_uid, str(match.SeriesInstanceUID), modality,
                                      int(count) if count is not None else None, study_date))
    return sorted(refs, key=lambda r: (r.study_uid, r.series_uid))


def _same_file(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and \
        hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def _get_series(assoc, ref: SeriesRef, staging: Path, received: list[tuple[str, bytes]]) -> tuple[int, int, int]:
    """C-GET one series (the C-STORE handler fills ``received``); write its instances; (n, written, bytes)."""
    received.clear()
    ident = Dataset()
    ident.QueryRetrieveLevel, ident.StudyInstanceUID, ident.SeriesInstanceUID = "SERIES", ref.study_uid, ref.series_uid
    final = None
    for status, _ in assoc.send_c_get(ident, GET):
        final = int(getattr(status, "Status", -1))
    if final is None or final < 0 or final not in (0x0000, 0xB000, 0xFF00):
        code = "no answer" if final is None or final < 0 else f"status 0x{final:04X}"
        raise PacsError(f"C-GET of a series failed ({code})")
    folder = staging / uid_token(ref.study_uid) / uid_token(ref.series_uid)
    folder.mkdir(parents=True, exist_ok=True)
    written = nbytes = 0
    for sop_uid, data in received:
        target = folder / f"{uid_token(sop_uid)}.dcm"
        if _same_file(target, data):
            continue
        atomic_write_bytes(target, data)
        written, nbytes = written + 1, nbytes + len(data)
    return len(received), written, nbytes


def pull_dimse(url: str, pacs_dir: Path, query: PacsQuery = PacsQuery(), our_aet: str = "CLINFUSE",
               timeout_s: float = 30.0) -> PullReport:
    """Pull every series not yet pulled (or whose instance count changed) into ``pacs_dir/staging`` over DIMSE.

    The cursor (``pacs_dir/cursor.json``, shared format with the DICOMweb
    pull) is saved after each series. Raises :class:`PacsError` with a clear
    reason when the PACS refuses the association or a query or retrieve fails.
    """
    from pynetdicom import evt

    started = time.perf_counter()
    target, pacs, pacs_dir = parse_dimse_url(url), redact_url(url), Path(pacs_dir)
    staging, cursor_path = pacs_dir / "staging", pacs_dir / "cursor.json"
    cursor = load_cursor(cursor_path, url)
    received: list[tuple[str, bytes]] = []

    def on_store(event) -> int:  # noqa: ANN001 - pynetdicom's event
        received.append((str(event.request.AffectedSOPInstanceUID), event.encoded_dataset(include_meta=True)))
        return 0x0000

    ae, roles = _application_entity(our_aet, query.modalities, timeout_s)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO/DEBUG lines carry UIDs
    assoc = ae.associate(target.host, target.port, ae_title=target.called_aet, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise PacsError(f"PACS {pacs} refused or did not answer the association (our AE {our_aet!r}, called "
                        f"{target.called_aet!r}); check host, port and AE titles, and that the PACS accepts our AE; "
                        "nothing was pulled and the cursor is unchanged")
    pulled = current = written = unchanged = nbytes = 0
    try:
        refs = find_series_dimse(assoc, query)
        for ref in refs:
            if cursor.is_current(ref.series_uid, ref.n_instances):
                current += 1
                continue
            n, new, size = _get_series(assoc, ref, staging, received)
            cursor.record(ref.series_uid, ref.study_uid, n, ref.study_date)
            save_cursor(cursor, cursor_path)
            pulled, written, unchanged, nbytes = pulled + 1, written + new, unchanged + n - new, nbytes + size
    except PacsError as exc:
        raise PacsError(f"PACS {pacs} (our AE {our_aet!r}): {exc}; nothing was lost: {pulled} series pulled "
                        "before the failure are staged and in the cursor, and the next pull resumes") from None
    finally:
        assoc.release()
    report = PullReport(pacs, str(staging), len(refs), pulled, current, written, unchanged, nbytes,
                        cursor.pending_ingest, time.perf_counter() - started)
    log.info("DIMSE pull from %s: %d series found, %d pulled (%d instances, %.1f MB), %d already current",
             pacs, report.series_found, pulled, written, nbytes / 1e6, current)
    return report
