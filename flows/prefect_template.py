"""A new home's Prefect database, copied from a machine-level template instead of built by migrations.

Why: a fresh home's first command starts Prefect's temporary server on an empty
SQLite database, which then runs every Alembic migration and registers the block
types: 25 s on 2 cores, against 10 s for the same server on a database that has
them (see docs/BENCHMARKS.md). Every `make demo`, every new site home and most
test homes paid it. The first server to start on a fresh home leaves a snapshot
of its database here, taken once it answers and before any flow writes to it;
later fresh homes start from a copy.

What a template holds: the schema version and Prefect's block types and schemas,
nothing else (checked table by table before it is kept; a snapshot holding any
other row is discarded). It is keyed by the installed Prefect version, so an
upgrade starts a new one. Only the default SQLite database under the home's
PREFECT_HOME is ever seeded: a configured server or database is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "prefect.db"
MEMO_NAME = "memo_store.toml"
KEPT_TABLES = frozenset({"alembic_version", "block_type", "block_schema", "block_schema_reference"})
"""The only tables a template may hold rows in: what migrations and block registration write."""


def _key() -> str | None:
    try:
        return f"prefect-{version('prefect')}"
    except PackageNotFoundError:
        return None


def _database_configured() -> bool:
    """A server started here would open another database than ``$PREFECT_HOME/prefect.db``."""
    return bool(os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"))


def template_paths(template_dir: Path) -> tuple[Path, Path] | None:
    """The template database and its memo file for the installed Prefect version (None: Prefect not installed)."""
    key = _key()
    return None if key is None else (template_dir / f"{key}.db", template_dir / f"{key}.{MEMO_NAME}")


def seed_home(prefect_home: Path, template_dir: Path) -> bool:
    """Copy the template into ``prefect_home`` when it has no database yet; True when it did.

    Call it only where a server will start on this home's SQLite database (the
    temporary one, or `clinfuse serve` without a database URL). The database
    appears in one step (``os.link`` of a finished copy), and only if
    none is there, so two commands starting in one new home never open different files.
    """
    db = prefect_home / DB_NAME
    if _database_configured() or any(prefect_home.glob(f"{DB_NAME}*")):
        return False  # checked first: every command in a home that has run before stops here, at a stat's cost
    paths = template_paths(template_dir)
    if paths is None or not paths[0].is_file():
        return False
    try:
        prefect_home.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".prefect-seed-", dir=prefect_home)
    except OSError as exc:  # the server then migrates an empty database, as without a template
        log.debug("Prefect database template not used: %s", exc)
        return False
    os.close(fd)
    try:
        shutil.copyfile(paths[0], tmp)
        os.link(tmp, db)
    except FileExistsError:
        return False
    except OSError as exc:
        log.debug("Prefect database template not used: %s", exc)
        return False
    finally:
        os.unlink(tmp)
    if paths[1].is_file() and not (prefect_home / MEMO_NAME).exists():
        shutil.copyfile(paths[1], prefect_home / MEMO_NAME)
    return True


def non_template_rows(db: Path) -> dict[str, int]:
    """Tables outside :data:`KEPT_TABLES` that hold rows, with their counts (empty: fit to be a template)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables
                  if t not in KEPT_TABLES and not t.startswith("sqlite_")}
    return {t: n for t, n in counts.items() if n}


def save_template(prefect_home: Path, template_dir: Path) -> bool:
    """Snapshot the home's freshly started database as the template, if there is none yet; True when saved.

    Call only after the server answers and before any flow runs: the snapshot is
    SQLite's online backup (consistent while the server holds the file open).
    """
    paths = template_paths(template_dir)
    db = prefect_home / DB_NAME
    if paths is None or paths[0].is_file() or not db.is_file() or _database_configured():
        return False
    try:
        if non_template_rows(db):  # a home that has run flows before: nothing to snapshot
            return False
    except sqlite3.Error:
        return False
    try:  # a template is an optimisation: an unwritable cache folder only means none is kept
        template_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".prefect-template-", suffix=".db", dir=template_dir)
    except OSError as exc:
        log.debug("Prefect database template not saved: %s", exc)
        return False
    os.close(fd)
    memo_tmp = f"{tmp}.memo"
    try:
        with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(tmp)) as target:
            source.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, whatever the source's mode
        target_rows = non_template_rows(Path(tmp))
        if target_rows:
            log.debug("Prefect database not kept as a template: it holds %s", target_rows)
            return False
        if (prefect_home / MEMO_NAME).is_file():  # whole or not at all: another home may be reading it
            shutil.copyfile(prefect_home / MEMO_NAME, memo_tmp)
            os.replace(memo_tmp, paths[1])
        os.replace(tmp, paths[0])
        return True
    except (OSError, sqlite3.Error) as exc:
        log.debug("Prefect database template not saved: %s", exc)
        return False
    finally:
        for leftover in (tmp, memo_tmp):
            if os.path.exists(leftover):
                os.unlink(leftover)
