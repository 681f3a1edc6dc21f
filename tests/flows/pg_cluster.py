"""A throwaway PostgreSQL cluster for team-mode tests: initdb + pg_ctl in a temp dir, loopback, a free port.

Debian's postgresql package puts its server binaries in ``pg_config --bindir`` (or
/usr/lib/postgresql/<major>/bin). ``initdb`` refuses to run as root, so as root
the cluster runs as an unprivileged user (the package's ``postgres`` user, else
one created here) through ``runuser``. Trust authentication on 127.0.0.1 only,
fsync off: a test database, gone when the test ends. The suite shares one cluster
(``pg_session`` in tests/conftest.py); each user creates and drops its own databases.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_USER = "postgres"


def pg_bindir() -> Path | None:
    """Where initdb/pg_ctl live, or None when PostgreSQL's server is not installed."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _run_as() -> list[str]:
    """Prefix that runs a command as the cluster's owner (root cannot own a cluster)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True)
    return ["runuser", "-u", PG_USER, "--"]


@dataclass(frozen=True)
class PgCluster:
    port: int
    bindir: Path

    def url(self, db: str, driver: str = "") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, db: str, statement: str) -> str:
        """Run one statement with psql; its unaligned, tuples-only output."""
        out = subprocess.run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              "-d", db, "-At", "-c", statement], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def version(self) -> str:
        return self.sql("postgres", "SHOW server_version")

    @contextmanager
    def databases(self, names: tuple[str, ...]) -> Iterator[PgCluster]:
        """Create ``names`` (none may exist yet) for one user of a shared cluster; drop them after.

        Why: the suite starts one cluster per session (``pg_session`` in tests/conftest.py);
        a fresh database costs milliseconds where a fresh cluster costs seconds, and
        ``DROP ... WITH (FORCE)`` closes what a stopped server left open so the next user
        starts from an empty cluster.
        """
        for db in names:
            self.sql("postgres", f"CREATE DATABASE {db}")
        try:
            yield self
        finally:
            for db in names:
                self.sql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@contextmanager
def postgres_cluster(port: int, databases: tuple[str, ...]) -> Iterator[PgCluster]:
    """Start a cluster on 127.0.0.1:``port`` with ``databases`` created; stop it and delete it after."""
    bindir = pg_bindir()
    assert bindir is not None, "PostgreSQL server binaries not found"
    prefix = _run_as()
    root = Path(tempfile.mkdtemp(prefix="clinfuse-pg-"))
    data, log = root / "data", root / "server.log"
    if prefix:
        shutil.chown(root, PG_USER)
    started = False
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync", "-D", str(data)], check=True, capture_output=True)
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        done = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                               "-w", "-t", "120", "start"], capture_output=True, text=True)
        started = True
        assert done.returncode == 0, f"pg_ctl start failed: {done.stdout}{done.stderr}" + (
            log.read_text(errors="replace")[-2000:] if log.exists() else "")
        cluster = PgCluster(port, bindir)
        for db in databases:
            cluster.sql("postgres", f"CREATE DATABASE {db}")
        yield cluster
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
