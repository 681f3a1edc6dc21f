"""Attacks on ingest and the PACS pull: run every case of benchmarks/attack_cases.py, tabulate what happened.

    .venv/bin/python benchmarks/bench_attacks.py                 # print the table
    .venv/bin/python benchmarks/bench_attacks.py --write         # and replace its section in docs/RELIABILITY.md
    .venv/bin/python benchmarks/bench_attacks.py --only "slow drip"   # cases whose kind contains the text

Rows come from the registry (``CASES`` in ``benchmarks/attack_cases.py``); the section's stamp gives
the command, date, commit, machine and load average, since seconds depend on all of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.attack_cases import CASES, AttackRow  # noqa: E402
from benchmarks.markdown_section import RELIABILITY_MD, write_section  # noqa: E402

HEADING = "## Attacks: hostile files and lying servers (tests/test_reliability_attacks.py, tests/test_reliability_hostile_pacs.py)"


CHOICES = (
    "Limits and choices: a .zip is checked on its declared sizes before anything is unpacked (Python's zipfile "
    "stops at the declared size and fails the CRC beyond it): more than 512 MiB in one member, 16 GiB in all, "
    "200,000 members, or a member over 8 MiB expanding more than 200:1 quarantines the whole archive unread, "
    "and members are read at most 512 MiB. A DICOM file may declare at most 2^28 pixels (rows x columns x "
    "frames x samples), and a JPEG 2000 or JPEG codestream no larger an image than its Rows/Columns, checked "
    "before any decoder allocates; a deflated-syntax dataset is inflated in counted chunks and refused past "
    "256 MiB before pydicom (which inflates it whole) reads it. An EDF/BDF whose samples per record cannot fit the file, or exceed 100 kHz, is "
    "refused before MNE reads it. Note tables over 64 MB and binary notes are refused unread. **Placeholder "
    "patient ids** (blank, Unknown, ANONYMOUS, anon, N/A, 0, all-zero or all-dash ids, X, and similar words) "
    "are quarantined with the reason rather than given a per-study id: an invented id joins no cohort label "
    "and no other modality of the person, so the item could only show as a phantom patient; the export must "
    "carry the real id. PACS downloads are parsed by clinfuse itself with per-instance and per-series size "
    "caps and a total deadline per series checked on every arrival (a download ends at most one socket "
    "timeout after it); a series is staged in a private folder and moved in only when its answer completed, "
    "so the cursor records no series that was not stored whole.")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows: list[AttackRow], load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    """The section body: how each kind of case is run, one row per case, the load around the run."""
    lines = [
        "Each file attack is written by `tests/corpus/hostile.py` (nothing binary is committed) beside four "
        "good files (a CT series, a radiograph, an EDF, a note) and read by one whole `clinfuse ingest` process "
        "(2 workers). Peak memory is the kernel's high-water RSS of the largest process of the run "
        "(`ru_maxrss` of the reaped tree; a guard kills the tree past 4 GiB). Items lost: source files no "
        "manifest row names. Written outside the home: files new or changed anywhere in the run's work "
        "folder (source, siblings, its TMPDIR) but the home. Each server lie is a loopback DICOMweb server "
        "(`tests/corpus/hostile_dicomweb.py`) whose first series is honest and whose second lies; the puller "
        "runs in its own process with test limits of 1 MiB per instance, 16 MiB per series, a 3 s deadline "
        "and a 2 s socket timeout (defaults: 512 MiB, 8 GiB, 30 min, 30 s). Items lost there: the honest "
        "series not staged whole or not in the cursor; the lying series must be in neither.",
        "",
        "| kind | what happened | peak memory (MiB) | items lost | files written outside the home | seconds | bounds held |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = f"{r.peak_rss_mib:,.0f}" if r.peak_rss_mib is not None else "n/a"
        lines.append(f"| {_cell(r.kind)} | {_cell(r.happened)} | {memory} | {r.lost} | {r.outside} | "
                     f"{r.seconds:.1f} | {'yes' if r.held else '**no**'} |")
    before, after = (" / ".join(f"{x:.1f}" for x in la) for la in load)
    lines += ["", CHOICES]
    lines += ["", f"Load average (1 / 5 / 15 min) before the run: {before}; after: {after}. Ingest seconds are "
                  "whole processes, start-up (spaCy, MNE, torch imports) included, on that load."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the section in {RELIABILITY_MD.name}")
    parser.add_argument("--only", default="", help="run only the cases whose kind contains this text")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.only.lower() in c.kind.lower()]
    load_before, rows = os.getloadavg(), []
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        for i, case in enumerate(cases):
            row = case.run(Path(tmp) / f"case{i}")
            print(f"{row.kind}: {'held' if row.held else 'NOT HELD'}, {row.peak_rss_mib or 0:,.0f} MiB, "
                  f"{row.seconds:.1f} s: {row.happened}", flush=True)
            rows.append(row)
    body = render(rows, (load_before, os.getloadavg()))
    print(body)
    if args.write:
        if args.only:
            print("--write needs every case (no --only): nothing written", file=sys.stderr)
            return 2
        write_section(HEADING, body, path=RELIABILITY_MD)
    return 0 if all(r.held for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
