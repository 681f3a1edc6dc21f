"""Ingest's tasks: the whole ingest in one task, and the fan-out for a Dask cluster (hash chunks of files,
read chunks of items, merge once). Nothing here imports torch or the models.

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

import hashlib
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from pydantic import SecretStr

from flows.flows.task_common import RETRY, cache_key, file_sha256, tree_sha256
from ingestion.driver.ingest import SOURCE_HASHES
from ingestion.driver.worker import ReaderConfig

_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _spawned(fn: Any, *args: Any, keep: bool, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a spawned single-threaded process (kept for later calls when ``keep``)."""
    global _POOL
    context = multiprocessing.get_context("spawn")
    if not keep:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(fn, *args, **kwargs).result()
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(max_workers=1, mp_context=context)
        pool = _POOL
    try:
        return pool.submit(fn, *args, **kwargs).result()
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


def _ingest_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    cohort = Path(p["cohort_csv"]) if p["cohort_csv"] else None
    skip = (*((cohort,) if cohort else ()), *map(Path, p.get("exclude") or ()))
    hashes = Path(p["home"]) / SOURCE_HASHES  # the cache ingest itself keeps: unchanged files are not read
    return cache_key("ingest", p["home"], tree_sha256(Path(p["source"]), skip, hashes), file_sha256(cohort),
                     asdict(p["reader"]), hashlib.sha256(p["secret"].encode()).hexdigest())


@task(name="ingest", cache_key_fn=_ingest_key, persist_result=True, **RETRY)
def ingest_task(source: str, cohort_csv: str | None, home: str, secret: str, reader: ReaderConfig,
                workers: int, exclude: tuple[str, ...] = ()) -> Any:
    """``ingestion.driver.ingest.ingest``: manifest, arrays, quarantine and cohort under ``home``.

    Called from a freshly spawned process: the library forks its readers, which
    this process (Prefect's event loop and log threads) must not do; see the
    process model in ``ingestion.driver.reader_pool``. Progress cannot cross that boundary,
    so the CLI shows the stage's spinner and the summary.
    """
    from ingestion.driver.ingest import ingest

    report = _spawned(ingest, Path(source), Path(cohort_csv) if cohort_csv else None, Path(home), secret, reader,
                      keep=False, workers=workers, exclude=tuple(map(Path, exclude)))
    get_run_logger().info("ingest: %d new, %d skipped, %d quarantined in %.1f s", report.new, report.skipped,
                          report.n_quarantined, report.elapsed_s)
    return report


def summary_rows(report: Any) -> list[dict[str, Any]]:
    """Ingest counts as table rows (modality, status, n) for a Prefect table artifact."""
    return [{"modality": m, "status": s, "n": int(n)} for m, by in report.counts.items() for s, n in by.items()]
