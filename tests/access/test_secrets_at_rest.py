"""Secrets at rest: the home is created 0700, the user store 0600, read commands create nothing, and the first
`clinfuse users add` says that the open demo ends."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.access.permissions import Private, fix, loose
from flows.access.users import UserStore, count_users
from ingestion.home_layout import HomeLayout

PASSWORD = "correct-horse-7"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask():
    """Run as a careless shell would (umask 000): the modes must not depend on the caller's umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_home_and_user_store_are_private_whatever_the_umask(tmp_path: Path, wide_umask) -> None:
    layout = HomeLayout.at(tmp_path / "home").ensure()
    assert _mode(layout.root) == 0o700
    store = UserStore(layout.root / "access" / "access.db")
    store.add("d.admin", "admin", PASSWORD)
    assert _mode(store.path) == 0o600 and _mode(store.path.parent) == 0o700
    os.chmod(layout.root, 0o755)
    HomeLayout.at(layout.root).ensure()
    assert _mode(layout.root) == 0o755  # an existing home is never changed behind the owner's back


def test_reads_create_no_store(tmp_path: Path) -> None:
    from flows.access.reviews import ReviewStore

    db = tmp_path / "access" / "access.db"
    assert count_users(db) == 0 and not db.parent.exists()
    users, reviews = UserStore(db), ReviewStore(db)
    assert users.list() == [] and users.count() == 0 and users.get("d.admin") is None
    assert reviews.latest() == {} and reviews.for_patient("P0123456789ab") == []
    assert not db.exists() and not db.parent.exists()  # opening and reading made no file
    reviews.add("P0123456789ab", "positive", "", "c.clinician", "clinician")
    assert count_users(db) == 0 and _mode(db) == 0o600  # a reviews-only store has no users table yet
    UserStore(db).add("c.clinician", "clinician", PASSWORD)
    assert count_users(db) == 1


def test_loose_finds_and_fix_repairs(tmp_path: Path) -> None:
    secret, folder = tmp_path / "secret", tmp_path / "dir"
    secret.write_text("x")
    folder.mkdir()
    os.chmod(secret, 0o644)
    os.chmod(folder, 0o750)
    items = [Private("secret", secret, 0o600), Private("folder", folder, 0o700, secret=False),
             Private("missing", tmp_path / "nope", 0o600)]
    found = loose(items)
    assert [(f.item.label, f.mode) for f in found] == [("secret", 0o644), ("folder", 0o750)]
    assert "mode 0644" in found[0].message()
    assert len(fix(found)) == 2 and _mode(secret) == 0o600 and _mode(folder) == 0o700 and loose(items) == []


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_users_list_creates_no_store_and_first_add_says_open_mode_ends(cli: Path) -> None:
    from flows.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0 and "no named users" in listed.output and "open local demo" in listed.output
    assert not cli.exists()  # a read command left no home, no access.db behind

    first = runner.invoke(app, ["users", "add", "c.clinician", "--role", "clinician", "--password-stdin"],
                          input=PASSWORD + "\n")
    assert first.exit_code == 0, first.output
    assert "first named user" in first.output and "open local demo" in first.output
    assert "make an admin first" in first.output and "sign-in mode is now: named users" in first.output
    assert _mode(cli) == 0o700 and _mode(cli / "access" / "access.db") == 0o600

    second = runner.invoke(app, ["users", "add", "d.admin", "--role", "admin", "--password-stdin"],
                           input=PASSWORD + "\n")
    assert second.exit_code == 0 and "first named user" not in second.output
    assert runner.invoke(app, ["users", "list"]).output.split() == ["c.clinician", "clinician", "active",
                                                                    "d.admin", "admin", "active"]


def test_first_admin_gets_no_admin_tip(cli: Path) -> None:
    from flows.cli import app

    out = CliRunner().invoke(app, ["users", "add", "d.admin", "--role", "admin", "--password-stdin"],
                             input=PASSWORD + "\n")
    assert out.exit_code == 0 and "first named user" in out.output and "make an admin first" not in out.output
