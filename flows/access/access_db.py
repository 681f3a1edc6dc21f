"""The home's access database (``<access_dir>/access.db``): users and reviews live in one SQLite file.

One opening rule for both stores: the folder exists (mode 0700), the file is
created mode 0600 before SQLite first opens it (it holds password hashes; SQLite
gives its journal the database file's mode), each store's tables are created on
first use, and every unit of work is one transaction on its own connection
(processes share the file, so no connection is kept open). The file is created
by the first write, not by opening a store: reads of a home that has none answer
empty, so looking (the worklist, ``clinfuse users list``) creates nothing.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (and its folder 0700) unless it exists; an existing file is left as is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class AccessDb:
    """Base of the stores in access.db: ``self._db()`` is one transaction."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self._schema, self._ready = schema, False
        if self.path.exists():
            self._ensure()  # another store may have made the file: add this store's tables

    def _ensure(self) -> None:
        if not self._ready:
            create_private(self.path)
            with closing(sqlite3.connect(self.path, timeout=30)) as con, con:
                con.executescript(self._schema)
            self._ready = True

    @property
    def exists(self) -> bool:
        """Whether anything was ever written (reads of a store that does not exist answer empty)."""
        return self.path.exists()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One transaction; creates the file (0600) and the tables on first use."""
        self._ensure()
        with closing(sqlite3.connect(self.path, timeout=30)) as con, con:
            yield con
