"""The ingest driver: source folder (+ cohort table) in, manifest, arrays, quarantine and cohort out.

``ingest`` walks the source, hashes every file (the content hash makes the run
idempotent), skips items the manifest already holds, reads the rest in a
process pool and records every item, good or bad, in the manifest. A second
run over unchanged input does no work. Items already ``ok`` are never read
again, whatever the pipeline version; quarantined items are retried when the
pipeline version (package version + reader settings) changes, e.g. after a
decoder plugin was installed.

A worker that dies on one item (out of memory, a decoder segfault) breaks the
whole pool; the items that were in flight are then each retried alone in a
fresh pool, and the one that kills its pool again is quarantined with that
error. No other item is lost.

The readers' process model (forked workers, what is preloaded, why the flow task
calls ``ingest`` from a spawned process) is decided once, in :mod:`ingestion.driver.reader_pool`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from ingestion.availability import CohortJoin, cohort_join
from ingestion.cohort import read_cohort, write_cohort
from ingestion.driver.sources import KnownItem, discover_units
from ingestion.home_layout import HomeLayout
from ingestion.driver.worker import (
    ItemResult, Readers, ReaderConfig, WorkUnit, default_readers, now_utc, write_quarantine_pointer,
)
from ingestion.atomic_files import DiskFullError, atomic_path
from ingestion.driver.reader_pool import preload_readers, run_units
from ingestion.manifest import read_manifest, update_manifest, upsert_manifest
from ingestion.readers.records import QuarantineError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done_units, total_units)`` after each unit is recorded."""

SOURCE_HASHES = "source_hashes.json"
"""Content hashes of source files by (path, size, mtime), in the home (``ingestion.driver.hashing.HashCache``)."""

FLUSH_EVERY = 200
"""Results written to the manifest in batches, so an interrupted run keeps what it finished."""
FLUSH_EVERY_S = 5.0
"""...and at least this often, so a killed run loses at most a few seconds of reading, not 200 items."""


@dataclass(frozen=True)
class QuarantinedItem:
    """One item set aside in this run: where it came from and why (no patient identifiers)."""

    source_uri: str
    modality: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run found and did: ``counts[modality][status]`` covers every item of the source
    (``new`` ones read now, ``skipped`` ones already in the manifest); ``duplicate_files`` are
    byte-identical copies recorded on their original's row."""

    source: str
    manifest_path: str
    pipeline_version: str
    n_files: int
    counts: Mapping[str, Mapping[str, int]]
    new: int
    skipped: int
    duplicate_files: int
    quarantined: tuple[QuarantinedItem, ...]
    cohort: CohortJoin | None
    cohort_quarantined: tuple[QuarantinedItem, ...]
    cohort_dropped_columns: tuple[str, ...]
    elapsed_s: float

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantined)


def _done_sources(manifest: pd.DataFrame, pipeline_version: str) -> dict[str, list[int]]:
    """Source hashes whose rows need no work: ``ok``, or quarantined by this pipeline version.

    Maps the source hash (a file's, or a series' combined hash) to the manifest
    row positions of its items; a multi-note file counts as done only when
    every one of its notes is.
    """
    rows: dict[str, list[int]] = {}
    pending: set[str] = set()
    for pos, (item_id, status, version, meta) in enumerate(
            manifest[["item_id", "status", "pipeline_version", "meta_json"]].itertuples(index=False)):
        source = _source_sha(item_id, meta)
        rows.setdefault(source, []).append(pos)
        if not (status == "ok" or version == pipeline_version):
            pending.add(source)
    return {sha: positions for sha, positions in rows.items() if sha not in pending}


def _source_sha(item_id: str, meta_json: str) -> str:
    try:
        return str(json.loads(meta_json).get("source_sha256") or item_id)
    except ValueError:
        return item_id


def _add_source_files(additions: dict[int, list[tuple[str, str]]], manifest_at_start: pd.DataFrame):
    """A manifest change that lists newly seen duplicate paths on rows that already exist."""
    wanted = {manifest_at_start.iloc[pos]["item_id"]: extra for pos, extra in additions.items()}

    def change(current: pd.DataFrame) -> pd.DataFrame:
        for i in current.index[current["item_id"].isin(list(wanted))]:
            files = list(current.at[i, "source_files"])
            meta = json.loads(current.at[i, "meta_json"])
            dups = meta.setdefault("duplicates", [])
            for path, original in wanted[current.at[i, "item_id"]]:
                if path not in files:
                    files.append(path)
                    dups.append({"path": path, "duplicate_of": original})
            current.at[i, "source_files"] = files
            current.at[i, "meta_json"] = json.dumps(meta, sort_keys=True)
        return current

    return change


def ingest_cohort(cohort_csv: Path, layout: HomeLayout, secret: str):
    """Read, pseudonymise and write the cohort; report join problems instead of failing the run."""
    try:
        table = read_cohort(cohort_csv, secret)
    except QuarantineError as exc:
        log.warning("cohort table set aside: %s", exc.reason)
        return None, (QuarantinedItem(Path(cohort_csv).name, "cohort", exc.reason),), ()
    write_cohort(table.frame, layout.cohort_path)
    problems = tuple(QuarantinedItem(f"{Path(cohort_csv).name}:{p.line}", "cohort", p.reason) for p in table.problems)
    payload = json.dumps([asdict(p) for p in problems], indent=2).encode("utf-8")
    with atomic_path(layout.quarantine_dir / "cohort_rows.json") as tmp:  # lines and reasons only, no ids
        tmp.write_bytes(payload)
    for problem in problems:
        log.warning("cohort row set aside: %s: %s", problem.source_uri, problem.reason)
    join = cohort_join(read_manifest(layout.manifest_path), table.frame)
    return join, problems, table.dropped_columns


@dataclass
class IngestPlan:
    """What an ingest run found before reading: units to read, and the tallies of those it may skip.

    ``run_at`` stamps every row the run writes (``ingested_at``): one time per run,
    not the moment each reader finished, so "the latest item" means "from the
    latest run" and never depends on which worker happened to finish first.
    """

    units: list[WorkUnit]
    todo: list[WorkUnit]
    counts: Counter
    quarantined: list[QuarantinedItem]
    additions: dict[int, list[tuple[str, str]]]
    run_at: dt.datetime = field(default_factory=now_utc)


def plan_ingest(source: Path, cohort_csv: Path | None, layout: HomeLayout, version: str, readers: Readers,
                exclude: Sequence[Path]) -> IngestPlan:
    """Walk the source; split its units into those the manifest already has (tallied) and those to read."""
    existing = read_manifest(layout.manifest_path)
    done = _done_sources(existing, version)
    known = [KnownItem(row["modality"], row["source_uri"], tuple(row["source_files"]), sha)
             for sha, positions in done.items() if len(positions) == 1
             for row in [existing.iloc[positions[0]]]]
    skip = [layout.root, *([Path(cohort_csv)] if cohort_csv else []), *map(Path, exclude)]
    units = discover_units(source, readers, exclude=skip, known=known,
                           hash_cache=layout.root / SOURCE_HASHES)  # warm runs open no unchanged file
    plan = IngestPlan(units, [], Counter(), [], {})
    for unit in plan.units:
        if unit.item_sha not in done:
            plan.todo.append(unit)
            continue
        for pos in done[unit.item_sha]:
            row = existing.iloc[pos]
            plan.counts[(row["modality"], row["status"])] += 1
            if row["status"] == "quarantined":
                plan.quarantined.append(QuarantinedItem(row["source_uri"], row["modality"], row["reason"]))
            seen = set(row["source_files"])
            extra = [(f, row["source_uri"]) for f in unit.files if f not in seen]
            if extra:
                plan.additions[pos] = extra
    if plan.additions:
        update_manifest(layout.manifest_path, _add_source_files(plan.additions, existing))
    return plan


def record_results(plan: IngestPlan, layout: HomeLayout, version: str, results: Sequence[ItemResult]) -> list[dict]:
    """Tally ``results`` into the plan, write each quarantined one's pointer; returns their manifest rows."""
    rows: list[dict] = []
    for result in results:
        result = replace(result, ingested_at=plan.run_at)
        plan.counts[(result.modality, result.status)] += 1
        if result.status == "quarantined":
            write_quarantine_pointer(layout.root, result, version)
            plan.quarantined.append(QuarantinedItem(result.source_uri, result.modality, result.reason))
            log.info("quarantined %s: %s", result.source_uri, result.reason)
        rows.append(result.manifest_row(version))
    return rows


def _read_new(plan: IngestPlan, layout: HomeLayout, config: ReaderConfig, secret: str, readers: Readers,
              workers: int, progress: ProgressCallback | None) -> int:
    """Read the plan's new units in the pool, flushing rows to the manifest as they come; returns items read."""
    version = config.pipeline_version()
    skipped, total = len(plan.units) - len(plan.todo), len(plan.units)
    if progress:
        progress(skipped, total)
    new_items, batch, finished, flushed_at = 0, [], skipped, time.monotonic()
    preload_readers({unit.kind for unit in plan.todo}, readers)
    try:
        for unit, results in run_units(plan.todo, (config, layout.root, secret, readers), workers):
            batch += record_results(plan, layout, version, results)
            new_items += len(results)
            finished += 1
            if len(batch) >= FLUSH_EVERY or (batch and time.monotonic() - flushed_at >= FLUSH_EVERY_S):
                upsert_manifest(layout.manifest_path, batch)
                batch, flushed_at = [], time.monotonic()
            if progress:
                progress(finished, total)
    except DiskFullError:
        _flush_finished(layout.manifest_path, batch)
        raise
    upsert_manifest(layout.manifest_path, batch)
    return new_items


def _flush_finished(manifest_path: Path, batch: list[dict]) -> None:
    """Record the rows finished before the disk filled, if the manifest still fits; else they are read again."""
    if not batch:
        return
    try:
        upsert_manifest(manifest_path, batch)
    except DiskFullError:
        log.warning("disk full: %d finished item(s) not recorded; the re-run reads them again", len(batch))


def finish_ingest(plan: IngestPlan, source: Path, cohort_csv: Path | None, layout: HomeLayout, secret: str,
                  version: str, new_items: int, started: float) -> IngestReport:
    """After the new items are in the manifest: the cohort table, then the run's report."""
    join, cohort_bad, dropped = (None, (), ())
    if cohort_csv is not None:
        join, cohort_bad, dropped = ingest_cohort(Path(cohort_csv), layout, secret)
    by_modality: dict[str, dict[str, int]] = {}
    for (modality, status), n in sorted(plan.counts.items()):
        by_modality.setdefault(modality, {})[status] = n
    report = IngestReport(
        source=str(source), manifest_path=str(layout.manifest_path), pipeline_version=version,
        n_files=sum(len(u.files) for u in plan.units), counts=by_modality, new=new_items,
        skipped=len(plan.units) - len(plan.todo),
        duplicate_files=len({path for u in plan.units for path, _ in u.duplicates}
                            | {path for extra in plan.additions.values() for path, _ in extra}),
        quarantined=tuple(sorted(plan.quarantined, key=lambda q: q.source_uri)), cohort=join,
        cohort_quarantined=cohort_bad, cohort_dropped_columns=tuple(dropped),
        elapsed_s=time.perf_counter() - started,
    )
    log.info("ingest of %s: %d new item(s), %d skipped, %d quarantined in %.1f s",
             source, report.new, report.skipped, report.n_quarantined, report.elapsed_s)
    return report


def open_home(source: Path, home: Path) -> tuple[Path, HomeLayout]:
    """The resolved source folder and the home's layout (created); ``FileNotFoundError`` if no such folder."""
    source, layout = Path(source).resolve(), HomeLayout.at(home)
    if not source.is_dir():
        raise FileNotFoundError(f"source folder {source} does not exist or is not a folder")
    layout.root.mkdir(parents=True, exist_ok=True)
    return source, layout


def ingest(source: Path, cohort_csv: Path | None, home: Path, secret: str, config: ReaderConfig, *,
           workers: int = 2, progress: ProgressCallback | None = None, readers: Readers | None = None,
           exclude: Sequence[Path] = ()) -> IngestReport:
    """Ingest every file under ``source`` into ``home`` (manifest, arrays, quarantine, cohort).

    ``config`` (the reader settings) shapes the arrays and versions them. Raises
    ``FileNotFoundError`` only when ``source`` is not a folder; every bad file
    becomes a quarantined manifest row instead. ``readers`` replaces the
    modality readers (tests). ``exclude`` names files or folders under ``source``
    that are not clinical input (e.g. the phantom's ``answers.parquet``).
    """
    started = time.perf_counter()
    source, layout = open_home(source, home)
    readers = readers or default_readers()
    version = config.pipeline_version()
    plan = plan_ingest(source, cohort_csv, layout, version, readers, exclude)
    new_items = _read_new(plan, layout, config, secret, readers, workers, progress)
    return finish_ingest(plan, source, cohort_csv, layout, secret, version, new_items, started)
