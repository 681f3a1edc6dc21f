"""flows.serve.process_group: a command's children stop with it, whether it is asked to stop or killed outright."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from flows.serve.process_group import exit_code
from tests.conftest import REPO_ROOT, free_port
from tests.flows.proc_helpers import kill_all, port_in_use, survivors, tree, wait_port_free

# A parent (like `clinfuse dashboard`) running one child through run_child. The child serves HTTP,
# may ignore SIGTERM (as the leaked Streamlit did), and starts a grandchild in a session of its own
# (as a Prefect worker's flow-run supervisor does), which a signal to the child's group would miss.
PARENT = """
import sys
from flows.serve.process_group import run_child
port, ignore = int(sys.argv[1]), sys.argv[2] == "1"
code = ("import signal, subprocess, sys, http.server\\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if ignore else "")
        + "subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(600)'])\\n"
        + f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.BaseHTTPRequestHandler).serve_forever()\\n")
sys.exit(run_child([sys.executable, "-c", code], grace_s=2))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("sig", "ignore_term"), [(signal.SIGTERM, False), (signal.SIGHUP, True),
                                                  (signal.SIGKILL, False), (signal.SIGKILL, True)])
def test_children_stop_with_their_parent(sig: int, ignore_term: bool) -> None:
    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(port), "1" if ignore_term else "0"],
                              cwd=REPO_ROOT, start_new_session=True)
    procs = []
    try:
        deadline = time.monotonic() + 30
        while not (port_in_use(port) and len(tree(parent.pid)) >= 4):  # parent, watchdog, child, grandchild
            assert parent.poll() is None and time.monotonic() < deadline, "the child did not start"
            time.sleep(0.1)
        time.sleep(2.0)  # the watchdog records descendants every 0.5 s; a grandchild younger than that can escape
        procs = tree(parent.pid)
        parent.send_signal(sig)
        code = parent.wait(timeout=20)
        assert code == (0 if sig != signal.SIGKILL else -signal.SIGKILL)
        assert survivors(procs, timeout_s=15) == []
        assert wait_port_free(port, timeout_s=5)
    finally:
        kill_all(procs)


def test_exit_code_says_what_happened() -> None:
    from flows.serve.process_group import Stop

    assert exit_code(Stop(signal.SIGTERM), None) == 0
    assert exit_code(None, 3) == 3
    assert exit_code(None, -signal.SIGKILL) == 137
    assert exit_code(None, None) == 1
