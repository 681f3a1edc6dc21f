"""Send the outbox: SRs to the PACS over STOW-RS, bundles to the EHR's FHIR endpoint.

Each item is sent at most once per destination (the outbox ledger says
which were), so a re-run sends only what is new or failed before. A failure
(refused, unreachable, rejected) never raises: the item stays in the outbox,
the ledger keeps the reason, and the report counts it; the next send retries
it. Destinations are recorded and shown by their redacted URL only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import requests

from ingestion.pacs_cursor import redact_url
from models.outbox.fhir import FHIR_JSON, validate_bundle
from models.outbox.outbox import Ledger, pending_items

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    """Per kind (``sr``, ``fhir``): items sent now, already sent before, failed (with reasons)."""

    sent: dict[str, int] = field(default_factory=lambda: {"sr": 0, "fhir": 0})
    already: dict[str, int] = field(default_factory=lambda: {"sr": 0, "fhir": 0})
    failed: dict[str, list[str]] = field(default_factory=lambda: {"sr": [], "fhir": []})

    @property
    def n_failed(self) -> int:
        return sum(len(v) for v in self.failed.values())


def _reason(exc: Exception, where: str) -> str:
    """A short, credential-free reason for a failed send."""
    response = getattr(exc, "response", None)
    if isinstance(exc, requests.HTTPError) and response is not None:
        detail = (response.text or "")[:200].replace("\n", " ")
        return f"{where} answered HTTP {response.status_code} ({response.reason}) {detail}".strip()
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return f"{where} did not answer ({type(exc).__name__}); check the URL and that it is running"
    return f"{where}: {type(exc).__name__}: {str(exc)[:200]}"


def _send_pending(outbox: Path, kind: str, destination: str, where: str, send_one: Callable[[Path], None],
                  report: SendReport) -> SendReport:
    """Send each ``kind`` item of the outbox the ledger has not seen accepted at ``destination``.

    A failure leaves the item queued with its reason; after a connection error or timeout the rest are not
    tried (one timeout each would stall the batch) and are recorded as "not tried".
    """
    ledger = Ledger(outbox)
    unreachable: str | None = None
    sent_before = ledger.sent_items(destination)
    for path in pending_items(outbox)[kind]:
        if path.name in sent_before:
            report.already[kind] += 1
            continue
        if unreachable is None:
            try:
                send_one(path)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the item queued with its reason
                reason = _reason(exc, where)
                if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
                    unreachable = reason
            else:
                ledger.record(destination, path.name)
                report.sent[kind] += 1
                continue
        else:
            reason = f"not tried: {unreachable}"
        ledger.record(destination, path.name, reason)
        report.failed[kind].append(f"{path.name}: {reason}")
    return report


def send_srs(outbox: Path, client: Any, url: str, report: SendReport | None = None) -> SendReport:
    """STOW-RS every SR of the outbox not yet stored at ``url`` (``client``: a ``DICOMwebClient``)."""
    return _send_pending(outbox, "sr", f"stow:{redact_url(url)}", f"PACS {redact_url(url)}",
                         lambda path: client.store_instances([pydicom.dcmread(path)]), report or SendReport())


def post_bundles(outbox: Path, base_url: str, session: requests.Session | None = None, token: str | None = None,
                 timeout_s: float = 30.0, report: SendReport | None = None) -> SendReport:
    """POST every bundle of the outbox not yet accepted by the FHIR server at ``base_url`` (a transaction)."""
    session = session or requests.Session()
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def post(path: Path) -> None:
        body = path.read_bytes()
        validate_bundle(body)
        session.post(base_url.rstrip("/"), data=body, headers=headers, timeout=timeout_s).raise_for_status()

    return _send_pending(outbox, "fhir", f"fhir:{redact_url(base_url)}", f"FHIR server {redact_url(base_url)}",
                         post, report or SendReport())
