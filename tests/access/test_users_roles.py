"""Named users: argon2id hashes only, roles and their permissions, disabling, reset, the sign-in rate limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.access.roles import DEMO_ROLE, PERMISSIONS, ROLES, allowed
from flows.access.users import UserStore

PASSWORD = "correct-horse-42"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_role_table_matches_the_issue() -> None:
    grants = {role: {p for p in PERMISSIONS if allowed(role, p)} for role in ROLES}
    assert grants["clinician"] == {"worklist", "patient", "export_csv", "reveal_mrn", "review"}
    assert grants["analyst"] == {"worklist", "patient", "export_csv", "model", "batch"}
    assert grants["admin"] == {"admin"}
    assert all(allowed(DEMO_ROLE, p) for p in PERMISSIONS)
    assert not allowed("clinician", "no-such-permission") and not allowed("nurse", "worklist")


def test_add_authenticate_disable_reset(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "access.db")
    store.add("a.smith", "clinician", PASSWORD)
    ok = store.authenticate("a.smith", PASSWORD)
    assert ok.ok and ok.user.role == "clinician"
    assert not store.authenticate("a.smith", "wrong-password-1").ok
    assert not store.authenticate("nobody", PASSWORD).ok
    raw = (tmp_path / "access.db").read_bytes()
    assert PASSWORD.encode() not in raw and b"$argon2id$" in raw
    store.disable("a.smith")
    refused = store.authenticate("a.smith", PASSWORD)
    assert not refused.ok and "disabled" in refused.reason
    store.reset("a.smith", "another-pass-7", role="analyst")
    back = store.authenticate("a.smith", "another-pass-7")
    assert back.ok and back.user.role == "analyst" and not store.authenticate("a.smith", PASSWORD).ok
    for bad in (("A Smith", "clinician", PASSWORD), ("b.jones", "surgeon", PASSWORD), ("b.jones", "analyst", "short1"),
                ("b.jones", "analyst", "onlyletterslong"), ("a.smith", "admin", PASSWORD)):
        with pytest.raises(ValueError):
            store.add(*bad)
    with pytest.raises(KeyError):
        store.disable("ghost")


def test_failed_sign_ins_are_rate_limited(tmp_path: Path) -> None:
    clock = Clock()
    store = UserStore(tmp_path / "access.db", max_failures=3, lockout_s=60, clock=clock)
    store.add("a.smith", "clinician", PASSWORD)
    for _ in range(3):
        assert not store.authenticate("a.smith", "guess-guess-1").ok
    locked = store.authenticate("a.smith", PASSWORD)  # right password, but locked
    assert not locked.ok and "Too many" in locked.reason and 0 < locked.retry_after_s <= 60
    # Another process (a second store on the same file) sees the same lock.
    assert not UserStore(tmp_path / "access.db", max_failures=3, lockout_s=60, clock=clock).authenticate(
        "a.smith", PASSWORD).ok
    clock.now += 61
    assert store.authenticate("a.smith", PASSWORD).ok
    # Unknown names are limited too (no enumeration by the lockout's absence).
    for _ in range(3):
        store.authenticate("ghost", "x-guess-123")
    assert "Too many" in store.authenticate("ghost", "x-guess-123").reason


def test_users_cli_never_shows_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli import app
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["users", "add", "a.smith", "--role", "clinician", "--password-stdin"],
                            input=PASSWORD + "\n")
        assert res.exit_code == 0 and "added a.smith (clinician)" in res.output
        res = runner.invoke(app, ["users", "add", "b.jones", "--role", "surgeon", "--password-stdin"],
                            input=PASSWORD + "\n")
        assert res.exit_code == 2 and "unknown role" in res.output
        assert runner.invoke(app, ["users", "disable", "a.smith"]).exit_code == 0
        listed = runner.invoke(app, ["users", "list"]).output
        assert "a.smith\tclinician\tdisabled" in listed
        res = runner.invoke(app, ["users", "reset", "a.smith", "--password-stdin"], input="new-pass-word-9\n")
        assert res.exit_code == 0
        audit = runner.invoke(app, ["audit", "list"]).output
        assert "user_add" in audit and "user_disable" in audit and "user_reset" in audit
        for path in (tmp_path / "home").rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert PASSWORD.encode() not in data and b"new-pass-word-9" not in data, path
        assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    finally:
        get_settings.cache_clear()
