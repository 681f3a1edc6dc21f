"""Replace one ``## Section`` of docs/BENCHMARKS.md, leaving every other section as it is.

Benchmarks own their section only (others belong to other benchmarks), and
several may write at once, so the read-modify-write holds a file lock.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def write_section(heading: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Put ``heading`` (e.g. ``## Worklist under load``) followed by ``body`` in place of that section, or append it."""
    from filelock import FileLock

    with FileLock(str(Path(tempfile.gettempdir()) / "clinfuse-benchmarks-md.lock")):
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        section = f"{heading}\n\n{body.strip()}\n\n"
        start = text.find(heading + "\n")
        if start < 0:
            text = text.rstrip("\n") + "\n\n" + section
        else:
            nxt = text.find("\n## ", start + len(heading))
            text = text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")
        path.write_text(text.rstrip("\n") + "\n")
