"""`clinfuse serve` start-up: the whole command until it prints "clinfuse is serving", beside each server alone.

A team restarts `clinfuse serve` after every upgrade and every reboot; until it
answers, nothing is scheduled and the dashboard is down. The alternative named
in the table is the three servers started one after the other (each one's own
start measured alone, summed), which is what `serve` did before it started them
side by side; the floor is the slowest server alone.

Every run is a fresh home in a temporary folder, on free loopback ports, and is
stopped with SIGTERM (the stop time is recorded too).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLINFUSE = Path(sys.executable).parent / "clinfuse"
READY = "clinfuse is serving"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_once(work: Path, timeout_s: float = 300.0) -> tuple[float, float]:
    """Seconds from spawning `clinfuse serve` to its ready line (every server healthy), and from SIGTERM to exit."""
    from flows.serve.team import wait_http

    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["CLINFUSE_HOME"] = str(work / "home")
    out = work / "serve.out"
    started = time.perf_counter()
    with open(out, "wb") as log:
        proc = subprocess.Popen([str(CLINFUSE), "serve", "--prefect-port", str(ports[0]), "--mlflow-port",
                                 str(ports[1]), "--dashboard-port", str(ports[2])], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while READY not in out.read_text(errors="replace"):
            if proc.poll() is not None or time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"clinfuse serve did not get ready: {out.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        ready = time.perf_counter() - started
        for port, path in zip(ports, ("/api/health", "/health", "/_stcore/health")):
            wait_http(f"http://127.0.0.1:{port}{path}", 10)
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        return ready, time.perf_counter() - stopping
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def alone_once(work: Path) -> dict[str, float]:
    """Each server `serve` starts, alone on an idle machine: seconds until its health URL answers."""
    from flows.serve.team import Services, dashboard, mlflow_server, prefect_server
    from flows.settings import Settings

    settings = Settings(home=work / "home")
    settings.ensure_dirs()
    makers = {"Prefect server": lambda: prefect_server(settings, free_port()),
              "MLflow server": lambda: mlflow_server(settings, free_port()),
              "dashboard": lambda: dashboard(settings, free_port(), None, None)}
    seconds = {}
    for name, make in makers.items():
        with Services(work / "logs") as services:
            started = time.perf_counter()
            services.start(make())
            seconds[name] = time.perf_counter() - started
    return seconds


def table(serve: list[tuple[float, float]], alone: list[dict[str, float]], loads: tuple[float, float]) -> str:
    ready = statistics.median(r for r, _ in serve)
    stop = statistics.median(s for _, s in serve)
    each = {name: statistics.median(a[name] for a in alone) for name in alone[0]}
    one_by_one, floor = sum(each.values()), max(each.values())
    lines = [f"`benchmarks/bench_serve.py`: median of {len(serve)} run(s) each, a fresh home every time, on 2 cores; "
             f"load average (1 min) {loads[0]:.1f} at the start and {loads[1]:.1f} at the end. `clinfuse serve` is "
             "timed as the whole process (interpreter start, imports, the three servers, pools, deployments and "
             "both workers) until it prints that it is serving.", "",
             "| what | seconds | / `clinfuse serve` |", "|---|---:|---:|",
             f"| `clinfuse serve` until serving | {ready:.1f} | 1.00 |"]
    lines += [f"| {name} alone, until healthy | {s:.1f} | {s / ready:.2f} |" for name, s in each.items()]
    lines += [f"| the three servers one after the other (sum of the above; how `serve` started them before) | "
              f"{one_by_one:.1f} | {one_by_one / ready:.2f} |",
              f"| `clinfuse serve` stop after SIGTERM, every service gone | {stop:.1f} | - |", "",
              f"Serving takes {ready - floor:.1f} s more than the slowest server alone ({max(each, key=each.get)}): "
              "the other servers' start-up on the same 2 cores, then pools, deployments and the workers, which need "
              "the Prefect API and so come after it."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement (median)")
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    serve, alone = [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
            serve.append(serve_once(Path(tmp)))
            print(f"run {i + 1}: serve ready {serve[-1][0]:.1f} s, stopped {serve[-1][1]:.1f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench_serve_alone_") as tmp:
            alone.append(alone_once(Path(tmp)))
            print(f"run {i + 1}: alone {alone[-1]}", flush=True)
    markdown = table(serve, alone, (load_start, os.getloadavg()[0]))
    print(markdown)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section("## Serve start-up", "Produced by `benchmarks/bench_serve.py --write`.\n\n" + markdown)


if __name__ == "__main__":
    main()
