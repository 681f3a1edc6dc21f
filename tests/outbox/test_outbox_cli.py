"""`clinfuse outbox status` and `clinfuse outbox send`: what is queued, sending it, and a clear exit without a destination."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from models.outbox.outbox import write_outbox
from models.outbox.result import PatientResult
from tests.outbox.test_outbox_send import FakeFhir, fhir_server  # noqa: F401 - the fixture


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    """A fresh CLINFUSE_HOME for the CLI (settings re-read before and after)."""
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLINFUSE_OUTBOX_FHIR_URL", raising=False)
    monkeypatch.delenv("CLINFUSE_OUTBOX_STOW_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _queue(home) -> None:
    results = [PatientResult(pid, "clinfuse", "1", "run", 0.4, 0.3, 0.5, 0, False, "", {}, {"ct": "missing"},
                             datetime(2026, 1, 1, tzinfo=timezone.utc), (pid,)) for pid in ("P00000000000a", "P00000000000b")]
    write_outbox(results, home / "outbox")


@pytest.mark.server
@pytest.mark.slow
def test_outbox_send_and_status(cli_home, monkeypatch, fhir_server: str) -> None:  # noqa: F811
    from flows.cli import app
    from flows.prefect_env import prefect_settings
    from flows.settings import get_settings

    _queue(cli_home)
    runner = CliRunner()
    out = runner.invoke(app, ["outbox", "send"])
    assert out.exit_code == 2 and "no destination configured" in out.output

    monkeypatch.setenv("CLINFUSE_OUTBOX_FHIR_URL", fhir_server)
    get_settings.cache_clear()
    FakeFhir.fail_next = 1
    with prefect_settings(get_settings()):
        failed = runner.invoke(app, ["outbox", "send"])
        assert failed.exit_code == 1 and "HTTP 503" in failed.output
        status = runner.invoke(app, ["outbox", "status"])
        assert status.exit_code == 0 and "2 SR file(s), 1 FHIR bundle(s)" in status.output
        assert f"fhir:{fhir_server}: 0 sent, 1 failed" in status.output
        sent = runner.invoke(app, ["outbox", "send"])
        assert sent.exit_code == 0 and "FHIR bundle: 1 sent, 0 sent before, 0 failed" in sent.output
        assert len(FakeFhir.received) == 1
        assert f"fhir:{fhir_server}: 1 sent, 0 failed" in runner.invoke(app, ["outbox", "status"]).output


def test_predict_summary_lines_say_what_was_written_and_sent(tmp_path) -> None:
    from flows.commands.pipeline import outbox_lines
    from flows.settings import Settings
    from models.outbox.outbox import OutboxWrite
    from models.outbox.send import SendReport

    settings = Settings(home=tmp_path / "home")
    written = OutboxWrite(3, 1, str(tmp_path / "home" / "outbox" / "fhir" / "clinfuse-abc.json"), True)
    assert outbox_lines(None, settings) == []
    only_files = outbox_lines({"written": written, "sent": None}, settings)
    assert len(only_files) == 1 and "3 SR written, 1 already there; FHIR bundle clinfuse-abc.json" in only_files[0]
    report = SendReport()
    report.sent["sr"], report.failed["fhir"] = 4, ["clinfuse-abc.json: FHIR server did not answer"]
    lines = outbox_lines({"written": written, "sent": report}, settings)
    assert "4 SR, 0 FHIR bundle(s); 1 failed (kept in the outbox: clinfuse outbox status)" in lines[1]
