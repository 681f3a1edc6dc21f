"""The pool of reader processes ingest runs its work units in, and what survives a dying worker.

Process model (the one place it is decided): readers run in a pool of
**forked** processes. Fork, not spawn, because workers then start in
milliseconds and inherit the heavy reader modules (:data:`PRELOAD`: spaCy, MNE,
MONAI/torch) that the parent imports once before the pool starts, so neither
the workers nor the fresh pools that replace a crashed one pay those imports
again. What fork demands of the caller: each worker runs torch on one thread
(a parent whose OpenMP pool already ran would otherwise deadlock the child),
and the caller must not hold other threads' locks at fork time. A Prefect flow
run does (its event loop and log threads), so ``flows.flows.tasks`` calls ``ingest``
(and, on a Dask cluster, ``ingestion.driver.chunks.read_chunk``) from a freshly
spawned, single-threaded process. The pool starts only when something is left
to read. (Python 3.11's ``forkserver`` cannot be reused from a forked child,
which the concurrency tests do.)
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ingestion.atomic_files import DiskFullError
from ingestion.driver.worker import ItemResult, LazyReader, Readers, WorkUnit, process_unit, quarantined_result

log = logging.getLogger(__name__)


PRELOAD: dict[str, tuple[str, tuple[str, ...]]] = {
    "note": ("read_notes", ("spacy", "negspacy.negation")),
    "eeg": ("read_eeg", ("mne", "scipy.signal")),
    "ct": ("read_ct_series", ("torch", "monai.data", "monai.transforms")),
    "xray": ("read_xray", ("torch",)),
    "image": ("read_image_file", ("torch", "PIL.PngImagePlugin", "PIL.JpegImagePlugin")),
}
"""Per kind: the reader, and the heavy modules it imports on first use."""


def preload_readers(kinds: set[str], readers: Readers) -> None:
    """Import the real readers' heavy modules once in the parent before forking workers.

    Forked workers inherit them, so no worker (nor a fresh pool after a crash)
    pays the import again: spaCy alone takes seconds.
    """
    if _mp_context().get_start_method() != "fork":
        return
    for kind in sorted(kinds & set(PRELOAD)):
        attr, modules = PRELOAD[kind]
        reader = getattr(readers, attr)
        if not isinstance(reader, LazyReader):
            continue
        for module in (reader.module, *modules):
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - the worker will report the reader's own error
                log.debug("preloading %s failed: %s", module, exc)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Fork where available (see the module docstring); spawn elsewhere (Windows)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _worker_init() -> None:
    """Run each worker's torch on one thread: ``workers`` processes share the cores between them.

    One thread also never enters an OpenMP parallel region, so a worker stays
    safe even under a start method that forks a process whose pool already ran.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _run_alone(unit: WorkUnit, args: tuple[Any, ...]) -> list[ItemResult]:
    """Retry one unit in a fresh single-worker pool; quarantine it if that worker dies too."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=_mp_context(), initializer=_worker_init) as pool:
            return pool.submit(process_unit, unit, *args).result()
    except DiskFullError:
        raise
    except BrokenProcessPool:
        reason = (f"{unit.source_uri}: the reader's worker process died twice on this item (a crash in a "
                  "decoder or running out of memory); inspect the file, or ingest it on a larger machine")
    except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled back
        reason = f"{unit.source_uri}: the worker failed ({type(exc).__name__}); report it with this file"
    return [quarantined_result(unit, reason)]


def run_units(units: Sequence[WorkUnit], args: tuple[Any, ...], workers: int) -> Iterator[tuple[WorkUnit, list[ItemResult]]]:
    """Yield ``(unit, results)`` as workers finish, whatever happens to a worker.

    At most ``workers + 1`` units are in flight, so when a worker dies the
    suspects are those few: each is retried alone in a fresh pool, and the
    rest of the queue goes on in a new parallel pool.
    """
    pending = deque(units)
    while pending:
        suspects: list[WorkUnit] = []
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))), mp_context=_mp_context(),
                                 initializer=_worker_init) as pool:
            in_flight: dict[Future, WorkUnit] = {}
            try:
                while pending or in_flight:
                    while pending and len(in_flight) < workers + 1:
                        unit = pending.popleft()
                        try:
                            in_flight[pool.submit(process_unit, unit, *args)] = unit
                        except BrokenProcessPool:
                            pending.appendleft(unit)
                            raise
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: in_flight[f].source_uri):
                        unit = in_flight[future]
                        try:
                            results = future.result()
                        except (BrokenProcessPool, DiskFullError):
                            raise
                        except Exception as exc:  # noqa: BLE001 - never lose an item to an odd worker error
                            results = [quarantined_result(unit, f"{unit.source_uri}: the worker failed "
                                                                f"({type(exc).__name__}); report it with this file")]
                        del in_flight[future]
                        yield unit, results
            except BrokenProcessPool:
                suspects = sorted(in_flight.values(), key=lambda u: u.source_uri)
        if suspects:
            log.warning("a worker process died; retrying %d item(s) one at a time", len(suspects))
        for unit in suspects:
            yield unit, _run_alone(unit, args)
