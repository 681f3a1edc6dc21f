"""`clinfuse ingest --pacs dicom://HOST:PORT/AE`: the PACS ingest flow pulls over DIMSE and ingests.

Against a real Orthanc's DICOM port: the flow's manifest items equal those of
the DICOMweb pull of the same PACS (same patients, modalities, statuses), and a
second run pulls and ingests nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.orthanc_server import run_orthanc

pytestmark = [pytest.mark.server, pytest.mark.slow]

SECRET = "dimse-flow-secret"


def _items(home: Path) -> pd.DataFrame:
    frame = pd.read_parquet(home / "manifest.parquet")[["patient_id", "modality", "status"]]
    return frame.sort_values(["patient_id", "modality"]).reset_index(drop=True)


def _pull(url: str, home: Path) -> dict:
    from flows.flows.pacs import pacs_ingest_flow
    from flows.prefect_env import prefect_settings, settings_for

    with prefect_settings(settings_for(str(home))):
        return pacs_ingest_flow(url=url, home=str(home))


def test_dimse_ingest_flow_matches_dicomweb_and_second_run_moves_nothing(tmp_path: Path, monkeypatch) -> None:
    from flows.settings import get_settings
    from ingestion.phantom import generate_cohort

    # One patient (a CT series and its radiographs): both protocols and the no-op re-run are shown on it;
    # each further patient adds a CT series ingested (and body-fitted) by both pulls.
    generate_cohort(tmp_path / "cohort", 1, seed=31, missing_rate=0.0, eeg_seconds=(4, 4))
    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", SECRET)
    monkeypatch.setenv("CLINFUSE_WORKERS", "1")
    monkeypatch.setenv("CLINFUSE_PACS_AE_TITLE", "CLINFUSEFLOW")
    get_settings.cache_clear()
    try:
        with run_orthanc(tmp_path / "orthanc", dicom=True, known_aets=("CLINFUSEFLOW",)) as pacs:
            for path in sorted((tmp_path / "cohort" / "dicom").rglob("*.dcm")):
                pacs.upload(path)
            dimse_url = f"dicom://127.0.0.1:{pacs.dicom_port}/{pacs.aet}"
            first = _pull(dimse_url, tmp_path / "dimse-home")
            web = _pull(pacs.dicomweb, tmp_path / "web-home")
            again = _pull(dimse_url, tmp_path / "dimse-home")
    finally:
        get_settings.cache_clear()
    assert first["pull"].series_pulled == web["pull"].series_pulled > 0 and first["ingest"] is not None
    items = _items(tmp_path / "dimse-home")
    assert (items["status"] == "ok").all() and set(items["modality"]) <= {"ct", "xray"}
    pd.testing.assert_frame_equal(items, _items(tmp_path / "web-home"))
    assert again["pull"].series_pulled == 0 and again["ingest"] is None
