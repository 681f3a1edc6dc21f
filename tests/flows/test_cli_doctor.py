"""`clinfuse --help` and `clinfuse doctor` run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

CLI = [sys.executable, "-m", "flows.cli"]


def _run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "CLINFUSE_HOME": str(home), "COLUMNS": "200", **env}
    return subprocess.run(CLI + args, capture_output=True, text=True, env=full_env, timeout=180)


def test_help_lists_commands(tmp_path: Path) -> None:
    out = _run(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "doctor" in out.stdout


def test_doctor_reports_environment_and_hides_secret(tmp_path: Path) -> None:
    out = _run(["doctor"], tmp_path, CLINFUSE_PSEUDONYM_SECRET="s3cr3t-value-xyz")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "torch" in text and "monai" in text and "pydicom" in text
    assert "cpu" in text.lower()
    assert str(tmp_path) in text.replace("\n", "")  or "home" in text
    assert "s3cr3t-value-xyz" not in text
    assert "in-process" in text


def test_doctor_says_when_a_configured_server_does_not_answer(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api"
    out = _run(["doctor"], tmp_path, CLINFUSE_PREFECT_API_URL=dead)
    assert out.returncode == 0, out.stderr
    assert "no answer" in out.stdout
