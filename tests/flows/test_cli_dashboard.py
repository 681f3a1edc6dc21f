"""`clinfuse dashboard`: the command line it builds, a real server on loopback, and no server outliving it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.serve.dashboard_process import APP, streamlit_command
from tests.conftest import REPO_ROOT, free_port
from tests.flows.proc_helpers import kill_all, survivors, tree, wait_port_free


def _wait_healthy(proc: subprocess.Popen, host: str, port: int, log: Path, seconds: float = 90) -> None:
    """Until Streamlit's health endpoint answers "ok"; fails with the log if the process exits first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/_stcore/health", timeout=2) as r:
                assert r.read().decode().strip() == "ok"
                return
        except OSError:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"dashboard did not answer within {seconds:.0f} s"
            time.sleep(0.3)


def test_streamlit_command_binds_and_is_headless() -> None:
    cmd = streamlit_command("127.0.0.1", 8765)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(cmd[4]) == APP and APP.is_file()
    pairs = dict(zip(cmd[5::2], cmd[6::2]))
    assert pairs["--server.address"] == "127.0.0.1" and pairs["--server.port"] == "8765"
    assert pairs["--server.headless"] == "true"


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_cli_serves_dashboard_and_it_stops_with_the_command(tmp_path: Path, sig: int) -> None:
    """The dashboard answers on 127.0.0.1; after SIGTERM (exit 0) or kill -9 of `clinfuse dashboard`,
    no process it started is left and the port is free (issue 19: a Streamlit server outlived it)."""
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(tmp_path / "home")}
    log = tmp_path / "dashboard.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "clinfuse"), "dashboard", "--port", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    procs = []
    try:
        _wait_healthy(proc, "127.0.0.1", port, log)
        procs = tree(proc.pid)
        assert any("streamlit" in " ".join(p.cmdline()) for p in procs)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert survivors(procs, timeout_s=30) == []
        assert wait_port_free(port, timeout_s=10), f"port {port} still answers"
    finally:
        kill_all(procs)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _clinfuse(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CLINFUSE_HOME": str(home), "COLUMNS": "200", **env}
    full.pop("CLINFUSE_DASHBOARD_PASSWORD", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO_ROOT, env=full, capture_output=True,
                          text=True, timeout=120)


def _nothing_listens(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("how", ["--host", "CLINFUSE_BIND_HOST"])
def test_off_loopback_without_named_users_is_refused_before_serving(tmp_path: Path, how: str) -> None:
    """`--host 0.0.0.0` used to serve the open demo (every permission) to the network with only a warning."""
    port = free_port()
    args, env = (["--host", "0.0.0.0"], {}) if how == "--host" else ([], {"CLINFUSE_BIND_HOST": "0.0.0.0"})
    out = _clinfuse(["dashboard", "--port", str(port), *args], tmp_path / "home", **env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refused" in out.stderr and "0.0.0.0" in out.stderr and "clinfuse users add" in out.stderr
    assert "clinfuse dashboard on" not in out.stdout and _nothing_listens(port)
    assert not (tmp_path / "home" / "access" / "access.db").exists()


def test_loose_user_store_is_refused_at_start(tmp_path: Path) -> None:
    from flows.access.users import UserStore

    db = tmp_path / "home" / "access" / "access.db"
    UserStore(db).add("d.admin", "admin", "correct-horse-7")
    os.chmod(db, 0o644)
    port = free_port()
    out = _clinfuse(["dashboard", "--port", str(port)], tmp_path / "home")
    assert out.returncode == 2 and "user store" in out.stderr and "mode 0644" in out.stderr
    assert "--fix-permissions" in out.stderr and _nothing_listens(port)


def test_help_says_off_loopback_needs_named_users(tmp_path: Path) -> None:
    out = _clinfuse(["dashboard", "--help"], tmp_path / "home")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and "refused until named users exist" in text and "Set a password" not in text


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_other_loopback_address_is_served(tmp_path: Path) -> None:
    """127.0.0.0/8 is loopback: 127.0.0.2 serves the open demo, and only there."""
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(tmp_path / "home")}
    env.pop("CLINFUSE_DASHBOARD_PASSWORD", None)
    log = tmp_path / "dashboard.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "dashboard", "--port", str(port), "--host",
                                 "127.0.0.2"], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    procs = []
    try:
        _wait_healthy(proc, "127.0.0.2", port, log)
        procs = tree(proc.pid)
        assert "open local demo" in log.read_text(errors="replace")
        assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700  # the home it created is private
        assert _nothing_listens(port)  # bound to 127.0.0.2 only, not 127.0.0.1 (nor every interface)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        survivors(procs, timeout_s=30)
        kill_all(procs)
