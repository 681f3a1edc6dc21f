"""The registry of attacks that ``benchmarks/bench_attacks.py`` runs: one table row per case.

A case is a kind (the row's label) and a function that, given an empty work folder, mounts the
attack, runs the real process against it, and returns an :class:`AttackRow`. To add a row (a new
hostile file, a new lying server, a fault), write such a function and decorate it with
``@attack("kind")``; ``bench_attacks.py`` picks it up, in registration order.

File attacks run a whole ``clinfuse ingest`` process over the attack plus ordinary good files
(``tests/corpus/hostile.py``), measured by the kernel's peak RSS of its largest process. Server lies
run the PACS puller against a loopback DICOMweb server that lies (``tests/corpus/hostile_dicomweb.py``),
in a process of its own, measured the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.corpus.attack_run import GUARD_BYTES, REPO, _snapshot, rows_of, run_ingest
from tests.corpus.build import reason_matches
from tests.corpus.hostile import HOSTILE_BUILDERS, build_hostile
from tests.corpus.hostile_dicomweb import LIES


@dataclass(frozen=True)
class AttackRow:
    """One row of the table: what the attack did to the process, and whether every bound held."""

    kind: str
    happened: str
    peak_rss_mib: float | None
    lost: int
    outside: int
    seconds: float
    held: bool
    """Every expectation held: statuses and reasons, good items ok, 0 lost, 0 written outside, exit as expected."""


@dataclass(frozen=True)
class AttackCase:
    kind: str
    run: Callable[[Path], AttackRow]


CASES: list[AttackCase] = []


def attack(kind: str) -> Callable[[Callable[[Path], AttackRow]], Callable[[Path], AttackRow]]:
    """Register ``fn(work) -> AttackRow`` as the case ``kind`` (appended to :data:`CASES`)."""
    def register(fn: Callable[[Path], AttackRow]) -> Callable[[Path], AttackRow]:
        CASES.append(AttackCase(kind, fn))
        return fn
    return register


def _short(reason: str, limit: int = 170) -> str:
    """A reason without its file path prefix, cut to ``limit`` characters."""
    text = reason.split(": ", 1)[1] if reason.startswith(("hostile_", "good/")) and ": " in reason else reason
    return text if len(text) <= limit else text[: limit - 1] + "…"


def file_attack_row(kind: str, work: Path, attacks: list[str]) -> AttackRow:
    """Build ``attacks`` beside the good items, run ``clinfuse ingest`` once, judge and summarise it."""
    cases = build_hostile(work / "src", attacks)
    run = run_ingest(work, work / "src")
    held, reasons = run.rc == 0 and not run.killed and not run.lost and not run.written_outside, []
    for case in cases:
        rows = rows_of(run.manifest, case)
        ok = len(rows) == 1 and rows.iloc[0]["status"] == case.expect
        ok = ok and (case.expect == "ok" or reason_matches(case, rows.iloc[0]["reason"]))
        held = held and ok
        if case.expect == "quarantined" and len(rows):
            reasons.append(_short(str(rows.iloc[0]["reason"])))
    distinct = list(dict.fromkeys(reasons))
    good = sum(1 for c in cases if c.expect == "ok")
    happened = (f"{len(reasons)} quarantined: " + " / ".join(distinct[:2])
                + (f" (+{len(distinct) - 2} more reasons)" if len(distinct) > 2 else "")) if reasons else ""
    happened = (happened + f"; {good} good items ok" if happened else f"{good} good items ok")
    if run.rc != 0 or run.killed:
        happened = f"ingest failed (exit {run.rc}{', killed at the memory guard' if run.killed else ''}); " + happened
    return AttackRow(kind, happened, run.peak_rss / 2**20, len(run.lost), len(run.written_outside),
                     run.elapsed_s, held)


@attack("none (the good files alone: the baseline)")
def _baseline(work: Path) -> AttackRow:
    return file_attack_row("none (the good files alone: the baseline)", work, [])


def _register_file_attack(label: str) -> None:
    attack(label)(lambda work: file_attack_row(label, work, [label]))


for _label in HOSTILE_BUILDERS:
    _register_file_attack(_label)


def lie_row(kind: str, work: Path, lie: str) -> AttackRow:
    """Run the puller against the ``lie`` server in its own measured process and summarise it."""
    pacs, out, measured = work / "pacs", work / "lie.json", work / "measure.json"
    work.mkdir(parents=True, exist_ok=True)
    before = _snapshot(work, pacs)
    cmd = [sys.executable, "-m", "tests.corpus.measure", str(measured), str(GUARD_BYTES), "--",
           sys.executable, "-m", "tests.corpus.pull_lie", lie, str(pacs), str(out)]
    subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    memory, result = json.loads(measured.read_text()), json.loads(out.read_text())
    out.unlink()
    measured.unlink()
    outside = [p for p, st in _snapshot(work, pacs).items() if before.get(p) != st]
    lost = (result["good_staged"] != 2) + ("good" not in result["cursor_series"])
    held = (memory["rc"] == 0 and "could not be downloaded" in result["reason"] and not lost and not outside
            and "liar" not in result["cursor_series"] and not result["liar_staged"])
    reason = result["reason"].split("could not be downloaded: ", 1)[-1].split("; nothing was lost", 1)[0]
    happened = (f"{_short(reason, 140)}; server sent {result['liar_bytes_sent']:,} bytes of the lying series; "
                f"cursor holds {'+'.join(result['cursor_series']) or 'nothing'}")
    return AttackRow(kind, happened, memory["peak_rss"] / 2**20, lost, len(outside), result["elapsed_s"], held)


def _register_lie(lie: str) -> None:
    kind = f"DICOMweb server: {lie}"
    attack(kind)(lambda work: lie_row(kind, work, lie))


for _lie in LIES:
    _register_lie(_lie)
