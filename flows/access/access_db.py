"""The home's access database (``<access_dir>/access.db``): users and reviews live in one SQLite file.

One opening rule for both stores: the folder exists, each store's tables are
created on first use, and every unit of work is one transaction on its own
connection (processes share the file, so no connection is kept open).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


class AccessDb:
    """Base of the stores in access.db: ``self._db()`` is one transaction."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as con:
            con.executescript(schema)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as con, con:
            yield con
