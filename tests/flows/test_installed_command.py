"""`clinfuse deploy` tells a person how to start workers with a command that runs as pasted (prefect is on the
PATH only in an activated virtualenv)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.commands.serve import installed_command


def test_prefect_is_named_by_the_path_beside_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(sys.executable).parent.parent.parent
    monkeypatch.chdir(root)
    command = installed_command("prefect")
    assert command != "prefect" and Path(command).name == "prefect"
    out = subprocess.run([command, "version"], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
