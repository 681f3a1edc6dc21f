"""The newcomer path works as printed: every command the README, the demo's closing lines and the
first sections of docs/OPERATIONS.md print runs as pasted from the project root of a fresh clone.

"As pasted" means: no activated virtualenv (a command starts with `make` or `.venv/bin/`), no
shell variable that nobody set, a Make target that exists and does not reinstall, a `clinfuse`
command line that parses. Each printed server command is then started for real on free loopback
ports with a temporary home, answers HTTP 200, and is stopped with its whole process tree.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import REPO_ROOT, free_port
from tests.flows.proc_helpers import survivors, tree, wait_port_free

README = REPO_ROOT / "README.md"
OPERATIONS = REPO_ROOT / "docs" / "OPERATIONS.md"
NEWCOMER_SECTIONS = ("One machine, no set-up", "A team: servers, pools, workers, schedules")
"""The OPERATIONS sections a newcomer reads first (the rest assume a configured site)."""

SERVER_TARGETS: dict[str, dict[str, str]] = {
    "dashboard": {"DASHBOARD_PORT": "/"},
    "mlflow-ui": {"MLFLOW_PORT": "/"},
    "prefect-ui": {"PREFECT_PORT": "/api/health"},
    "serve": {"PREFECT_PORT": "/api/health", "MLFLOW_PORT": "/health", "DASHBOARD_PORT": "/"},
}
"""Make targets that serve until stopped: the port variable(s) each honours and the path that must answer 200."""


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M)


def section(markdown: str, heading: str) -> str:
    """The text of the ``## heading...`` section, up to the next second-level heading."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", markdown, flags=re.S | re.M)
    assert match, f"section {heading!r} is gone from the doc"
    return match.group(1)


def command_lines(text: str) -> list[list[str]]:
    """Shell words of each command (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def demo_closing_lines() -> str:
    env = {k: v for k, v in os.environ.items() if k != "CLINFUSE_HOME"}
    out = subprocess.run(["bash", "scripts/demo.sh", "--next-steps"], cwd=REPO_ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return "\n".join(line for line in out.splitlines() if line.startswith("  "))


def newcomer_commands() -> list[tuple[str, list[str]]]:
    found = [("README.md", words) for block in bash_blocks(README.read_text()) for words in command_lines(block)]
    found += [("demo closing lines", words) for words in command_lines(demo_closing_lines())]
    ops = OPERATIONS.read_text()
    blocks = bash_blocks(section(ops, NEWCOMER_SECTIONS[0])) + bash_blocks(section(ops, NEWCOMER_SECTIONS[1]))[:1]
    found += [("docs/OPERATIONS.md", words) for block in blocks for words in command_lines(block)]
    return found


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)


def _parses(args: list[str]) -> None:
    """The clinfuse command line is accepted by the CLI's parser (options, choices), without running it."""
    group = typer.main.get_command(app)
    if args and args[0] in group.commands:
        group.commands[args[0]].make_context(args[0], list(args[1:]))
        return
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output


def test_the_newcomer_commands_are_found() -> None:
    """Guards the extraction: an empty list would make the checks below pass vacuously."""
    origins = {origin for origin, _ in newcomer_commands()}
    assert origins == {"README.md", "demo closing lines", "docs/OPERATIONS.md"}
    printed = {words[1] for _, words in newcomer_commands() if words[0] == "make"}
    assert {"demo", "test", "dashboard", "mlflow-ui", "prefect-ui", "serve"} <= printed


def test_every_newcomer_command_runs_as_pasted() -> None:
    for origin, words in newcomer_commands():
        line = shlex.join(words)
        assert "$" not in line, f"{origin}: `{line}` needs a shell variable a fresh clone does not set"
        program = words[0]
        if program == "make":
            result = _make("-n", *words[1:])
            assert result.returncode == 0, f"{origin}: `{line}`: {result.stderr}"
            if words[1] in SERVER_TARGETS:
                assert ".venv/bin/" in result.stdout and "pip install" not in result.stdout, (origin, result.stdout)
                assert "127.0.0.1" in result.stdout, f"{origin}: `{line}` does not bind loopback"
        elif program.startswith(".venv/bin/"):
            assert (REPO_ROOT / program).is_file(), f"{origin}: `{line}`: {program} is not installed"
            if program == ".venv/bin/clinfuse":
                _parses(words[1:])
        else:
            pytest.fail(f"{origin}: `{line}` starts with {program!r}, which a fresh clone has not on its PATH")


def test_the_by_hand_team_block_sets_every_variable_it_uses() -> None:
    for block in bash_blocks(section(OPERATIONS.read_text(), NEWCOMER_SECTIONS[1])):
        assigned = {"PWD", "HOME"}
        for line in block.splitlines():
            code = line.split("#", 1)[0]
            for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", code):
                assert name in assigned, f"`{line.strip()}` uses ${name}, set nowhere above it"
            assigned |= set(re.findall(r"(?:^|\s|export\s+)([A-Za-z_][A-Za-z0-9_]*)=", code))


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own loopback server
            return resp.status
    except Exception:  # noqa: BLE001 - not up yet
        return 0


def _stop(proc: subprocess.Popen, procs: list) -> list[str]:
    """SIGTERM the command's process group (make, the shell, the server), SIGKILL what is left after 60 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    left = survivors(procs, 60)
    if left:
        for p in procs:
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
    proc.wait(timeout=30)
    return left


@pytest.mark.slow
@pytest.mark.server
def test_each_printed_server_command_answers_on_a_free_loopback_port(tmp_path: Path) -> None:
    printed = {shlex.join(words): words for _, words in newcomer_commands()
               if words[0] == "make" and words[1] in SERVER_TARGETS}
    assert printed, "no server command is printed"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k not in ("CLINFUSE_HOME", "CLINFUSE_PREFECT_API_URL",
                                                         "CLINFUSE_MLFLOW_TRACKING_URI")}
    running = []
    for i, (line, words) in enumerate(sorted(printed.items())):
        ports = {var: free_port() for var in SERVER_TARGETS[words[1]]}
        overrides = [f"{var}={port}" for var, port in ports.items()] + [f"CLINFUSE_HOME={tmp_path / f'home{i}'}"]
        log = (tmp_path / f"server{i}.log").open("w")
        proc = subprocess.Popen(["make", "--no-print-directory", *words[1:], *overrides], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        urls = [f"http://127.0.0.1:{ports[var]}{path}" for var, path in SERVER_TARGETS[words[1]].items()]
        running.append((line, proc, urls, tmp_path / f"server{i}.log", ports))
    failures = []
    try:
        deadline = time.monotonic() + 480  # four servers start at once beside a second test worker
        pending = {line for line, *_ in running}
        while pending and time.monotonic() < deadline:
            for line, proc, urls, log, _ in running:
                if line not in pending:
                    continue
                if proc.poll() is not None:
                    failures.append(f"`{line}` exited {proc.returncode}: {log.read_text()[-2000:]}")
                    pending.discard(line)
                elif all(_get(url) == 200 for url in urls):
                    pending.discard(line)
            time.sleep(1)
        failures += [f"`{line}` gave no HTTP 200 within 480 s: {log.read_text()[-2000:]}"
                     for line, _, _, log, _ in running if line in pending]
    finally:
        for line, proc, _, _, ports in running:
            left = _stop(proc, tree(proc.pid))
            if left:
                failures.append(f"`{line}` left processes after SIGTERM: {left}")
            failures += [f"`{line}` still holds port {p}" for p in ports.values() if not wait_port_free(p, 30)]
    assert not failures, "\n".join(failures)
