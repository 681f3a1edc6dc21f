"""Sending the outbox: SRs stored to a real Orthanc over STOW-RS and read back over QIDO/WADO; bundles
POSTed to a loopback fake FHIR endpoint that checks what a FHIR server would. Nothing is sent twice, and a
destination that fails leaves the item in the outbox with its reason."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingestion.deid.uids import deidentified_refs
from ingestion.pacs import connect
from ingestion.phantom import generate_cohort
from models.outbox.fhir import validate_bundle
from models.outbox.outbox import Ledger, write_outbox
from models.outbox.result import PatientResult
from models.outbox.send import post_bundles, send_srs
from models.outbox.sr import read_risk
from tests.conftest import free_port

SECRET = "outbox-send-secret"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class FakeFhir(BaseHTTPRequestHandler):
    """Accepts a POSTed transaction Bundle of RiskAssessments (application/fhir+json), like a FHIR server's base."""

    received: list[dict] = []
    fail_next = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if type(self).fail_next:
            type(self).fail_next -= 1
            return self._answer(503, {"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                                                    "code": "transient"}]})
        if self.headers.get("Content-Type", "").split(";")[0] != "application/fhir+json":
            return self._answer(415, {"resourceType": "OperationOutcome"})
        doc = json.loads(body)
        if doc.get("resourceType") != "Bundle" or doc.get("type") != "transaction" or any(
                e["resource"]["resourceType"] != "RiskAssessment" for e in doc.get("entry", [])):
            return self._answer(422, {"resourceType": "OperationOutcome"})
        validate_bundle(body)
        type(self).received.append(doc)
        self._answer(200, {"resourceType": "Bundle", "type": "transaction-response",
                           "entry": [{"response": {"status": "201 Created"}} for _ in doc["entry"]]})

    def _answer(self, code: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass


@pytest.fixture
def fhir_server() -> Iterator[str]:
    FakeFhir.received, FakeFhir.fail_next = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeFhir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PatientResult]]:
    """An outbox with one SR per phantom patient (3 patients, their images referenced) and one bundle."""
    root = tmp_path_factory.mktemp("send")
    generate_cohort(root / "cohort", 3, seed=9, missing_rate=0.0, mechanism="mcar", eeg_seconds=(30, 31))
    refs, _ = deidentified_refs(sorted((root / "cohort" / "dicom").rglob("*.dcm")), SECRET)
    results = []
    for i, pid in enumerate(sorted({r.patient_id for r in refs})):
        results.append(PatientResult(pid, "clinfuse", "2", "run", 0.1 + 0.3 * i, 0.05 + 0.3 * i, 0.2 + 0.3 * i, i % 2,
                                     False, "", {"ct": 0.1}, {"ct": "present"}, NOW, (f"{i:064x}",),
                                     tuple(r for r in refs if r.patient_id == pid)))
    write_outbox(results, root / "outbox")
    return root / "outbox", results


def _fresh(outbox: tuple[Path, list[PatientResult]], tmp_path: Path) -> Path:
    """A private copy of the module's outbox (each test keeps its own ledger)."""
    import shutil

    shutil.copytree(outbox[0], tmp_path / "outbox")
    return tmp_path / "outbox"


@pytest.mark.server
@pytest.mark.slow
def test_srs_stored_over_stow_are_retrievable_with_their_risk(outbox, empty_orthanc, tmp_path: Path) -> None:
    box, results = _fresh(outbox, tmp_path), outbox[1]
    pacs = empty_orthanc
    client = connect(pacs.dicomweb)
    report = send_srs(box, client, pacs.dicomweb)
    assert report.sent["sr"] == len(results) and not report.failed["sr"]
    for result in results:
        found = client.search_for_instances(search_filters={"PatientID": result.patient_id, "Modality": "SR"})
        assert len(found) == 1
        uid = lambda key: found[0][key]["Value"][0]  # noqa: E731
        ds = client.retrieve_instance(uid("0020000D"), uid("0020000E"), uid("00080018"))
        assert read_risk(ds)["risk"] == pytest.approx(result.risk)
        assert ds.StudyInstanceUID in {r.study_uid for r in result.references}
    again = send_srs(box, client, pacs.dicomweb)
    assert again.sent["sr"] == 0 and again.already["sr"] == len(results)
    assert Ledger(box).read()["sent"][f"stow:{pacs.dicomweb}"].keys() == {p.name for p in (box / "sr").iterdir()}


@pytest.mark.server
def test_stow_to_a_dead_pacs_keeps_items_with_a_reason(outbox, tmp_path: Path) -> None:
    box = _fresh(outbox, tmp_path)
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    report = send_srs(box, connect(url, timeout_s=2), url)
    assert report.sent["sr"] == 0 and len(report.failed["sr"]) == len(outbox[1])
    failed = Ledger(box).read()["failed"][f"stow:{url}"]
    assert len(failed) == len(outbox[1]) and all("did not answer" in v["reason"] for v in failed.values())
    tried = [v["reason"] for v in failed.values() if not v["reason"].startswith("not tried")]
    assert len(tried) == 1  # after the first connection failure the rest wait for the next send
    assert len(list((box / "sr").iterdir())) == len(outbox[1])


@pytest.mark.server
def test_bundle_posted_once_and_retried_after_a_failure(outbox, tmp_path: Path, fhir_server: str) -> None:
    box = _fresh(outbox, tmp_path)
    FakeFhir.fail_next = 1
    first = post_bundles(box, fhir_server)
    assert first.sent["fhir"] == 0 and "HTTP 503" in first.failed["fhir"][0]
    assert "HTTP 503" in next(iter(Ledger(box).read()["failed"][f"fhir:{fhir_server}"].values()))["reason"]
    second = post_bundles(box, fhir_server)
    assert second.sent["fhir"] == 1 and not second.failed["fhir"]
    assert len(FakeFhir.received) == 1
    subjects = {e["resource"]["subject"]["reference"] for e in FakeFhir.received[0]["entry"]}
    assert subjects == {f"Patient/{r.patient_id}" for r in outbox[1]}
    third = post_bundles(box, fhir_server)
    assert third.sent["fhir"] == 0 and third.already["fhir"] == 1 and len(FakeFhir.received) == 1
