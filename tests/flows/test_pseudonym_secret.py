"""No built-in pseudonym secret: generated into the home (0600) on first use unless configured."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from flows.settings import Settings
from ingestion.deid.pseudonym import load_or_create_secret, pseudonymise


@pytest.fixture(autouse=True)
def _no_configured_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINFUSE_PSEUDONYM_SECRET", raising=False)


def test_first_use_generates_a_private_random_secret(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h")
    assert s.pseudonym_secret_configured is None
    assert not s.pseudonym_secret_path.exists() and "not yet created" in s.pseudonym_secret_source
    value = s.pseudonym_secret.get_secret_value()
    path = s.pseudonym_secret_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(value) >= 40 and value != "clinfuse-demo-secret-change-me"
    assert Settings(home=tmp_path / "h").pseudonym_secret.get_secret_value() == value  # stable per home
    assert Settings(home=tmp_path / "other").pseudonym_secret.get_secret_value() != value  # random per home
    assert str(path) in s.pseudonym_secret_source and "exists" in s.pseudonym_secret_source
    assert not list(path.parent.glob(".secret-*"))  # no temporary file left behind


def test_configured_secret_wins_and_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", "site-key-from-vault")
    s = Settings(home=tmp_path / "h")
    assert s.pseudonym_secret.get_secret_value() == "site-key-from-vault"
    assert s.pseudonym_secret_source.startswith("configured")
    assert not s.pseudonym_secret_path.exists()
    assert "site-key-from-vault" not in repr(s) and "site-key-from-vault" not in str(s.model_dump())


def test_blank_configured_secret_counts_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", "  ")
    s = Settings(home=tmp_path / "h")
    assert s.pseudonym_secret.get_secret_value().strip()
    assert s.pseudonym_secret_path.exists()


def test_rehomed_settings_use_the_new_homes_secret(tmp_path: Path) -> None:
    base = Settings(home=tmp_path / "a")
    moved = base.model_copy(update={"home": (tmp_path / "b").resolve()})
    assert moved.pseudonym_secret.get_secret_value() != base.pseudonym_secret.get_secret_value()
    assert (tmp_path / "b" / "pseudonym_secret").exists()


def test_concurrent_first_use_agrees_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "home" / "pseudonym_secret"
    with ProcessPoolExecutor(max_workers=4, mp_context=get_context("spawn")) as pool:
        values = list(pool.map(load_or_create_secret, [path] * 8))
    assert len(set(values)) == 1 and values[0] == path.read_text().strip()


def test_empty_secret_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym_secret"
    path.write_text("")
    with pytest.raises(ValueError, match="re-keys every pseudonym"):
        load_or_create_secret(path)


def test_changing_the_secret_rekeys_pseudonyms(tmp_path: Path) -> None:
    a = Settings(home=tmp_path / "a").pseudonym_secret.get_secret_value()
    b = Settings(home=tmp_path / "b").pseudonym_secret.get_secret_value()
    assert pseudonymise("MRN0001", a) != pseudonymise("MRN0001", b)


def test_doctor_says_where_the_secret_comes_from(tmp_path: Path) -> None:
    home = tmp_path / "h"
    value = Settings(home=home).pseudonym_secret.get_secret_value()
    env = {k: v for k, v in os.environ.items() if k != "CLINFUSE_PSEUDONYM_SECRET"}
    env.update(CLINFUSE_HOME=str(home), COLUMNS="300")
    out = subprocess.run([sys.executable, "-m", "flows.cli", "doctor"], capture_output=True, text=True,
                         env=env, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "pseudonym secret" in text and "generated:" in text and "mode 0600" in text
    assert str(home / "pseudonym_secret") in out.stdout.replace("\n", "").replace(" ", "") or "pseudonym_secret" in text
    assert value not in out.stdout
