"""The outbox's per-patient work on several processes: de-identified image references and SR encoding.

Why: both are pure, per-patient and CPU-bound (read and de-identify every referenced image header; build,
validate and encode the SR with highdicom) and ran on one core: 55 s of the demo's 200-patient batch with
7,623 referenced instances. The processes are spawned, not forked: the outbox runs inside a Prefect flow,
whose threads may hold locks at fork time (the process model is written down in
``ingestion/driver/reader_pool.py``). A spawned process pays its imports (about 2 s), so a batch with less
work than :data:`MIN_PARALLEL` patients stays in this process. Results are the same either way: each item
is computed alone, and the parent writes the files.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MIN_PARALLEL = 16
"""Fewer patients to work on than this: one process (the pool's start costs more than it saves)."""

Mapper = Callable[[Callable[[Any], Any], list[Any]], Iterable[Any]]


def serial_map(fn: Callable[[Any], Any], items: list[Any]) -> Iterable[Any]:
    return map(fn, items)


@contextmanager
def outbox_mapper(workers: int, n_items: int) -> Iterator[Mapper]:
    """A ``map`` over ``workers`` spawned processes when there is enough work, else the builtin one, in order."""
    if workers <= 1 or n_items < MIN_PARALLEL:
        yield serial_map
        return
    processes = min(workers, n_items)
    chunk = max(1, n_items // (processes * 4))
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda fn, items: pool.map(fn, items, chunksize=chunk)


def references_of(job: tuple[list[Path], str]) -> tuple[list[Any], list[str]]:
    """One patient's de-identified references and the reasons of files left out (runs in a pool process)."""
    from ingestion.deid.uids import deidentified_refs

    paths, secret = job
    return deidentified_refs(paths, secret)


def encoded_sr(result: Any) -> bytes | str:
    """One result's SR file, or the reason it cannot be written (a ValueError's text; runs in a pool process)."""
    from models.outbox.sr import sr_bytes

    try:
        return sr_bytes(result)
    except ValueError as exc:
        return f"{result.patient_id}: no SR: {' '.join(str(exc).split())[:240]}"
