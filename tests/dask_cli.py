"""Start and stop a real dask.distributed cluster with the ``dask`` CLI on loopback (tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).with_name("dask"))
PATIENT_COMMS = {"distributed.comm.timeouts.connect": "120s", "distributed.comm.timeouts.tcp": "600s"}
"""A loaded CI machine can starve the scheduler's event loop for a minute (seen: 82 s on 2 shared cores);
default 30 s TCP timeouts then drop the client and cancel every task. Applied to the scheduler, the
workers and, via :func:`start_cluster`, this process's clients (DaskTaskRunner's included)."""


def _start(args: list[str], log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           **{"DASK_" + key.upper().replace(".", "__").replace("-", "_"): value for key, value in PATIENT_COMMS.items()}}
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([DASK, *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group (scheduler and workers), SIGKILL any that does not exit within 20 s."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_cluster(root: Path, n_workers: int,
                  worker_env: dict[str, str] | None = None) -> tuple[str, list[subprocess.Popen]]:
    """``dask scheduler`` + ``n_workers`` × ``dask worker`` (one thread, no nanny) on loopback.

    ``worker_env`` is added to the workers' environment (tests start them with other
    ``CLINFUSE_*`` values than the flow's, which must change nothing).
    """
    import dask
    from distributed import Client

    dask.config.set(PATIENT_COMMS)
    address = f"tcp://127.0.0.1:{free_port()}"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                    root / "scheduler.log")]
    try:
        for i in range(n_workers):
            procs.append(_start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", "--name", f"w{i}"], root / f"worker{i}.log", worker_env))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=120)
    except Exception:
        stop_cluster(procs)
        raise
    return address, procs
