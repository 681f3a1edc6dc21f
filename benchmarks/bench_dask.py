"""Ingest + encode throughput on a real dask.distributed cluster (1 vs 2 worker processes) and the local runner.

The same phantom cohort is ingested and encoded by the ingest and encode flows,
into a fresh home each time, so every run does the full work: first with the
default local runner (one ingest task whose reader processes run on this
machine, encode chunks on threads), then with ``prefect_dask.DaskTaskRunner``
on a cluster started with the ``dask`` CLI on loopback (``dask scheduler`` +
N × ``dask worker --nthreads 1``), where ingest hashes chunks of files and
reads chunks of items on the workers and encode runs one task per chunk. The
figure is items per second (ingested items + encoded items over the wall
time of both flows), as a ratio of the local runner's measured in the same
run. The cluster shares this machine's cores with everything else running (the
load average is recorded beside each row), so the ratio is bounded by the idle
cores.

    nice python benchmarks/bench_dask.py --patients 24 --write
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


def _run(source: Path, home: Path, address: str | None, workers: int) -> dict:
    """Wall seconds of ingest and of encode (default runner when ``address`` is None), and the item counts."""
    from tests.flows.test_dask_cluster import run_encode, run_ingest

    load = os.getloadavg()[0]
    started = time.perf_counter()
    report = run_ingest(source, home, address, workers=workers)
    ingested = time.perf_counter()
    result = run_encode(home, address)
    done = time.perf_counter()
    items = report.new + sum(result.encoded.values())
    return {"ingest_s": ingested - started, "encode_s": done - ingested, "seconds": done - started,
            "ingested": report.new, "encoded": sum(result.encoded.values()), "items_per_s": items / (done - started),
            "load": (load + os.getloadavg()[0]) / 2}


def measure(patients: int, chunk_items: int, workers: tuple[int, ...]) -> list[dict]:
    """The local default runner, then a fresh cluster of each size in ``workers``, on one generated cohort."""
    from flows.settings import get_settings
    from ingestion.phantom import generate_cohort
    from tests.dask_cli import start_cluster, stop_cluster

    os.environ.update(CLINFUSE_PSEUDONYM_SECRET="bench-dask", CLINFUSE_CHUNK_ITEMS=str(chunk_items),
                      CLINFUSE_NOTE_ENCODER="tfidf", CLINFUSE_DEVICE="cpu")
    get_settings.cache_clear()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        source = root / "cohort"
        generate_cohort(source, patients, seed=21, missing_rate=0.0, eeg_seconds=(20, 30))
        for n in (0, *workers):
            if n == 0:  # the local default runner, with the settings' reader processes
                row = {"runner": f"local default (threads, {get_settings().workers} reader processes)",
                       **_run(source, root / "home-local", None, get_settings().workers)}
            else:
                (root / f"logs{n}").mkdir()
                address, procs = start_cluster(root / f"logs{n}", n)
                try:  # one reader process per Dask worker: the workers are the parallelism
                    row = {"runner": f"Dask, {n} worker process(es)", **_run(source, root / f"home{n}", address, 1)}
                finally:
                    stop_cluster(procs)
            rows.append(row)
            print(f"{row['runner']}: {row['ingested']} ingested + {row['encoded']} encoded in {row['seconds']:.1f} s "
                  f"({row['items_per_s']:.2f} items/s, load {row['load']:.1f})", flush=True)
    return rows


def markdown(rows: list[dict], patients: int, chunk_items: int) -> str:
    base = rows[0]["items_per_s"]
    lines = ["Produced by `benchmarks/bench_dask.py --write`: a phantom cohort of "
             f"{patients} patients (CT, X-ray, EEG, notes) ingested and encoded by the ingest and encode flows, "
             "first with the local default task runner, then through `DaskTaskRunner` on a `dask scheduler` with N "
             "`dask worker --nthreads 1 --no-nanny` processes on 127.0.0.1 (ingest: hash chunks of files and read "
             f"chunks of items on the workers, merged once in the flow; encode: one task per chunk), chunks of "
             f"{chunk_items} items, a fresh home per run (full work, no cache). Items/s counts ingested plus encoded "
             f"items over the wall time of both flows. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
             "shared with other work during the run: the load average (1 min, mean of start and end) is given per "
             "row.", "",
             "| runner | ingest (s) | encode (s) | items ingested + encoded | items / s | vs local | load avg |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['runner']} | {r['ingest_s']:.1f} | {r['encode_s']:.1f} | {r['ingested']} + {r['encoded']} "
                     f"| {r['items_per_s']:.2f} | {r['items_per_s'] / base:.2f}x | {r['load']:.1f} |")
    lines += ["", "The wall time includes Prefect's per-task overhead and each Dask worker's first import of the "
              "readers (in the process it spawns for reading) and of the encoders. With more worker processes "
              "than idle cores the extra worker adds scheduling and imports, not speed; on a cluster of machines "
              "each worker brings its own cores."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=24)
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
