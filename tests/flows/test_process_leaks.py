"""The session-level check: a test run that leaves a process behind fails, naming it (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# The leaked process is an orphan: its parent exits at once, as `clinfuse dashboard` did when terminated.
LEAKY_TEST = '''
import subprocess, sys, time

def test_leaves_an_orphan_behind():
    code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)  # leaked'])"
    subprocess.run([sys.executable, "-c", code], check=True)
'''
CLEAN_TEST = '''
import subprocess, sys

def test_waits_for_its_child():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


def _run(tmp_path: Path, body: str, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(
        "from tests.process_leaks import pytest_sessionfinish, pytest_sessionstart, pytest_testnodedown  # noqa\n")
    (tmp_path / "test_inner.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLINFUSE_TEST_LEAK_GRACE_S": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "--rootdir", str(tmp_path), *extra, str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(180)
def test_a_run_that_leaves_a_process_fails_and_names_it(tmp_path: Path) -> None:
    leaky = _run(tmp_path, LEAKY_TEST)
    assert leaky.returncode == 1, leaky.stdout[-2000:]
    assert "1 passed" in leaky.stdout and "still alive at its end" in leaky.stdout
    assert "# leaked" in leaky.stdout  # named by its command line
    assert "# leaked" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


@pytest.mark.timeout(180)
def test_a_clean_run_passes(tmp_path: Path) -> None:
    clean = _run(tmp_path, CLEAN_TEST)
    assert clean.returncode == 0, clean.stdout[-2000:]


@pytest.mark.timeout(180)
def test_a_leak_in_an_xdist_worker_fails_the_run(tmp_path: Path) -> None:
    """make test runs on pytest-xdist workers, whose own exit status the controller ignores."""
    leaky = _run(tmp_path, LEAKY_TEST, "-n", "1")
    assert leaky.returncode == 1, leaky.stdout[-2000:]
    assert "1 passed" in leaky.stdout and "still alive at its end" in leaky.stdout and "# leaked" in leaky.stdout
    clean = _run(tmp_path, CLEAN_TEST, "-n", "1")
    assert clean.returncode == 0, clean.stdout[-2000:]
