"""Ingest throughput on a phantom cohort: patients/s for a cold run and for a warm (unchanged) re-run.

    .venv/bin/python benchmarks/bench_ingest.py --patients 200 --workers 2

Generates the cohort (or reuses ``--cohort-dir`` if it already holds one),
ingests it into a fresh home, then ingests it again: the warm run only hashes
files and finds every item in the manifest. Prints Markdown table rows for
docs/BENCHMARKS.md ("## Ingest throughput").
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import psutil

from ingestion.ingest import IngestReport, ingest
from ingestion.phantom import generate_cohort

READER_ARGS = dict(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(32, 64, 64), xray_shape=(128, 128),
                   eeg_sfreq=128.0, eeg_window_s=4.0, eeg_line_freq=50.0)
"""The defaults of flows.settings.Settings, spelled out so the benchmark does not read the environment."""


def _run(cohort_dir: Path, home: Path, workers: int) -> tuple[IngestReport, float]:
    start = time.perf_counter()
    report = ingest(cohort_dir, cohort_dir / "cohort.csv", home, "bench-secret", workers=workers, **READER_ARGS)
    return report, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200, help="phantom cohort size")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    parser.add_argument("--cohort-dir", type=Path, default=None, help="reuse/generate the phantom here")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        cohort_dir = args.cohort_dir or Path(tmp) / "cohort"
        if not (cohort_dir / "cohort.csv").exists():
            t0 = time.perf_counter()
            generate_cohort(cohort_dir, args.patients, seed=args.seed, missing_rate=0.2)
            print(f"generated {args.patients} patients in {time.perf_counter() - t0:.1f} s")
        files = [p for p in cohort_dir.rglob("*") if p.is_file()]
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        home = Path(tmp) / "home"
        cold, cold_s = _run(cohort_dir, home, args.workers)
        warm, warm_s = _run(cohort_dir, home, args.workers)

    n = args.patients
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    print(f"\ncold: {cold.new} items read, {cold.n_quarantined} quarantined; warm: {warm.new} read, "
          f"{warm.skipped} skipped\n")
    print("| run | patients | files (MB) | workers | wall s | patients/s | items read | machine |")
    print("|---|---|---|---|---|---|---|---|")
    for name, report, seconds in (("cold", cold, cold_s), ("warm re-run", warm, warm_s)):
        print(f"| {name} | {n} | {len(files)} ({size_mb:.0f}) | {args.workers} | {seconds:.1f} | "
              f"{n / seconds:.2f} | {report.new} | {machine} |")


if __name__ == "__main__":
    main()
