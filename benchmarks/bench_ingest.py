"""Ingest throughput on a phantom cohort: patients/s cold (fresh home) and warm (unchanged re-run).

    .venv/bin/python benchmarks/bench_ingest.py --patients 200 --workers 1,2

Generates the cohort (or reuses ``--cohort-dir`` when it already holds one) and,
for each worker count, ingests it into a fresh home (cold), then again (warm:
files are hashed, every item is found in the manifest, nothing is read). The
alternative compared is the worker count (1 = serial reading in one process).
Prints Markdown rows for docs/BENCHMARKS.md ("## Ingest throughput").
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from ingestion.ingest import IngestReport, ingest

from ingestion.ingest_worker import ReaderConfig
from ingestion.phantom import generate_cohort

READER_ARGS = dict(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(32, 64, 64), xray_shape=(128, 128),
                   eeg_sfreq=128.0, eeg_window_s=4.0, eeg_line_freq=50.0)
"""The defaults of flows.settings.Settings, spelled out so the benchmark does not read the environment."""


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the reader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(cohort_dir: Path, home: Path, workers: int) -> tuple[IngestReport, float, float]:
    wall, cpu = time.perf_counter(), _cpu_s()
    report = ingest(cohort_dir, cohort_dir / "cohort.csv", home, "bench-secret", workers=workers, config=ReaderConfig(**READER_ARGS))
    return report, time.perf_counter() - wall, _cpu_s() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200, help="phantom cohort size")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare")
    parser.add_argument("--cohort-dir", type=Path, default=None, help="reuse/generate the phantom here")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        cohort_dir = args.cohort_dir or Path(tmp) / "cohort"
        if not (cohort_dir / "cohort.csv").exists():
            t0 = time.perf_counter()
            generate_cohort(cohort_dir, args.patients, seed=args.seed, missing_rate=0.2)
            print(f"generated {args.patients} patients in {time.perf_counter() - t0:.1f} s")
        files = [p for p in cohort_dir.rglob("*") if p.is_file()]
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        for workers in (int(w) for w in args.workers.split(",")):
            home = Path(tmp) / f"home_{workers}"
            for name in ("cold", "warm re-run"):
                report, wall, cpu = _run(cohort_dir, home, workers)
                rows.append((name, workers, report, wall, cpu))
                print(f"{name} workers={workers}: {wall:.1f} s wall, {cpu:.1f} s CPU, {report.new} read, "
                      f"{report.skipped} skipped, {report.n_quarantined} quarantined", flush=True)

    n = args.patients
    print(f"\n{n} patients, {len(files)} files ({size_mb:.0f} MB); {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| run | workers | items read | wall s | patients/s | CPU s (all processes) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, workers, report, wall, cpu in rows:
        print(f"| {name} | {workers} | {report.new} | {wall:.1f} | {n / wall:.2f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
