"""A new home's Prefect database comes from the machine's template; only a clean, freshly started one becomes it.

The unit tests build small SQLite files by hand; the end-to-end test runs `clinfuse ingest` in two fresh
homes against a real temporary Prefect server and checks that the second one started from the template.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.prefect_template import MEMO_NAME, non_template_rows, save_template, seed_home, template_paths


def _db(path: Path, rows: dict[str, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn, conn:
        for table, n in rows.items():
            conn.execute(f'CREATE TABLE "{table}" (x INTEGER)')
            conn.executemany(f'INSERT INTO "{table}" VALUES (?)', [(i,) for i in range(n)])
    return path


def _user_version(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)


def test_a_fresh_database_becomes_the_template_and_seeds_a_new_home(tmp_path: Path) -> None:
    first, templates, second = tmp_path / "a" / "prefect", tmp_path / "templates", tmp_path / "b" / "prefect"
    _db(first / "prefect.db", {"alembic_version": 1, "block_type": 3, "block_schema": 2, "flow_run": 0})
    (first / MEMO_NAME).write_text('block_auto_registration = "abc"\n')
    assert save_template(first, templates)
    db, memo = template_paths(templates)
    assert non_template_rows(db) == {} and memo.read_text() == (first / MEMO_NAME).read_text()
    assert not save_template(first, templates)  # one template per Prefect version: never rewritten
    assert seed_home(second, templates)
    assert non_template_rows(second / "prefect.db") == {}
    with closing(sqlite3.connect(second / "prefect.db")) as conn:
        assert conn.execute("SELECT count(*) FROM block_type").fetchone()[0] == 3
    assert (second / MEMO_NAME).read_text() == memo.read_text()
    assert not seed_home(second, templates)  # a home that has a database keeps it
    assert [p.name for p in second.iterdir() if p.name.startswith(".prefect-seed")] == []


def test_a_database_that_ran_flows_never_becomes_the_template(tmp_path: Path) -> None:
    home, templates = tmp_path / "a" / "prefect", tmp_path / "templates"
    _db(home / "prefect.db", {"alembic_version": 1, "block_type": 3, "flow_run": 2, "log": 5})
    assert non_template_rows(home / "prefect.db") == {"flow_run": 2, "log": 5}
    assert not save_template(home, templates)
    assert not template_paths(templates)[0].exists()
    assert not seed_home(tmp_path / "b" / "prefect", templates)  # no template: the server migrates as before


def test_an_unwritable_template_folder_keeps_no_template_and_raises_nothing(tmp_path: Path) -> None:
    home = tmp_path / "a" / "prefect"
    _db(home / "prefect.db", {"alembic_version": 1, "block_type": 3})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the template folder should be")
    assert not save_template(home, blocker / "templates")
    assert not seed_home(tmp_path / "b" / "prefect", blocker / "templates")


def test_a_configured_database_is_never_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates = tmp_path / "templates"
    _db(template_paths(templates)[0], {"alembic_version": 1})
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://u@127.0.0.1:1/prefect")
    assert not seed_home(tmp_path / "home" / "prefect", templates)
    assert not (tmp_path / "home" / "prefect" / "prefect.db").exists()


@pytest.mark.slow
def test_a_second_fresh_home_starts_its_temporary_server_from_the_first_ones_database(tmp_path: Path) -> None:
    src, templates = tmp_path / "src", tmp_path / "templates"
    src.mkdir()
    Image.fromarray(np.arange(1600, dtype=np.uint8).reshape(40, 40), mode="L").save(src / "film.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFUSE_", "PREFECT_"))}
    env.update(CLINFUSE_PREFECT_TEMPLATE=str(templates), COLUMNS="200")

    def ingest(home: Path) -> None:
        out = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "ingest", "--source",
                              str(src), "--workers", "1"], env={**env, "CLINFUSE_HOME": str(home)},
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    ingest(tmp_path / "a")
    template = template_paths(templates)[0]
    assert template.is_file() and non_template_rows(template) == {}  # taken before the flow wrote its run
    with closing(sqlite3.connect(template)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file, no -wal beside it
        assert conn.execute("SELECT count(*) FROM block_type").fetchone()[0] > 0  # block types registered
        conn.execute("PRAGMA user_version = 4242")  # a mark Prefect never sets: shows where b's database came from
    assert _user_version(tmp_path / "a" / "prefect" / "prefect.db") == 0
    ingest(tmp_path / "b")
    db_b = tmp_path / "b" / "prefect" / "prefect.db"
    assert _user_version(template) == 4242, "template lost its mark"
    assert _user_version(db_b) == 4242, sorted(p.name for p in db_b.parent.iterdir())
    with closing(sqlite3.connect(db_b)) as conn:  # the flow ran on the copied database
        assert conn.execute("SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'").fetchone()[0] == 1
