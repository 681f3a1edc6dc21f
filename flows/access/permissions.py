"""Secrets at rest: which files and folders of a home must be private, which are not, and the fix.

Why: ``access.db`` holds password hashes, the pseudonym secret turns MRNs into
pseudonyms, the re-identification and audit keys open the MRN map and sign the
audit trail. Any of them readable by another account on the machine undoes the
protection it gives. Files must be 0600 (owner read/write only), folders 0700.
Checked by ``clinfuse doctor`` (which can fix them) and when the dashboard starts.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Private:
    """A path that must grant nothing to group or others; ``secret`` paths refuse a start when loose."""

    label: str
    path: Path
    mode: int  # 0o600 for files, 0o700 for folders
    secret: bool = True


@dataclass(frozen=True)
class Loose:
    """A private path that is open to group or others (``mode`` as found)."""

    item: Private
    mode: int

    def message(self) -> str:
        return (f"{self.item.label} {self.item.path} is mode {self.mode:04o}, readable by other accounts "
                f"(should be {self.item.mode:04o})")


def home_private_paths(home: Path, access_dir: Path, pseudonym_secret: Path,
                       key_files: dict[str, Path | None]) -> list[Private]:
    """The private paths of one home plus the configured key files (outside it)."""
    items = [Private("home", Path(home), 0o700, secret=False), Private("access folder", Path(access_dir), 0o700),
             Private("user store", Path(access_dir) / "access.db", 0o600),
             Private("pseudonym secret", Path(pseudonym_secret), 0o600)]
    items += [Private(label, Path(path).expanduser(), 0o600) for label, path in key_files.items() if path]
    return items


def loose(items: list[Private]) -> list[Loose]:
    """Each existing item whose mode grants anything to group or others (missing paths are not findings)."""
    out = []
    for item in items:
        try:
            mode = stat.S_IMODE(item.path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            out.append(Loose(item, mode))
    return out


def fix(found: list[Loose]) -> list[str]:
    """chmod each loose path to its intended mode; returns what was done (or why not) per path."""
    done = []
    for entry in found:
        try:
            entry.item.path.chmod(entry.item.mode)
            done.append(f"fixed {entry.item.label} {entry.item.path}: {entry.mode:04o} -> {entry.item.mode:04o}")
        except OSError as exc:
            done.append(f"could not fix {entry.item.path}: {exc.strerror}")
    return done
