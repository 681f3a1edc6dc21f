"""`predict` leaves every batch's SRs and FHIR bundle in the home's outbox and sends them where configured.

End to end: a champion trained on the small phantom scores 4 new patients;
each gets an SR (pseudonymous, referencing the de-identified UIDs of their
CT/X-ray) stored to a real Orthanc over STOW-RS, and the batch's bundle is
POSTed to a loopback FHIR endpoint. Predicting the same batch again writes
and sends nothing new.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.outbox.test_outbox_send import FakeFhir, fhir_server  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_predict_writes_and_sends_the_outbox_once(settings, small_phantom, tmp_path: Path, monkeypatch,
                                                  fhir_server: str, empty_orthanc,  # noqa: F811
                                                  ingested_phantom_home: Path) -> None:
    from flows.flows.ingest import ingest_flow
    from flows.flows.predict import predict_flow
    from flows.flows.train import train_flow
    from flows.prefect_env import prefect_settings
    from flows.settings import get_settings
    from ingestion.deid.dicom import deidentify_dataset
    from ingestion.manifest import read_manifest
    from ingestion.phantom import generate_cohort
    from ingestion.pacs import connect
    from models.outbox.sr import read_risk
    from models.stores.predictions import read_latest_batch
    from tests.shared_home import copy_ingested

    copy_ingested(ingested_phantom_home, settings.home)  # the ingest below then finds every item done
    new = tmp_path / "new"
    generate_cohort(new, 4, seed=41, missing_rate=0.0, eeg_seconds=(20, 20))
    pacs = empty_orthanc
    monkeypatch.setenv("CLINFUSE_OUTBOX_STOW_URL", pacs.dicomweb)
    monkeypatch.setenv("CLINFUSE_OUTBOX_FHIR_URL", fhir_server)
    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", settings.pseudonym_secret.get_secret_value())
    get_settings.cache_clear()
    try:
        with prefect_settings(settings):
            ingest_flow(source=str(small_phantom), cohort_csv=str(small_phantom / "cohort.csv"),
                        home=str(settings.home))
            train_flow(home=str(settings.home), epochs=3)
            first = predict_flow(source=str(new), home=str(settings.home), n_mc=3)
            again = predict_flow(source=str(new), home=str(settings.home), n_mc=3)
    finally:
        get_settings.cache_clear()
    batch = read_latest_batch(settings.predictions_dir).set_index("patient_id")
    srs = {pydicom.dcmread(p).PatientID: pydicom.dcmread(p) for p in (settings.outbox_dir / "sr").glob("*.dcm")}
    assert set(srs) == set(batch.index) and len(srs) == 4
    assert first["outbox"]["written"].sr_written == 4 and again["outbox"]["written"].sr_written == 0
    assert first["outbox"]["sent"].sent == {"sr": 4, "fhir": 1}
    assert again["outbox"]["sent"].sent == {"sr": 0, "fhir": 0} and again["outbox"]["sent"].n_failed == 0
    assert len(list((settings.outbox_dir / "fhir").glob("*.json"))) == 1 and len(FakeFhir.received) == 1

    manifest = read_manifest(settings.manifest_path)
    for pid, sr in srs.items():
        assert read_risk(sr)["risk"] == pytest.approx(float(batch.loc[pid, "risk"]), abs=1e-3)
        ct = manifest[(manifest["patient_id"] == pid) & (manifest["modality"] == "ct") & (manifest["status"] == "ok")]
        if len(ct):
            source = deidentify_dataset(pydicom.dcmread(new / ct.iloc[0]["source_files"][0]), settings.pseudonym_secret.get_secret_value())
            assert sr.StudyInstanceUID == source.StudyInstanceUID or source.StudyInstanceUID in {
                s.StudyInstanceUID for s in sr.get("PertinentOtherEvidenceSequence", [])}
    stored = connect(pacs.dicomweb).search_for_instances(search_filters={"Modality": "SR"})
    assert len(stored) == 4
