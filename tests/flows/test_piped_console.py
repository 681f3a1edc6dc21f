"""Piped CLI output keeps long lines whole (Rich alone would cut them at 80 columns)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flows.commands.console import PIPED_WIDTH, make_console


def test_console_is_wide_when_piped(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console().width == PIPED_WIDTH  # pytest captures stdout: not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100  # an explicit width wins


def test_phantom_prints_whole_paths_into_a_pipe(tmp_path: Path) -> None:
    out = tmp_path / "a-folder-name-past-eighty-columns" / "cohort"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"CLINFUSE_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-m", "flows.cli", "phantom", "--patients", "2", "--out", str(out),
                          "--eeg-min-s", "4", "--eeg-max-s", "4", "--workers", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(str(out / "cohort.csv")) > 80  # Rich's piped default would cut it
    assert str(out / "cohort.csv") in run.stdout, run.stdout
    assert "…" not in run.stdout
