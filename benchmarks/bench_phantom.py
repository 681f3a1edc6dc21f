"""Phantom cohort generator: time, memory and size of a 200-patient export, and the oracle's AUROCs.

Run: .venv/bin/python benchmarks/bench_phantom.py [--patients 200] [--workers 1 2] [--write]

Each run writes a cohort (seed 7, no missingness) in a fresh process, so its peak RSS is that
run's; the alternative compared is the worker count (1 = one process). Then the latent model
alone (``sample_latents``, no files) for the oracles' AUROCs. Prints the Markdown section;
``--write`` puts it in docs/BENCHMARKS.md ("## Phantom cohort generator").
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

from ingestion.modalities import MODALITIES
from ingestion.phantom import sample_latents

HEADING = "## Phantom cohort generator"

CHILD = """
import resource, sys, time
from pathlib import Path
from ingestion.phantom import generate_cohort
t, c = time.perf_counter(), time.process_time()
s = generate_cohort(Path(sys.argv[1]), int(sys.argv[2]), seed=7, workers=int(sys.argv[3]),
                    eeg_seconds=(int(sys.argv[4]), int(sys.argv[5])))
children = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = time.process_time() - c + children.ru_utime + children.ru_stime
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss) / 1024
print(time.perf_counter() - t, cpu, rss, s.n_files)
"""


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--eeg-seconds", type=int, nargs=2, default=[60, 120], help="EEG length range (s)")
    parser.add_argument("--latents", type=int, default=100_000, help="latent patients for the oracle AUROCs")
    parser.add_argument("--write", action="store_true", help="write the section into docs/BENCHMARKS.md")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    rows = []
    for workers in args.workers:  # a fresh process per run so peak RSS is that run's
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cohort"
            line = subprocess.run([sys.executable, "-c", CHILD, str(out), str(args.patients), str(workers),
                                   *map(str, args.eeg_seconds)], check=True, capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[1]).stdout.split()
            rows.append({"workers": workers, "wall": float(line[0]), "cpu": float(line[1]), "rss": float(line[2]),
                         "files": int(line[3]), "mib": _size_mb(out)})
            print(rows[-1], flush=True)
    start = time.perf_counter()
    frame = sample_latents(args.latents, seed=1)
    took = time.perf_counter() - start
    aucs = {m: roc_auc_score(frame["label"], frame[f"oracle_risk_{m}"]) for m in (*MODALITIES, "labs")}
    lo, hi = args.eeg_seconds
    lines = [f"Produced by `benchmarks/bench_phantom.py --patients {args.patients} --workers "
             f"{' '.join(map(str, args.workers))} --eeg-seconds {lo} {hi} --write`: `generate_cohort` (seed 7, "
             f"EEG {lo}-{hi} s, no missingness: every patient gets a CT series, an X-ray, an EDF and a note) in a "
             "fresh process per run; the alternative compared is the worker count (1 = one process). CPU s = the "
             "process and its workers. Machine: "
             f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (load average "
             f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end): CPU seconds are the figure to "
             "compare; wall time includes waiting for cores. No speed target was set for the generator.", "",
             "| run | patients | workers | wall s | CPU s | CPU s / patient | CPU vs 1 worker | peak RSS MiB | files "
             "| MiB on disk |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = next((r["cpu"] for r in rows if r["workers"] == 1), rows[0]["cpu"])
    for r in rows:
        lines.append(f"| generate_cohort | {args.patients} | {r['workers']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                     f"{r['cpu'] / args.patients:.2f} | {r['cpu'] / base:.2f}x | {r['rss']:.0f} | {r['files']} | "
                     f"{r['mib']:.0f} |")
    lines += ["", f"`sample_latents({args.latents:,})` (latent model + all oracles, no files): {took:.2f} s wall.", "",
              f"| oracle ({args.latents:,} latent patients, seed 1; prevalence {frame['label'].mean():.3f}, "
              f"{100 * frame['interaction'].mean():.1f} % of labels flipped by the CT x EEG interaction) | AUROC |",
              "|---|---|",
              f"| full information (`oracle_risk`) | {roc_auc_score(frame['label'], frame['oracle_risk']):.3f} |",
              "| all evidence but no CT/EEG sides (`oracle_risk_no_sides`) | "
              f"{roc_auc_score(frame['label'], frame['oracle_risk_no_sides']):.3f} |"]
    lines += [f"| {name} only | {auc:.3f} |" for name, auc in aucs.items()]
    text = "\n".join(lines)
    print(text)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)


if __name__ == "__main__":
    main()
