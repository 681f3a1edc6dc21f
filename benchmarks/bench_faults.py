"""Faults of disks and servers: run the fault tests and tabulate what happened, items lost, duplicates, time.

    .venv/bin/python benchmarks/bench_faults.py            # print the table
    .venv/bin/python benchmarks/bench_faults.py --write    # and replace its section in docs/RELIABILITY.md

The figures are those the tests measured in this run (``benchmarks/fault_cases.py``); the
section's stamp gives the commit, the machine and its load, since the seconds depend on both.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fault_cases import CASES, TEST_FILE, Measured, measure  # noqa: E402
from benchmarks.markdown_section import RELIABILITY_MD, write_section  # noqa: E402

HEADING = "## Faults of disks and servers (tests/test_reliability_faults.py)"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(measured: Measured, load_before: tuple[float, float, float]) -> str:
    """The section body: how the faults were made, one row per fault, the test run's summary."""
    lines = [
        "Each fault is provoked for real and each must end retried or failed clearly, with nothing "
        "half-written, and a re-run must complete with 0 items lost and 0 duplicates:",
        "",
        "- **Disk full**: a small tmpfs is mounted over the folder the stage writes and filled (root only; the "
        "test skips elsewhere); `clinfuse ingest` / `clinfuse encode` run as processes; the predictions store's "
        "write path is called directly. Then the filler is removed and the stage re-run.",
        "- **MLflow**: the connection is cut at one registry call (a client that fails once, real SQLite "
        "registry), and `clinfuse train` is run against a tracking URI that refuses connections, then re-run "
        "against a working store.",
        "- **PostgreSQL**: team mode's MLflow server on a throwaway PostgreSQL 15 cluster; the cluster is restarted "
        "(`pg_ctl restart -m fast`) just before the registry creates the version.",
        "- **Orthanc**: a real Orthanc is stopped just before the pull's 3rd series download and started again "
        "on the same storage and port; the pull is re-run and the staged files ingested.",
        "",
        "| fault | what happened | items lost | duplicates | seconds to the outcome |",
        "|---|---|---|---|---|",
    ]
    for row in measured.rows:
        lines.append(f"| {_cell(row['fault'])} | {_cell(row['happened'])} | {row['lost']} | {row['duplicates']} | "
                     f"{row['seconds']:.1f} |")
    lines += ["", "Bugs these faults showed, fixed (each case above is its regression test):", "",
              "- A full disk while ingesting was blamed on the input: the worker's failed array write became a "
              "quarantine reason (\"the eeg reader failed unexpectedly (OSError: ... requested and ... written)\"), "
              "so every later run would have skipped the item as done: lost. Atomic writes now raise `DiskFullError` "
              "(`ingestion/atomic_files.py`, also for numpy's errno-less write error when the folder has under 1 MB "
              "free); it stops the ingest, whose finished rows are flushed to the manifest first.",
              "- The CLI ended a full-disk run with pages of traceback (the embedded Prefect database, on the same "
              "disk, answered HTTP 500); it now ends with one line, `disk full: no space left to write FILE in "
              "FOLDER (N MB free); free space there and re-run`, exit 1, and a full disk is not retried.",
              "- MLflow down at registration: MLflow's default client retries wait about 4 minutes per request, "
              "and the register task tried 3 times; a tracking server now gets `runs.HTTP_RETRIES` retries per "
              "request, and the command ends with `MLflow at URL did not answer ...; re-run the same command once "
              "MLflow is back`, exit 1, instead of a traceback. The trained model stays in the home and the "
              "re-run's train task is a cache hit.",
              "- A registration cut between creating the version and setting its alias left a version no alias "
              "points at, and the retry registered the same model again. The training run is now tagged with the "
              "trained model's id before registering; a retry deletes that model's alias-less versions and "
              "returns an already finished registration instead of making a second one "
              "(`flows/tracking/registration.py`).",
              ]
    lines += ["", f"Test run: `{measured.summary}` (load average before: "
                  f"{' / '.join(f'{x:.1f}' for x in load_before)}). Seconds are wall time on that load, "
                  "from the fault's start to the outcome (for `clinfuse` commands: the whole failing command, start-up "
                  "included)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the section in {RELIABILITY_MD.name}")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    measured = measure(CASES)
    body = render(measured, load_before)
    print(body)
    if measured.returncode != 0:
        print(measured.output, file=sys.stderr)
        print(f"\nthe fault tests did not all pass ({TEST_FILE}): nothing written", file=sys.stderr)
        return 1
    if args.write:
        write_section(HEADING, body, path=RELIABILITY_MD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
