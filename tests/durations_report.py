"""Where the suite's time goes, per test file: a terminal-summary table (hooks imported by tests/conftest.py).

Why: pytest's ``--durations`` lists single phases, so a module whose module-scoped fixture
costs a minute of setup and whose ten tests cost ten seconds each never shows up as the
file that dominates. CI's budget is spent per file (fixtures shared within one), so the
table sums every phase (setup, call, teardown) of every test by file, and ends with the
session's wall time measured here, so a CI log always says how long the suite took.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

TOP_FILES = 25
_per_file: dict[str, float] = defaultdict(float)
_tests_per_file: dict[str, set[str]] = defaultdict(set)
_STARTED = time.monotonic()  # imported by tests/conftest.py as pytest starts: collection counts too


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    _per_file[path] += float(getattr(report, "duration", 0.0) or 0.0)
    _tests_per_file[path].add(report.nodeid)


def file_table(per_file: dict[str, float], tests: dict[str, set[str]], top: int = TOP_FILES) -> list[str]:
    """Lines of the table: the ``top`` files by summed seconds, each with its share of the total."""
    total = sum(per_file.values())
    ranked = sorted(per_file.items(), key=lambda kv: kv[1], reverse=True)[:top]
    lines = [f"{'seconds':>9} {'share':>6} {'tests':>5}  file"]
    for path, seconds in ranked:
        share = seconds / total if total else 0.0
        lines.append(f"{seconds:9.1f} {share:6.1%} {len(tests.get(path, ())):5d}  {path}")
    lines.append(f"{total:9.1f} {1:6.1%} {sum(len(t) for t in tests.values()):5d}  all {len(per_file)} files "
                 "(setup + call + teardown)")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ARG001, ANN001
    if not _per_file:
        return
    terminalreporter.section(f"slowest {min(TOP_FILES, len(_per_file))} test files (summed phases)")
    for line in file_table(_per_file, _tests_per_file):
        terminalreporter.write_line(line)
    wall = time.monotonic() - _STARTED
    terminalreporter.write_line(f"test session wall time (collection included): {wall:.1f} s ({wall / 60:.1f} min)")
