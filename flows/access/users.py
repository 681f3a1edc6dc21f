"""Named dashboard users: argon2id password hashes in SQLite, roles, disabling, and a sign-in rate limit.

Only the argon2id hash of a password is ever stored (salted, slow, via
argon2-cffi); passwords are never logged or echoed. Failed sign-ins are counted
per user name in the same database, so the limit holds across browser sessions
and dashboard processes: after ``max_failures`` failures within ``lockout_s``
the name is locked until the oldest failure ages out. Unknown names count too
and take as long as a wrong password, so the form does not reveal who exists.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from flows.access.access_db import AccessDb
from flows.access.roles import check_role

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD_LENGTH = 10
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("clinfuse-no-such-user")  # verified against for unknown names (same timing)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sign_in_failures (username TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sign_in_failures_user ON sign_in_failures (username, at);
"""


@dataclass(frozen=True)
class User:
    """A named account (never its password or hash)."""

    username: str
    role: str
    disabled: bool
    created_at: float


@dataclass(frozen=True)
class SignIn:
    """The outcome of one sign-in attempt; ``reason`` is safe to show (it never says whether the name exists)."""

    ok: bool
    user: User | None
    reason: str = ""
    retry_after_s: float = 0.0


def check_password_strength(password: str) -> None:
    """ValueError unless ``password`` has at least MIN_PASSWORD_LENGTH characters and is not all one kind."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password.isdigit() or password.isalpha():
        raise ValueError("the password must mix letters with digits or symbols")


def count_users(path: Path) -> int:
    """How many named users ``path`` holds, read-only: 0 when the file or its table does not exist yet.

    Never creates the database, so read commands (``clinfuse users list``, doctor, the dashboard
    deciding its sign-in mode) leave a home without users exactly as they found it.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as con:
        try:
            return int(con.execute("SELECT COUNT(*) FROM users").fetchone()[0])
        except sqlite3.OperationalError:
            return 0  # the file exists but no user was ever added (only reviews)


class UserStore(AccessDb):
    """Users of one clinfuse home (``<access_dir>/access.db``)."""

    def __init__(self, path: Path, *, max_failures: int = 5, lockout_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_failures, self.lockout_s, self.clock = max_failures, lockout_s, clock
        super().__init__(path, _SCHEMA)

    def add(self, username: str, role: str, password: str) -> User:
        """Create a user; ValueError for a bad name, an unknown role, a weak password or a taken name."""
        if not USERNAME_RE.match(username):
            raise ValueError("user names are 2-32 lower-case letters, digits, '.', '_' or '-'")
        check_role(role)
        check_password_strength(password)
        now = self.clock()
        try:
            with self._db() as con:
                con.execute("INSERT INTO users VALUES (?, ?, ?, 0, ?, ?)",
                            (username, role, _HASHER.hash(password), now, now))
        except sqlite3.IntegrityError:
            raise ValueError(f"user {username!r} already exists; use `clinfuse users reset`") from None
        return User(username, role, False, now)

    def _update(self, username: str, sql: str, args: tuple) -> None:
        with self._db() as con:
            if con.execute(sql, args).rowcount != 1:
                raise KeyError(f"no user {username!r}")

    def disable(self, username: str) -> None:
        """Refuse every future sign-in of ``username`` (the account and its audit entries stay)."""
        self._update(username, "UPDATE users SET disabled = 1, updated_at = ? WHERE username = ?",
                     (self.clock(), username))

    def reset(self, username: str, password: str, role: str | None = None) -> None:
        """New password (and optionally role); re-enables the account and clears its failed sign-ins."""
        check_password_strength(password)
        if role is not None:
            check_role(role)
        self._update(username, "UPDATE users SET password_hash = ?, disabled = 0, updated_at = ?, "
                               "role = COALESCE(?, role) WHERE username = ?",
                     (_HASHER.hash(password), self.clock(), role, username))
        with self._db() as con:
            con.execute("DELETE FROM sign_in_failures WHERE username = ?", (username,))

    def get(self, username: str) -> User | None:
        if not self.exists:
            return None
        with self._db() as con:
            row = con.execute("SELECT username, role, disabled, created_at FROM users WHERE username = ?",
                              (username,)).fetchone()
        return User(row[0], row[1], bool(row[2]), row[3]) if row else None

    def list(self) -> list[User]:
        if not self.exists:
            return []
        with self._db() as con:
            rows = con.execute("SELECT username, role, disabled, created_at FROM users ORDER BY username").fetchall()
        return [User(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def count(self) -> int:
        if not self.exists:
            return 0
        with self._db() as con:
            return int(con.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def _recent_failures(self, con: sqlite3.Connection, username: str, now: float) -> list[float]:
        con.execute("DELETE FROM sign_in_failures WHERE at < ?", (now - self.lockout_s,))
        return [r[0] for r in con.execute("SELECT at FROM sign_in_failures WHERE username = ? ORDER BY at",
                                          (username,))]

    def authenticate(self, username: str, password: str) -> SignIn:
        """Check a name and password under the rate limit; never raises for bad input."""
        now, name = self.clock(), username.strip().lower()[:64]
        with self._db() as con:
            failures = self._recent_failures(con, name, now)
            if len(failures) >= self.max_failures:
                wait = failures[-self.max_failures] + self.lockout_s - now
                return SignIn(False, None, f"Too many failed sign-ins: try again in {wait:.0f} s.", max(wait, 0.0))
            row = con.execute("SELECT password_hash, disabled FROM users WHERE username = ?", (name,)).fetchone()
        try:
            ok = _HASHER.verify(row[0] if row else _DUMMY_HASH, password) and row is not None and not row[1]
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            with self._db() as con:
                con.execute("INSERT INTO sign_in_failures VALUES (?, ?)", (name, now))
            return SignIn(False, None, "Wrong user name or password, or the account is disabled.")
        with self._db() as con:
            con.execute("DELETE FROM sign_in_failures WHERE username = ?", (name,))
            if _HASHER.check_needs_rehash(row[0]):
                con.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_HASHER.hash(password), name))
        return SignIn(True, self.get(name))
