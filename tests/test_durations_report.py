"""The per-file durations table CI prints (tests/durations_report.py): files ranked by summed seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.durations_report import file_table

REPO = Path(__file__).resolve().parents[1]


def test_files_are_ranked_by_summed_phases_with_shares_and_a_total() -> None:
    per_file = {"tests/a.py": 3.0, "tests/b.py": 6.0, "tests/c.py": 1.0}
    tests = {"tests/a.py": {"a1", "a2"}, "tests/b.py": {"b1"}, "tests/c.py": {"c1"}}
    lines = file_table(per_file, tests, top=2)
    assert [line.split()[-1] for line in lines[1:3]] == ["tests/b.py", "tests/a.py"]  # c.py is past the top 2
    assert lines[1].split()[:3] == ["6.0", "60.0%", "1"] and lines[2].split()[:3] == ["3.0", "30.0%", "2"]
    assert lines[-1].split()[:3] == ["10.0", "100.0%", "4"] and "all 3 files" in lines[-1]


def test_a_pytest_run_prints_the_table_and_the_wall_time(tmp_path: Path) -> None:
    """Through a real pytest child on this very file's first test: the summary names it and says how long."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "tests/test_durations_report.py::test_files_are_ranked_by_summed_phases_with_shares_and_a_total"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "slowest 1 test files (summed phases)" in done.stdout
    assert "tests/test_durations_report.py" in done.stdout.split("slowest 1 test files")[1]
    assert "test session wall time (collection included):" in done.stdout
