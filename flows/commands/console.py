"""The one Rich console factory of the CLI.

Why: Rich draws at 80 columns when output goes to a pipe or a log file (no
terminal to ask), which cuts progress lines and paths short ("1…") exactly where
operators read them: cron mails, CI logs, ``| tee``. A terminal keeps its own
width; anything else gets ``PIPED_WIDTH`` columns, or ``COLUMNS`` when set.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 160


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPED_WIDTH)
