"""`clinfuse ingest` end to end on a small folder: summary table, exit codes, idempotent re-run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from ingestion.modalities import STANDARD_1020
from tests.ingestion.source_factory import write_edf
from ingestion.manifest import read_manifest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from flows.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", "cli-secret")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def test_ingest_command_summarises_and_is_idempotent(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_edf(src / "a.edf", list(STANDARD_1020), patient="MRN00000001")
    (src / "b.edf").write_bytes(b"0       " + bytes(200))  # a header cut short
    (src / "table.xlsx").write_bytes(b"PK\x03\x04 not for us")
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("patient_id,label\nMRN00000001,1\nMRN00000002,0\n")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--source", str(src), "--cohort", str(cohort), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "Quarantined (2)" in result.output and "unrecognised file type" in result.output
    assert "in cohort but without any file" in result.output
    assert "MRN0000000" not in result.output  # only pseudonyms on screen
    df = read_manifest(home / "manifest.parquet")
    assert sorted(df["status"]) == ["ok", "quarantined", "quarantined"]
    assert (home / "cohort.parquet").is_file()

    again = runner.invoke(app, ["ingest", "--source", str(src), "--workers", "1"])
    assert again.exit_code == 0 and "0 item(s) read now, 3 already in the manifest" in again.output


def test_missing_source_is_a_clear_error(tmp_path: Path, home: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", "--source", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())


def test_excluded_files_are_not_ingested(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_edf(src / "a.edf", list(STANDARD_1020), patient="MRN00000001")
    (src / "answers.parquet").write_bytes(b"PAR1 evaluation only")
    result = CliRunner().invoke(app, ["ingest", "--source", str(src), "--workers", "1",
                                      "--exclude", str(src / "answers.parquet")])
    assert result.exit_code == 0, result.output
    df = read_manifest(home / "manifest.parquet")
    assert list(df["status"]) == ["ok"]
    assert not any("answers" in uri for uri in df["source_uri"])
