"""Replace one ``## Section`` of docs/BENCHMARKS.md, leaving every other section as it is, and stamp it.

Benchmarks own their section only (others belong to other benchmarks), and
several may write at once, so the read-modify-write holds a file lock.

Every section written here starts with a stamp line: the command, the UTC date,
the commit (and whether the tree had uncommitted changes), the machine and the
load average when it was written. Why: a figure without the code and the machine
it came from cannot be checked or compared, and numbers typed into a benchmark's
prose drift; the stamp is taken from the running process, never typed.
Sections written before stamping existed carry :data:`UNSTAMPED` instead
(``python benchmarks/markdown_section.py --mark-unstamped``) until their
benchmark's next ``--write``.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "BENCHMARKS.md"
RELIABILITY_MD = REPO / "docs" / "RELIABILITY.md"
STAMP_PREFIX = "_Stamp: "
UNSTAMPED = (f"{STAMP_PREFIX}none: this section was written before sections were stamped; the command, date, "
             "machine and load are only what its text says. Its benchmark's next `--write` stamps it._")
STAMP_RE = re.compile(rf"^{re.escape(STAMP_PREFIX)}.*_$", re.M)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def commit_text() -> str:
    """Short commit of HEAD, and whether tracked files differ from it (a shared tree often does).

    docs/BENCHMARKS.md itself does not count: a benchmark writing several sections has changed it by the
    second one, and the code that made the figures is what the stamp vouches for.
    """
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "commit unknown (not a git checkout)"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs/BENCHMARKS.md")
    return f"commit {head}" + (" with uncommitted changes in the tree" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _gpu() -> str:
    """GPU names from nvidia-smi; 'no GPU' without one (the benchmark may still not have used it)."""
    if not shutil.which("nvidia-smi"):
        return "no GPU"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "GPU unknown"
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return ", ".join(names) if out.returncode == 0 and names else "no GPU"


def machine_text() -> str:
    """Architecture, CPU model, cores, memory and GPUs of this machine."""
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = "memory unknown"
    return f"{platform.machine()} {_cpu_model()}, {os.cpu_count()} cores, {mem}, {_gpu()}"


def command_text(argv: list[str] | None = None) -> str:
    """The command that is writing, as typed from the project root (script path made relative)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0]:
        script = Path(argv[0]).resolve()
        argv[0] = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else argv[0]
    python = Path(sys.executable)
    python_text = str(python.relative_to(REPO)) if python.is_relative_to(REPO) else "python"
    return shlex.join([python_text, *argv])


def stamp(command: str | None = None, now: datetime | None = None) -> str:
    """One line: command, UTC time, commit, machine, load average (1/5/15 min) at the time of writing."""
    now = now or datetime.now(timezone.utc)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{STAMP_PREFIX}written by `{command or command_text()}` on {now:%Y-%m-%d %H:%M} UTC, {commit_text()}; "
            f"machine: {machine_text()}; load average {load} (1 / 5 / 15 min) when written._")


def _replace(text: str, heading: str, section: str) -> str:
    start = text.find(heading + "\n")
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    nxt = text.find("\n## ", start + len(heading))
    return text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")


def write_section(heading: str, body: str, path: Path = BENCHMARKS_MD, command: str | None = None) -> None:
    """Put ``heading`` (e.g. ``## Worklist under load``), a stamp and ``body`` in place of that section, or append it.

    ``command`` overrides the stamp's command (default: this process's argv).
    """
    from filelock import FileLock

    line = stamp(command)
    body = STAMP_RE.sub("", body).strip()  # a body that carried an old stamp gets exactly one, the new one
    with FileLock(str(Path(tempfile.gettempdir()) / "clinfuse-benchmarks-md.lock")):
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        text = _replace(text, heading, f"{heading}\n\n{line}\n\n{body}\n\n")
        path.write_text(text.rstrip("\n") + "\n")


def sections(text: str, levels: str = "##") -> list[tuple[str, str]]:
    """``(heading line, body)`` of each section whose heading starts with one of ``levels`` (e.g. "##|###")."""
    pattern = re.compile(rf"^(?:{levels}) .*$", re.M)
    marks = list(pattern.finditer(text))
    return [(m.group(0), text[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(text)])
            for i, m in enumerate(marks)]


def benchmark_sections(path: Path) -> list[tuple[str, str]]:
    """Sections holding measured figures: every ``##`` of BENCHMARKS.md; elsewhere the ``##``/``###`` sections
    whose own text (up to the next heading) names a ``benchmarks/bench_*`` script."""
    text = path.read_text()
    if path.name == BENCHMARKS_MD.name:
        return sections(text)
    return [(h, b) for h, b in sections(text, "##|###") if "benchmarks/bench_" in h + b]


def mark_unstamped(path: Path) -> list[str]:
    """Add :data:`UNSTAMPED` under every benchmark section of ``path`` that has no stamp; return their headings."""
    from filelock import FileLock

    with FileLock(str(Path(tempfile.gettempdir()) / "clinfuse-benchmarks-md.lock")):
        text = path.read_text()
        marked = [h for h, b in benchmark_sections(path) if not STAMP_RE.search(b)]
        for heading in marked:
            text = text.replace(f"{heading}\n\n", f"{heading}\n\n{UNSTAMPED}\n\n", 1)
        path.write_text(text)
    return marked


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mark-unstamped", nargs="*", type=Path, metavar="DOC",
                        help="mark the unstamped benchmark sections of these docs (default BENCHMARKS + RELIABILITY)")
    parser.add_argument("--stamp", action="store_true", help="print the stamp this machine would write now")
    args = parser.parse_args()
    if args.stamp:
        print(stamp())
    if args.mark_unstamped is not None:
        for doc in args.mark_unstamped or [BENCHMARKS_MD, RELIABILITY_MD]:
            for heading in mark_unstamped(doc):
                print(f"{doc.name}: {heading}")
