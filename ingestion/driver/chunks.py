"""Ingest split into chunks of source files and of items, so a cluster hashes and reads many at once.

Why: one ingest task keeps a 50,000-patient backlog on one machine. Here the
driver (the flow's process) walks the source and plans what is new; cluster
workers hash chunks of files (:func:`hash_chunk`) and read, de-identify and
write the arrays of chunks of items (:func:`read_chunk`, the same
``process_unit`` a local ingest runs); then :func:`merge_chunks`, back in the
driver, records every result in the manifest in one write. Manifest rows,
arrays and quarantine are therefore those of :func:`ingestion.driver.ingest.ingest`.

Everything a worker needs arrives as an argument (reader settings, the home's
path, the site secret), never from the worker's own environment: a worker
started with other ``CLINFUSE_*`` variables still gives the driver's result.
The source and the home must be at the same paths on every worker (shared
storage); array files are written by the worker that read the item, the
manifest only by the driver.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingestion.home_layout import HomeLayout
from ingestion.driver.ingest import (
    SOURCE_HASHES, IngestPlan, IngestReport, finish_ingest, open_home, plan_ingest, record_results,
)
from ingestion.driver.reader_pool import preload_readers, run_units
from ingestion.driver.hashing import HashCache
from ingestion.driver.sources import list_files
from ingestion.driver.worker import ItemResult, ReaderConfig, Readers, WorkUnit, default_readers
from ingestion.manifest import upsert_manifest

HASH_CHUNK_FILES = 256
"""Source files per hashing task: enough bytes per task that scheduling costs little beside reading."""


@dataclass
class ChunkedIngest:
    """What the driver holds between planning and merging: the plan and the chunks of units to read."""

    source: Path
    cohort_csv: Path | None
    layout: HomeLayout
    version: str
    plan: IngestPlan
    chunks: list[tuple[WorkUnit, ...]]
    started: float


def file_chunks(source: Path, home: Path, cohort_csv: Path | None = None,
                exclude: Sequence[Path] = ()) -> list[tuple[str, ...]]:
    """The source's files (absolute paths, sorted) in chunks of :data:`HASH_CHUNK_FILES`, for :func:`hash_chunk`."""
    source, layout = open_home(source, home)
    skip = [layout.root, *([Path(cohort_csv)] if cohort_csv else []), *map(Path, exclude)]
    files = [str(p.absolute()) for p in list_files(source, skip)]
    return [tuple(files[i:i + HASH_CHUNK_FILES]) for i in range(0, len(files), HASH_CHUNK_FILES)]


def hash_chunk(paths: Sequence[str]) -> dict[str, list]:
    """Content hashes of ``paths`` as hash-cache entries (a worker's share of the source walk).

    A file that cannot be read is left out: the plan meets it again and records why.
    """
    cache = HashCache(None)
    for path in paths:
        try:
            cache.sha256(Path(path))
        except OSError:
            continue
    return cache.remembered()


def plan_chunks(source: Path, cohort_csv: Path | None, home: Path, config: ReaderConfig, chunk_items: int,
                exclude: Sequence[Path] = (), hashed: Sequence[dict[str, list]] = (),
                readers: Readers | None = None) -> ChunkedIngest:
    """Plan the run (as a local ingest would) and cut the units to read into chunks of ``chunk_items``.

    ``hashed`` are :func:`hash_chunk` results: merged into the home's hash cache
    first, so planning opens no file the workers already hashed (DICOM headers
    are still indexed here, to group series). Units are sorted by source path,
    so the chunks are a pure function of the source and the manifest. ``readers``
    replaces the real readers (tests), as in ``ingest``.
    """
    if chunk_items < 1:
        raise ValueError(f"chunk_items must be at least 1, got {chunk_items}")
    started = time.perf_counter()
    source, layout = open_home(source, home)
    cache = HashCache(layout.root / SOURCE_HASHES)
    for entries in hashed:
        cache.remember(entries)
    cache.save()
    version = config.pipeline_version()
    plan = plan_ingest(source, cohort_csv, layout, version, readers or default_readers(), exclude)
    todo = sorted(plan.todo, key=lambda u: u.source_uri)
    chunks = [tuple(todo[i:i + chunk_items]) for i in range(0, len(todo), chunk_items)]
    return ChunkedIngest(source, Path(cohort_csv) if cohort_csv else None, layout, version, plan, chunks, started)


def read_chunk(units: Sequence[WorkUnit], config: ReaderConfig, home: Path, secret: str,
               workers: int = 1, readers: Readers | None = None) -> list[ItemResult]:
    """Read, pseudonymise and write the arrays of ``units``; returns their results (never raises for bad input).

    Forks reader processes (crash isolation as in a local ingest), so call it from
    a single-threaded process (``flows`` runs it in a spawned one).
    """
    readers = readers or default_readers()
    preload_readers({unit.kind for unit in units}, readers)
    results: list[ItemResult] = []
    for _, unit_results in run_units(list(units), (config, Path(home), secret, readers), workers):
        results += unit_results
    return sorted(results, key=lambda r: (r.source_uri, r.item_id))


def merge_chunks(run: ChunkedIngest, parts: Sequence[Sequence[ItemResult]], secret: str) -> IngestReport:
    """Record every chunk's results in the manifest (one write), then the cohort; returns the run's report."""
    rows = [row for results in parts for row in record_results(run.plan, run.layout, run.version, results)]
    upsert_manifest(run.layout.manifest_path, rows)
    new_items = sum(len(results) for results in parts)
    return finish_ingest(run.plan, run.source, run.cohort_csv, run.layout, secret, run.version, new_items,
                         run.started)
