"""Starting a batch from the dashboard: safe zip unpacking, parameter mapping, failures as messages."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

from dashboard.auth import password_ok
from dashboard.batch_trigger import predict_command, run_batch, unpack_zip


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buf.getvalue()


def test_unpack_zip_returns_the_cohort_folder(tmp_path: Path) -> None:
    out = unpack_zip(_zip({"cohort/cohort.csv": "patient_id,label\n", "cohort/notes/a.txt": "x"}), tmp_path)
    assert out.name == "cohort" and (out / "notes" / "a.txt").read_text() == "x"


def test_unpack_zip_refuses_escape_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        unpack_zip(_zip({"../evil.txt": "x"}), tmp_path)
    with pytest.raises(ValueError, match="not a readable zip"):
        unpack_zip(b"not a zip", tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_run_batch_runs_clinfuse_predict_in_a_child_and_reports_its_failure(tmp_path: Path) -> None:
    """No server: a child `clinfuse predict` does the work (never this process); its failure comes back as text."""
    seen: list[str] = []
    home = tmp_path / "home"
    assert not run_batch(tmp_path / "absent", None, lambda f, t: None, home=home).ok
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "cohort.csv").write_text("patient_id,label\nMRN1,1\n")
    before = set(sys.modules)
    outcome = run_batch(cohort, None, lambda f, t: seen.append(t), home=home, poll_s=0.2, timeout_s=600)
    assert not outcome.ok and "clinfuse predict" in outcome.message and "champion" in outcome.message
    assert seen and "pid" in seen[0]
    assert not {m for m in set(sys.modules) - before if m.startswith(("flows.", "prefect"))}  # no flow imported here
    (log,) = (home / "logs").glob("batch-*.log")
    assert "champion" in log.read_text()
    assert predict_command(cohort)[-3:] == ["predict", "--source", str(cohort)]


def test_password_check() -> None:
    assert password_ok("pässword", "pässword")
    assert not password_ok("passwor", "password") and not password_ok("", "password")
