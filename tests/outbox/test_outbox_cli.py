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
