"""Load: the dashboard worklist under 20 concurrent sessions on 10,000 patients, and predict-path memory vs cohort size.

    .venv/bin/python benchmarks/bench_load.py --patients 10000 --sessions 20 --queries 10

Part 1 writes a 10,000-patient fixture home (tests/dashboard/fixtures.py), starts the real Streamlit
dashboard on 127.0.0.1, then runs ``sessions`` threads at once, each doing ``queries`` rounds of
(a) the worklist page's data query (``dashboard.store_queries.query_worklist``, a fresh DuckDB
connection each time, i.e. no Streamlit cache) and (b) a GET of the dashboard page and health
endpoint over loopback. Reports p50/p95/max per kind (target: worklist data p95 < 1 s).

Part 2 trains one small fusion model on synthetic features, then for each cohort size runs
``TrainedModel.predict`` (MC intervals included) in a fresh process and reports the process's peak
RSS and the time: peak memory should stay flat as the cohort grows (batched prediction).
Prints Markdown rows for docs/BENCHMARKS.md ("## Reliability and load").
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PREDICT_CHILD = """
import json, resource, sys, time
import numpy as np
from models.synthetic_features import synthetic_cohort
from models.trained_model import TrainedModel
model = TrainedModel.load(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fs = synthetic_cohort(n=int(sys.argv[2]), dim=32, missing_rate=0.3, seed=5).features
t0 = time.perf_counter()
out = model.predict(fs, n_mc=30)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": len(out), "seconds": dt, "peak_mb": peak / 1024, "base_mb": base / 1024}))
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _serve_dashboard(home: Path, port: int) -> subprocess.Popen:
    import os

    env = {**os.environ, "CLINFUSE_HOME": str(home)}
    env.pop("CLINFUSE_DASHBOARD_PASSWORD", None)
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "streamlit"), "run", str(REPO / "dashboard" / "app.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the dashboard did not start in 120 s")


def worklist_load(patients: int, sessions: int, queries: int) -> dict[str, dict[str, float]]:
    from dashboard.store_queries import WorklistFilters, query_worklist
    from tests.conftest import free_port
    from tests.dashboard.fixtures import build_home

    home = Path(tempfile.mkdtemp(prefix="bench_load_")) / "home"
    t0 = time.perf_counter()
    build_home(home, n_patients=patients)
    print(f"fixture home with {patients} patients in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    port = free_port()
    server = _serve_dashboard(home, port)
    times: dict[str, list[float]] = {"worklist_query": [], "filtered_query": [], "http_page": []}
    lock = threading.Lock()
    filters = WorklistFilters(risk_bands=("high",), require_present=("ct",), sort_by="risk")

    def session(k: int) -> None:
        for i in range(queries):
            for kind, fn in (("worklist_query", lambda: query_worklist(home / "predictions")),
                             ("filtered_query", lambda: query_worklist(home / "predictions", filters=filters)),
                             ("http_page", lambda: [urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=30)
                                                    .read() for p in ("/", "/_stcore/health")])):
                t = time.perf_counter()
                result = fn()
                elapsed = time.perf_counter() - t
                if kind != "http_page":
                    assert len(result.rows) > 0
                with lock:
                    times[kind].append(elapsed)

    try:
        threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(30)
    stats = {k: {"n": len(v), "p50": statistics.median(v), "p95": _pct(v, 0.95), "max": max(v)}
             for k, v in times.items()}
    stats["wall"] = {"seconds": wall}
    return stats


def predict_memory(sizes: list[int]) -> list[dict[str, float]]:
    from models.synthetic_features import synthetic_cohort
    from models.train import TrainConfig, train

    model_dir = Path(tempfile.mkdtemp(prefix="bench_load_model_")) / "model"
    fs = synthetic_cohort(n=300, dim=32, missing_rate=0.3, seed=4).features
    train(fs, TrainConfig(epochs=20, patience=20, seed=1)).save(model_dir)
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", PREDICT_CHILD, str(model_dir), str(n)], cwd=REPO,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--queries", type=int, default=10, help="rounds per session (bounded load)")
    parser.add_argument("--sizes", default="500,2000,5000", help="cohort sizes for the predict-memory part")
    args = parser.parse_args()
    stats = worklist_load(args.patients, args.sessions, args.queries)
    print(f"\n| load ({args.patients:,} patients, {args.sessions} concurrent sessions x {args.queries}) "
          "| n | p50 s | p95 s | max s |\n|---|---|---|---|---|")
    for kind in ("worklist_query", "filtered_query", "http_page"):
        s = stats[kind]
        print(f"| {kind} | {s['n']} | {s['p50']:.3f} | {s['p95']:.3f} | {s['max']:.3f} |")
    print(f"\nwall time for all sessions: {stats['wall']['seconds']:.1f} s")
    rows = predict_memory([int(x) for x in args.sizes.split(",")])
    print("\n| predict path (TrainedModel.predict, n_mc=30) | patients | seconds | peak RSS MB | RSS before data MB |"
          "\n|---|---|---|---|---|")
    for r in rows:
        print(f"| synthetic FeatureSet, dim 32 | {r['n']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['base_mb']:.0f} |")


if __name__ == "__main__":
    main()
