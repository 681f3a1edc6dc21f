"""Ingest from a PACS: a real Orthanc with its DICOMweb plugin, started on 127.0.0.1 by the test.

Pulling gives the same manifest items as ingesting the same files from a
folder; a second pull moves no data; a study added later is picked up by the
next pull; an unreachable PACS fails the flow run with a clear message and
loses nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]

SECRET = "pacs-test-secret"
COLUMNS = ["item_id", "patient_id", "modality", "status", "reason"]


@pytest.fixture
def orthanc(empty_orthanc) -> str:
    """The session's Orthanc (DICOMweb at /dicom-web/, loopback), emptied for this test: as a fresh one would be."""
    return empty_orthanc.base


def _upload(base: str, files: list[Path]) -> None:
    """Orthanc's REST ``POST /instances``: store each file as-is."""
    for path in files:
        request = urllib.request.Request(base + "/instances", data=path.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert json.load(resp)["Status"] in ("Success", "AlreadyStored")


@pytest.fixture(scope="module")
def dicom_by_patient(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """A 4-patient phantom's DICOM files (CT series and radiographs), grouped by patient."""
    from ingestion.phantom import generate_cohort

    out = tmp_path_factory.mktemp("pacs_phantom") / "cohort"
    generate_cohort(out, 4, seed=5, missing_rate=0.0, eeg_seconds=(4, 4))
    groups: dict[str, list[Path]] = {}
    for path in sorted((out / "dicom").rglob("*")):
        if path.is_file():
            pid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"]).get("PatientID"))
            groups.setdefault(pid, []).append(path)
    assert len(groups) == 4
    return [groups[k] for k in sorted(groups)]


def _copy(files: list[Path], dest: Path) -> Path:
    for path in files:
        target = dest / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def _items(home: Path) -> pd.DataFrame:
    frame = pd.read_parquet(home / "manifest.parquet")[COLUMNS]
    return frame.sort_values("item_id").reset_index(drop=True)


@pytest.fixture
def pacs_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", SECRET)
    monkeypatch.setenv("CLINFUSE_WORKERS", "1")
    monkeypatch.delenv("CLINFUSE_PACS_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _pull(url: str, home: Path) -> dict:
    from flows.flows.pacs import pacs_ingest_flow
    from flows.prefect_env import prefect_settings, settings_for

    with prefect_settings(settings_for(str(home))):
        return pacs_ingest_flow(url=url, home=str(home))


def _ingest_folder(source: Path, home: Path) -> None:
    from flows.flows.ingest import ingest_flow
    from flows.prefect_env import prefect_settings, settings_for

    with prefect_settings(settings_for(str(home))):
        ingest_flow(source=str(source), home=str(home))


def test_pull_matches_folder_ingest_and_is_incremental(orthanc, dicom_by_patient, pacs_env, tmp_path) -> None:
    url = orthanc + "/dicom-web"
    first, later = [f for group in dicom_by_patient[:2] for f in group], [f for g in dicom_by_patient[2:] for f in g]
    _upload(orthanc, first)
    home = tmp_path / "pacs-home"
    result = _pull(url, home)
    pulled = result["pull"]
    assert pulled.series_pulled == pulled.series_found > 0 and pulled.instances_written == len(first)
    assert result["ingest"].new > 0

    folder_home = tmp_path / "folder-home"
    _ingest_folder(_copy(first, tmp_path / "folder"), folder_home)
    pd.testing.assert_frame_equal(_items(home), _items(folder_home))
    assert set(_items(home)["modality"]) == {"ct", "xray"}

    manifest_bytes = (home / "manifest.parquet").read_bytes()
    again = _pull(url, home)
    assert again["pull"].series_pulled == 0 and again["pull"].instances_written == 0
    assert again["pull"].series_current == pulled.series_found and again["ingest"] is None
    assert (home / "manifest.parquet").read_bytes() == manifest_bytes  # a re-run moves no data

    _upload(orthanc, later)
    newer = _pull(url, home)
    assert newer["pull"].series_pulled == newer["pull"].series_found - pulled.series_found > 0
    assert newer["pull"].instances_written == len(later)
    _ingest_folder(_copy(later, tmp_path / "folder"), folder_home)
    pd.testing.assert_frame_equal(_items(home), _items(folder_home))
    assert len(set(_items(home)["patient_id"])) == 4


def test_unreachable_pacs_fails_the_run_and_loses_nothing(orthanc, dicom_by_patient, pacs_env, tmp_path) -> None:
    from ingestion.pacs import PacsError

    home = tmp_path / "home"
    _upload(orthanc, dicom_by_patient[0])
    _pull(orthanc + "/dicom-web", home)
    before = _items(home)
    staged = {p: p.read_bytes() for p in (home / "pacs").rglob("*") if p.is_file()}
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(PacsError, match=r"did not answer .*nothing was lost"):
        _pull(dead, home)
    pd.testing.assert_frame_equal(_items(home), before)
    assert {p: p.read_bytes() for p in (home / "pacs").rglob("*") if p.is_file()} == staged


def test_cli_pull_hides_credentials_and_reports(orthanc, dicom_by_patient, prefect_api, tmp_path) -> None:
    import sys

    env = {**os.environ, "CLINFUSE_HOME": str(tmp_path / "home"), "CLINFUSE_PSEUDONYM_SECRET": SECRET,
           "CLINFUSE_PACS_USERNAME": "reader", "CLINFUSE_PACS_PASSWORD": "pw-never-shown-123", "COLUMNS": "200",
           "PREFECT_API_URL": prefect_api}  # the shared server: no temporary Prefect server per child process
    radiographs = [f for group in dicom_by_patient for f in group
                   if pydicom.dcmread(f, stop_before_pixels=True).Modality in ("CR", "DX")]
    _upload(orthanc, radiographs[:1])  # one small study keeps the child process quick; the flow test pulls more
    cli = [sys.executable, "-m", "flows.cli", "ingest", "--pacs", orthanc + "/dicom-web"]
    out = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "series found" in out.stdout and "pw-never-shown-123" not in out.stdout + out.stderr
    dead = subprocess.run(cli[:-1] + [f"http://127.0.0.1:{free_port()}/dicom-web"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert dead.returncode == 1 and "did not answer" in dead.stdout
    in_url = subprocess.run(cli[:-1] + [orthanc.replace("http://", "http://reader:pw-in-url-456@") + "/dicom-web"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert in_url.returncode == 2 and "CLINFUSE_PACS_PASSWORD" in in_url.stdout
    assert "pw-in-url-456" not in in_url.stdout + in_url.stderr
    assert "pw-never-shown-123" not in dead.stdout + dead.stderr
