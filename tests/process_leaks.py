"""The test run leaves no process behind: a session-level check (hooks imported by tests/conftest.py).

At session start the pytest process becomes a *child subreaper* (Linux), so a
process whose parent dies during the run (a Streamlit server whose `clinfuse
dashboard` was terminated, say) is re-parented to pytest instead of to init and
stays visible as one of its descendants. At session end every descendant that
was not there at the start is given a few seconds to exit; those still alive are
named, killed (whole group), and the run fails.

Not counted: processes the interpreter itself stops at exit (multiprocessing's
resource tracker and fork server; Prefect's ephemeral API server is stopped here
first, as it would be at exit).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import pytest

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = float(os.environ.get("CLINFUSE_TEST_LEAK_GRACE_S", "15"))  # how long stragglers get to exit
_INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
_baseline: set[int] = set()


def _descendants() -> list:
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _alive(procs: list) -> list:
    import psutil

    out = []
    for p in procs:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                try:
                    os.waitpid(p.pid, os.WNOHANG)  # re-parented orphans are ours to reap
                except ChildProcessError:
                    pass
                continue
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if p.pid in _baseline or any(h in cmd for h in _INTERPRETER_HELPERS):
            continue
        out.append(p)
    return out


def _stop_prefect_ephemeral_server() -> None:
    server_mod = sys.modules.get("prefect.server.api.server")
    if server_mod is None:
        return
    for server in list(getattr(server_mod.SubprocessASGIServer, "_instances", {}).values()):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort, as at interpreter exit
            pass


def _xdist_controller(config: pytest.Config) -> bool:
    """Under pytest-xdist the controller only collects reports: each worker is a session of its own that
    checks its own descendants, and the workers themselves must not count as the controller's leaks."""
    return config.pluginmanager.has_plugin("dsession")


_worker_leaks: list[str] = []  # on the xdist controller: what each finished worker reported


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001, ARG001 - pytest-xdist's hook, on the controller
    leaks = getattr(node, "workeroutput", {}).get("process_leaks")
    if leaks:
        _worker_leaks.append(f"[{node.gateway.id}] {leaks}")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _xdist_controller(session.config):
        return
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _baseline.update(p.pid for p in _descendants())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _xdist_controller(session.config):
        if _worker_leaks:
            _fail(session, "\n".join(_worker_leaks))
        return
    _stop_prefect_ephemeral_server()
    deadline = time.monotonic() + GRACE_S
    left = _alive(_descendants())
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _alive(_descendants())
    if not left:
        return
    lines = []
    for p in left:
        try:
            lines.append(f"  pid {p.pid} (parent {p.ppid()}): {' '.join(p.cmdline())[:200]}")
            pgid = os.getpgid(p.pid)
            if pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
            else:
                p.kill()
        except Exception:  # noqa: BLE001 - already gone
            continue
    message = (f"{len(lines)} process(es) started by the test run were still alive at its end "
               "(now killed):\n" + "\n".join(lines))
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its exit status is not the run's, the controller reports it
        workeroutput["process_leaks"] = message
    _fail(session, message)


def _fail(session: pytest.Session, message: str) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
