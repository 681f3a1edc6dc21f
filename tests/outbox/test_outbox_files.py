"""The outbox files: a Comprehensive SR per patient and a validated FHIR bundle per batch, from real DICOM.

References are the de-identified UIDs (the same ones a de-identified copy of
the file carries), ids are pseudonyms, and writing the same batch twice
leaves the same files.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from ingestion.deid.dicom import deidentify_dataset
from ingestion.deid.uids import deidentified_refs
from ingestion.phantom import generate_cohort
from models.outbox.fhir import build_bundle, validate_bundle
from models.outbox.outbox import Ledger, patient_sources, write_outbox
from models.outbox.result import PatientResult, results_from_batch
from models.outbox.sr import build_sr, read_risk, sr_bytes

SECRET = "outbox-test-secret"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("outbox") / "cohort"
    generate_cohort(out, 3, seed=5, missing_rate=0.0, mechanism="mcar", eeg_seconds=(30, 31))
    return out


def _series_files(cohort: Path) -> list[list[Path]]:
    """The cohort's DICOM folders, each as its sorted files (a CT series or one X-ray)."""
    return [sorted(d.glob("*.dcm")) for d in sorted((cohort / "dicom").iterdir())]


def _evidence_uids(ds: pydicom.Dataset) -> set[str]:
    """SOP Instance UIDs the SR lists as evidence, in its own study or in others."""
    studies = [*ds.get("CurrentRequestedProcedureEvidenceSequence", []), *ds.get("PertinentOtherEvidenceSequence", [])]
    return {i.ReferencedSOPInstanceUID for s in studies for r in s.ReferencedSeriesSequence
            for i in r.ReferencedSOPSequence}


def _result(pid: str, refs=(), **kw) -> PatientResult:
    values = dict(model_name="clinfuse", model_version="4", run_id="run1", risk=0.731, risk_low=0.61, risk_high=0.83,
                  predicted_class=1, abstain=False, abstain_reason="", contributions={"ct": 0.21, "eeg": -0.04},
                  mask={"ct": "present", "xray": "missing", "eeg": "imputed", "note": "present"}, predicted_at=NOW,
                  inputs=("a" * 64,), references=tuple(refs))
    values.update(kw)
    return PatientResult(pid, **values)


def test_sr_reads_back_risk_and_references_deidentified_uids(cohort: Path) -> None:
    files = max(_series_files(cohort), key=len)  # a CT series
    refs, skipped = deidentified_refs(files, SECRET)
    assert not skipped and len(refs) == len(files)
    copy = deidentify_dataset(pydicom.dcmread(files[0]), SECRET)
    assert copy.SOPInstanceUID in {r.sop_uid for r in refs}
    assert {r.study_uid for r in refs} == {copy.StudyInstanceUID}
    original = pydicom.dcmread(files[0])

    data = sr_bytes(_result(refs[0].patient_id, refs))
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert ds.PatientID == refs[0].patient_id and ds.StudyInstanceUID == copy.StudyInstanceUID
    assert read_risk(ds) == {"risk": 0.731, "risk_low": 0.61, "risk_high": 0.83, "outcome": "positive",
                             "model_name": "clinfuse", "model_version": "4"}
    assert _evidence_uids(ds) == {r.sop_uid for r in refs}
    for phi in (str(original.PatientID), str(original.StudyInstanceUID), str(original.SOPInstanceUID)):
        assert phi.encode() not in data


def test_every_reference_is_what_a_deidentified_copy_of_its_whole_file_holds(cohort: Path) -> None:
    """The references de-identify only their own elements with one anonymizer per patient; every UID must be
    the one deidentify_dataset writes into a copy of the whole file (CT series and X-rays of every patient)."""
    files = [f for series in _series_files(cohort) for f in series]
    refs, skipped = deidentified_refs(files, SECRET)
    assert not skipped and len(refs) == len(files) > 10
    expected = set()
    for f in files:
        copy = deidentify_dataset(pydicom.dcmread(f, stop_before_pixels=True), SECRET)
        expected.add((str(copy.PatientID), str(copy.StudyInstanceUID), str(copy.SeriesInstanceUID),
                      str(copy.SOPInstanceUID), str(copy.SOPClassUID), str(copy.Modality)))
    assert {(r.patient_id, r.study_uid, r.series_uid, r.sop_uid, r.sop_class_uid, r.modality) for r in refs} == expected
    assert len({r.patient_id for r in refs}) == 3


def test_abstained_patient_without_images_gets_own_study_and_no_evidence() -> None:
    result = _result("P0123456789ab", predicted_class=None, abstain=True, abstain_reason="interval too wide")
    first, second = build_sr(result), build_sr(result)
    assert first.SOPInstanceUID == second.SOPInstanceUID and first.StudyInstanceUID == second.StudyInstanceUID
    assert "CurrentRequestedProcedureEvidenceSequence" not in first
    assert read_risk(first)["outcome"] == "abstained"
    assert build_sr(_result("P0123456789ab", inputs=("b" * 64,))).SOPInstanceUID != first.SOPInstanceUID


def test_result_refuses_a_raw_patient_id() -> None:
    with pytest.raises(ValueError, match="pseudonym"):
        _result("MRN12345")


def test_bundle_validates_and_carries_one_risk_assessment_per_patient() -> None:
    results = [_result("P0123456789ab"), _result("Pba9876543210", predicted_class=None, abstain=True,
                                                 abstain_reason="far from training data")]
    bundle = validate_bundle(json.dumps(build_bundle(results)))
    assert bundle.type == "transaction" and len(bundle.entry) == 2
    first, second = (e.resource for e in bundle.entry)
    assert first.subject.reference == "Patient/P0123456789ab" and float(first.prediction[0].probabilityDecimal) == 0.731
    assert second.prediction[0].qualitativeRisk.text == "abstained"
    assert bundle.entry[0].request.method == "PUT" and bundle.entry[0].request.url == f"RiskAssessment/{first.id}"
    assert build_bundle(results)["id"] == build_bundle(list(reversed(results)))["id"]
    with pytest.raises(ValueError):
        validate_bundle(json.dumps({"resourceType": "Bundle", "type": "transaction",
                                    "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}]}))
    for broken in ({"resourceType": "RiskAssessment", "subject": {"reference": "Patient/P0123456789ab"}},  # no status
                   {**first.model_dump(mode="json"), "prediction": [{"probabilityDecimal": "high"}]}):
        with pytest.raises(ValueError):
            validate_bundle(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": broken}]}))


def _manifest(cohort: Path) -> pd.DataFrame:
    """Manifest rows for the cohort's DICOM folders (as ingest writes them: files relative to the source root)."""
    rows = []
    for i, files in enumerate(_series_files(cohort)):
        pid = deidentify_dataset(pydicom.dcmread(files[0], stop_before_pixels=True), SECRET).PatientID
        rows.append({"patient_id": pid, "modality": "ct" if len(files) > 1 else "xray", "status": "ok",
                     "content_sha256": f"{i:064x}", "source_files": [str(f.relative_to(cohort)) for f in files]})
    return pd.DataFrame(rows)


def test_outbox_written_once_per_batch(cohort: Path, tmp_path: Path) -> None:
    manifest = _manifest(cohort)
    pids = sorted(manifest["patient_id"].unique())
    inputs, refs, skipped = patient_sources(manifest, pids, cohort, SECRET)
    assert not skipped and set(refs) == set(pids)
    batch = pd.DataFrame([{"patient_id": pid, "model_name": "clinfuse", "model_version": "4", "run_id": "r",
                           "risk": 0.2 + 0.1 * i, "risk_low": 0.1, "risk_high": 0.5, "predicted_class": 0,
                           "abstain": False, "abstain_reason": "", "contrib_ct": 0.1, "contrib_xray": 0.0,
                           "contrib_eeg": None, "contrib_note": None, "mask_ct": "present", "mask_xray": "present",
                           "mask_eeg": "missing", "mask_note": "missing", "predicted_at": NOW}
                          for i, pid in enumerate(pids)])
    outbox = tmp_path / "outbox"
    first = write_outbox(results_from_batch(batch, inputs, refs), outbox)
    assert (first.sr_written, first.sr_present, first.bundle_written) == (len(pids), 0, True)
    names = sorted(p.name for p in (outbox / "sr").iterdir())
    batch["risk"] += 0.001  # a re-run whose Monte Carlo estimate moved: the same results
    again = write_outbox(results_from_batch(batch, inputs, refs), outbox)
    assert (again.sr_written, again.sr_present, again.bundle_written) == (0, len(pids), False)
    assert sorted(p.name for p in (outbox / "sr").iterdir()) == names
    assert len(list((outbox / "fhir").iterdir())) == 1
    by_patient = {pydicom.dcmread(p).PatientID: pydicom.dcmread(p) for p in (outbox / "sr").iterdir()}
    assert set(by_patient) == set(pids)
    for pid in pids:
        assert {r.sop_uid for r in refs[pid]} == _evidence_uids(by_patient[pid])

    same_inputs, no_refs, why = patient_sources(manifest, pids, tmp_path / "gone", SECRET)
    assert same_inputs == inputs and all(not r for r in no_refs.values()) and len(why) == len(pids) and all("no longer under the source folder" in w for w in why)


def test_ledger_keeps_failure_reason_until_sent(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.record("stow:http://pacs", "a.dcm", "PACS answered HTTP 503")
    assert not ledger.was_sent("stow:http://pacs", "a.dcm")
    assert ledger.read()["failed"]["stow:http://pacs"]["a.dcm"]["reason"] == "PACS answered HTTP 503"
    ledger.record("stow:http://pacs", "a.dcm")
    assert ledger.was_sent("stow:http://pacs", "a.dcm") and not ledger.was_sent("stow:http://other", "a.dcm")
    assert ledger.read()["failed"]["stow:http://pacs"] == {}
    with open(ledger.path, "a", encoding="utf-8") as fh:
        fh.write('{"destination": "stow:http://pacs", "item": "b.dc')  # a crash mid-append
    assert ledger.sent_items("stow:http://pacs") == {"a.dcm"}  # the torn attempt counts as not made
    ledger.record("stow:http://pacs", "b.dcm")
    assert ledger.sent_items("stow:http://pacs") == {"a.dcm", "b.dcm"}  # the next record starts a line of its own
    assert len(ledger.path.read_text().splitlines()) == 4


def test_a_result_with_a_non_finite_value_is_left_out_with_its_reason(tmp_path: Path) -> None:
    good, bad = _result("P0123456789ab"), _result("Pba9876543210", risk_low=float("nan"))
    written = write_outbox([good, bad], tmp_path / "outbox")
    assert written.sr_written == 1 and written.bundle_written
    assert len(written.failed) == 2 and all(f.startswith("Pba9876543210: no ") for f in written.failed)
    assert {pydicom.dcmread(p).PatientID for p in (tmp_path / "outbox" / "sr").iterdir()} == {"P0123456789ab"}
    entries = json.loads(Path(written.bundle).read_text())["entry"]
    assert [e["resource"]["subject"]["reference"] for e in entries] == ["Patient/P0123456789ab"]
    assert write_outbox([bad], tmp_path / "other").bundle == ""


def _batch(pids: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"patient_id": pid, "model_name": "clinfuse", "model_version": "4", "run_id": "r",
                          "risk": 0.2 + 0.1 * i, "risk_low": 0.1, "risk_high": 0.5, "predicted_class": 0,
                          "abstain": False, "abstain_reason": "", "contrib_ct": 0.1, "contrib_xray": 0.0,
                          "contrib_eeg": None, "contrib_note": None, "mask_ct": "present", "mask_xray": "present",
                          "mask_eeg": "missing", "mask_note": "missing", "predicted_at": NOW}
                         for i, pid in enumerate(pids)])


def _without_clock(path: Path) -> str:
    """An SR's content apart from the wall-clock times highdicom stamps when it builds one."""
    ds = pydicom.dcmread(path)
    for keyword in ("InstanceCreationDate", "InstanceCreationTime"):
        ds.pop(keyword, None)
    for item in ds.get("ContributingEquipmentSequence", []):
        item.pop("ContributionDateTime", None)
    return ds.to_json()


def test_outbox_on_spawned_processes_writes_the_same_files(cohort: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """References and SRs computed on two spawned processes give the same SRs (but for highdicom's creation
    clock) and the same bundle."""
    from models.outbox import parallel
    from models.outbox.outbox import needing_references

    manifest = _manifest(cohort)
    pids = sorted(manifest["patient_id"].unique())
    batch = _batch(pids)
    inputs, refs, _ = patient_sources(manifest, pids, cohort, SECRET)
    write_outbox(results_from_batch(batch, inputs, refs), tmp_path / "serial")
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 1)
    with parallel.outbox_mapper(2, len(pids)) as map_fn:
        assert map_fn is not parallel.serial_map  # the pool, for real
        inputs2, refs2, skipped = patient_sources(manifest, pids, cohort, SECRET, map_fn)
        written = write_outbox(results_from_batch(batch, inputs2, refs2), tmp_path / "pool", map_fn)
    assert not skipped and refs2 == refs and written.sr_written == len(pids)
    serial = {p.name: _without_clock(p) for p in (tmp_path / "serial" / "sr").iterdir()}
    assert serial == {p.name: _without_clock(p) for p in (tmp_path / "pool" / "sr").iterdir()}
    bundles = {p.name: p.read_bytes() for p in (tmp_path / "serial" / "fhir").iterdir()}
    assert bundles == {p.name: p.read_bytes() for p in (tmp_path / "pool" / "fhir").iterdir()}
    # a written batch needs no header read again; a missing SR needs its patient's, a missing bundle everyone's
    bare = results_from_batch(batch, inputs, {})
    assert needing_references(bare, tmp_path / "pool") == set()
    next((tmp_path / "pool" / "sr").iterdir()).unlink()
    assert len(needing_references(bare, tmp_path / "pool")) == 1
    next((tmp_path / "pool" / "fhir").iterdir()).unlink()
    assert needing_references(bare, tmp_path / "pool") == set(pids)
