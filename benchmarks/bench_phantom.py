"""Phantom cohort generator: time, memory and size of a 200-patient export, and the oracle's AUROCs.

Run: .venv/bin/python benchmarks/bench_phantom.py [--patients 200] [--workers 1 2]
Prints Markdown table rows for docs/BENCHMARKS.md ("## Phantom cohort generator").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

from ingestion.modalities import MODALITIES
from ingestion.phantom import generate_cohort, sample_latents

CHILD = """
import resource, sys, time
from pathlib import Path
from ingestion.phantom import generate_cohort
t, c = time.perf_counter(), time.process_time()
s = generate_cohort(Path(sys.argv[1]), int(sys.argv[2]), seed=7, workers=int(sys.argv[3]))
children = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = time.process_time() - c + children.ru_utime + children.ru_stime
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss) / 1024
print(time.perf_counter() - t, cpu, rss, s.n_files)
"""


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print("| run | patients | workers | wall s | CPU s | peak RSS MiB | files | MiB on disk |")
    print("|---|---|---|---|---|---|---|---|")
    for workers in args.workers:  # a fresh process per run so peak RSS is that run's
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cohort"
            line = subprocess.run([sys.executable, "-c", CHILD, str(out), str(args.patients), str(workers)],
                                  check=True, capture_output=True, text=True).stdout.split()
            wall, cpu, rss, files = float(line[0]), float(line[1]), float(line[2]), int(line[3])
            print(f"| generate_cohort, EEG 60-120 s, no missingness | {args.patients} | {workers} | "
                  f"{wall:.1f} | {cpu:.1f} | {rss:.0f} | {files} | {_size_mb(out):.0f} |")
    start = time.perf_counter()
    frame = sample_latents(100_000, seed=1)
    took = time.perf_counter() - start
    aucs = {m: roc_auc_score(frame["label"], frame[f"oracle_risk_{m}"]) for m in (*MODALITIES, "labs")}
    print(f"\nsample_latents(100 000): {took:.2f} s; prevalence {frame['label'].mean():.3f}; "
          f"interaction-driven labels {frame['interaction'].mean():.3f}")
    print("| oracle | AUROC (100 000 latent patients, seed 1) |\n|---|---|")
    print(f"| full information | {roc_auc_score(frame['label'], frame['oracle_risk']):.3f} |")
    print(f"| all evidence, no CT/EEG sides | {roc_auc_score(frame['label'], frame['oracle_risk_no_sides']):.3f} |")
    for name, auc in aucs.items():
        print(f"| {name} only | {auc:.3f} |")


if __name__ == "__main__":
    main()
