"""Ingest's fan-out tasks for a Dask cluster: hash chunks of files, read chunks of items, merge once.

Thin wrappers of ``ingestion.driver.chunks``. The flow's process resolves the
settings and passes what a task needs (reader settings, the home's path, the
secret as a ``SecretStr`` whose repr is masked); a task never reads a worker's
environment, so a worker started with other ``CLINFUSE_*`` variables changes
nothing. Reading forks reader processes, which a thread of a Dask worker must
not do, so each chunk is read in a spawned process: kept for the worker's
lifetime when the worker is another process than the flow's (its imports are
paid once), started and stopped per chunk when the task runs in the flow's own
process (threads of a local cluster), so nothing outlives the flow.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from flows.flows.tasks import RETRY

_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _spawned(fn: Any, *args: Any, keep: bool) -> Any:
    """``fn(*args)`` in a spawned single-threaded process (kept for later calls when ``keep``)."""
    global _POOL
    context = multiprocessing.get_context("spawn")
    if not keep:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(fn, *args).result()
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(max_workers=1, mp_context=context)
        pool = _POOL
    try:
        return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        with _POOL_LOCK:
            if _POOL is pool:
                _POOL = None  # the next try (the task's retry) starts a fresh process
        raise


@task(name="ingest-hash-chunk", cache_policy=NO_CACHE, **RETRY)
def hash_chunk_task(paths: tuple[str, ...]) -> dict[str, list]:
    """``ingestion.driver.chunks.hash_chunk``: content hashes of a chunk of source files."""
    from ingestion.driver.chunks import hash_chunk

    return hash_chunk(paths)


@task(name="ingest-plan", cache_policy=NO_CACHE, persist_result=False)
def plan_ingest_task(source: str, cohort_csv: str | None, home: str, reader: Any, chunk_items: int,
                     exclude: tuple[str, ...], hashed: list[dict[str, list]]) -> Any:
    """``ingestion.driver.chunks.plan_chunks``: what is new, cut into chunks of units (in the flow's process)."""
    from ingestion.driver.chunks import plan_chunks

    run = plan_chunks(Path(source), Path(cohort_csv) if cohort_csv else None, Path(home), reader, chunk_items,
                      tuple(map(Path, exclude)), hashed)
    get_run_logger().info("ingest plan: %d unit(s), %d to read in %d chunk(s)", len(run.plan.units),
                          len(run.plan.todo), len(run.chunks))
    return run


@task(name="ingest-chunk", cache_policy=NO_CACHE, **RETRY)
def ingest_chunk_task(units: tuple[Any, ...], reader: Any, home: str, secret: SecretStr, workers: int,
                      flow_pid: int) -> list[Any]:
    """``ingestion.driver.chunks.read_chunk`` in a spawned process: read, de-identify, write arrays."""
    from ingestion.driver.chunks import read_chunk

    results = _spawned(read_chunk, units, reader, home, secret.get_secret_value(), workers,
                       keep=os.getpid() != flow_pid)
    get_run_logger().info("ingest chunk: %d unit(s) -> %d item(s), %d quarantined", len(units), len(results),
                          sum(r.status == "quarantined" for r in results))
    return results


@task(name="ingest-merge", cache_policy=NO_CACHE, persist_result=False)
def merge_ingest_task(run: Any, parts: list[list[Any]], secret: SecretStr) -> Any:
    """``ingestion.driver.chunks.merge_chunks``: every chunk's rows into the manifest in one write, then the cohort."""
    from ingestion.driver.chunks import merge_chunks

    return merge_chunks(run, parts, secret.get_secret_value())
