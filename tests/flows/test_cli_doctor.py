"""`clinfuse --help` and `clinfuse doctor` run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_doctor_states_sign_in_mode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = _run(["doctor"], home)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "Sign-in: open local demo" in text and "audit key" in text
    assert not home.exists()  # doctor only looks: no home, no user store created
    shared = " ".join(_run(["doctor"], home, CLINFUSE_DASHBOARD_PASSWORD="pw-4f1c9e0a").stdout.split())
    assert "Sign-in: shared password" in shared and "pw-4f1c9e0a" not in shared
    from flows.access.users import UserStore

    UserStore(home / "access" / "access.db").add("d.admin", "admin", "correct-horse-7")
    named = " ".join(_run(["doctor"], home, CLINFUSE_DASHBOARD_PASSWORD="pw-4f1c9e0a").stdout.split())
    assert "Sign-in: named users" in named and "1 named user(s)" in named


@pytest.mark.slow
def test_doctor_reports_loose_permissions_and_fixes_them(tmp_path: Path) -> None:
    import stat

    from flows.access.users import UserStore

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    db = home / "access" / "access.db"
    UserStore(db).add("d.admin", "admin", "correct-horse-7")
    secret = home / "pseudonym_secret"
    secret.write_text("site-secret-value\n")
    key = tmp_path / "keys" / "reid.key"
    key.parent.mkdir()
    key.write_text("k\n")
    for path, mode in ((home, 0o755), (db, 0o644), (secret, 0o640), (key, 0o604)):
        os.chmod(path, mode)
    out = _run(["doctor"], home, CLINFUSE_REID_KEY_FILE=str(key))
    text = " ".join(out.stdout.split())
    assert out.returncode == 0, out.stderr
    for label, mode in (("home", "0755"), ("user store", "0644"), ("pseudonym secret", "0640"),
                        ("re-identification key", "0604")):
        assert f"loose: {label}" in text and f"mode {mode}" in text
    assert "--fix-permissions" in text
    fixed = _run(["doctor", "--fix-permissions"], home, CLINFUSE_REID_KEY_FILE=str(key))
    assert fixed.returncode == 0 and "fixed user store" in " ".join(fixed.stdout.split())
    assert [stat.S_IMODE(p.stat().st_mode) for p in (home, db, secret, key)] == [0o700, 0o600, 0o600, 0o600]
    again = " ".join(_run(["doctor"], home, CLINFUSE_REID_KEY_FILE=str(key)).stdout.split())
    assert "loose:" not in again and "private: home 0700, secrets 0600" in again
