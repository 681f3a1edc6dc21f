"""Ingest + encode throughput on a real dask.distributed cluster: 1 vs 2 worker processes.

The same phantom cohort is ingested and encoded through the ingest and encode
flows with ``prefect_dask.DaskTaskRunner`` on a cluster started with the
``dask`` CLI on loopback (``dask scheduler`` + N × ``dask worker --nthreads 1``),
into a fresh home each time, so every run does the full work. The figure is the
2-worker throughput as a ratio of the 1-worker throughput measured in the same
run. The cluster shares this machine's cores with everything else running, so
the ratio is bounded by the idle cores (2 on the reference machine).

    python benchmarks/bench_dask.py --patients 8 --write
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEADING = "## Dask fan-out (ingest + encode per chunk)"


def _run(source: Path, home: Path, address: str) -> tuple[float, int]:
    """Wall seconds of ingest + encode on the cluster, and the number of items encoded."""
    from tests.flows.test_dask_cluster import run_ingest_encode

    started = time.perf_counter()
    result = run_ingest_encode(source, home, address)
    return time.perf_counter() - started, sum(result.encoded.values())


def measure(patients: int, chunk_items: int, workers: tuple[int, ...]) -> list[dict]:
    from flows.settings import get_settings
    from ingestion.phantom import generate_cohort
    from tests.dask_cli import start_cluster, stop_cluster

    os.environ.update(CLINFUSE_PSEUDONYM_SECRET="bench-dask", CLINFUSE_CHUNK_ITEMS=str(chunk_items),
                      CLINFUSE_NOTE_ENCODER="tfidf", CLINFUSE_DEVICE="cpu", CLINFUSE_WORKERS="1")
    get_settings.cache_clear()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        source = root / "cohort"
        generate_cohort(source, patients, seed=21, missing_rate=0.0, eeg_seconds=(20, 30))
        for n in workers:
            (root / f"logs{n}").mkdir()
            address, procs = start_cluster(root / f"logs{n}", n)
            try:
                seconds, items = _run(source, root / f"home{n}", address)
            finally:
                stop_cluster(procs)
            rows.append({"workers": n, "seconds": seconds, "items": items, "items_per_s": items / seconds})
            print(f"{n} worker process(es): {items} items in {seconds:.1f} s ({items / seconds:.2f} items/s)",
                  flush=True)
    return rows


def markdown(rows: list[dict], patients: int, chunk_items: int) -> str:
    base = rows[0]["items_per_s"]
    lines = ["Produced by `benchmarks/bench_dask.py --write`: a phantom cohort of "
             f"{patients} patients (CT, X-ray, EEG, notes) ingested and encoded by the ingest and encode flows "
             f"through `DaskTaskRunner` on a `dask scheduler` with N `dask worker --nthreads 1 --no-nanny` "
             f"processes on 127.0.0.1, chunks of {chunk_items} items, a fresh home per run (full work, no cache). "
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other work during the run).", "",
             "| worker processes | wall time (s) | items encoded | items / s | vs 1 worker |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['seconds']:.1f} | {r['items']} | {r['items_per_s']:.2f} | "
                     f"{r['items_per_s'] / base:.2f}x |")
    lines += ["", "The wall time includes Prefect's per-task overhead and each worker's first import of the "
              "readers and encoders; the speed-up is bounded by the cores left idle on the machine."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--chunk-items", type=int, default=4)
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    rows = measure(args.patients, args.chunk_items, (1, 2))
    text = markdown(rows, args.patients, args.chunk_items)
    print(text)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)


if __name__ == "__main__":
    main()
