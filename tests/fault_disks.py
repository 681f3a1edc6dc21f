"""A small full disk for fault tests: a tmpfs mounted over one folder of a home, then filled.

Mounting needs root (the test container runs as root); anywhere else the tests
that use it skip with the reason :func:`mount_problem` gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILLER = ".fault-filler"


def mount_problem(probe_dir: Path) -> str | None:
    """Why a tmpfs cannot be mounted here (not root, mount refused), or None when it can."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    probe_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe_dir)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount -t tmpfs was refused: {done.stderr.strip()}"
    subprocess.run(["umount", str(probe_dir)], check=True)
    return None


@contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[Path]:
    """A ``size_mb`` tmpfs mounted at ``folder`` (made if absent); what was there is copied in, and back out after."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder.with_name(folder.name + ".before-mount")
    shutil.copytree(folder, saved)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)], check=True)
    try:
        shutil.copytree(saved, folder, dirs_exist_ok=True)
        yield folder
    finally:
        kept = folder.with_name(folder.name + ".after-mount")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(folder, kept, ignore=shutil.ignore_patterns(FILLER), symlinks=True)
        if subprocess.run(["umount", str(folder)]).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # busy: detach now, freed when let go
        shutil.rmtree(folder)
        kept.rename(folder)
        shutil.rmtree(saved, ignore_errors=True)


def fill(folder: Path, leave_bytes: int) -> int:
    """Fill ``folder``'s filesystem with a filler file until ``leave_bytes`` remain free; returns the filler size."""
    free = shutil.disk_usage(folder).free
    size = max(0, free - leave_bytes)
    with open(folder / FILLER, "wb") as fh:
        block = b"\0" * (1 << 20)
        left = size
        while left > 0:
            n = fh.write(block[:min(left, len(block))])
            left -= n
    return size


def free_up(folder: Path) -> None:
    """Remove the filler: the disk has room again."""
    (folder / FILLER).unlink(missing_ok=True)


def temp_files(root: Path) -> list[Path]:
    """Temporary files an atomic write left behind (``.<name>.*.tmp``); none may survive a failed write."""
    return [p for p in root.rglob(".*.tmp") if p.is_file()]
