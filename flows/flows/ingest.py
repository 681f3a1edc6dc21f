"""The ingest flow: source folder (+ cohort table) into the home's manifest, arrays, quarantine and cohort."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.flows.ingest_tasks import (
    hash_chunk_task, ingest_chunk_task, ingest_task, merge_ingest_task, plan_ingest_task, summary_rows,
)
from flows.prefect_env import settings_for
from flows.settings import Settings


def publish_ingest(report: Any) -> None:
    """Summary (markdown) and quarantine (table) artifacts; pseudonymous ids and relative paths only."""
    rows = summary_rows(report)
    lines = [f"# Ingest of `{report.source}`", "",
             f"{report.new} new item(s), {report.skipped} already in the manifest, "
             f"{report.n_quarantined} quarantined, {report.duplicate_files} duplicate file(s), "
             f"{report.elapsed_s:.1f} s.", "", "| modality | status | items |", "|---|---|---|"]
    lines += [f"| {r['modality']} | {r['status']} | {r['n']} |" for r in rows]
    if report.cohort is not None:
        lines += ["", f"Cohort: {report.cohort.n_cohort} patients, {report.cohort.n_with_files} with files, "
                      f"{report.cohort.complete} with every modality."]
    create_markdown_artifact(markdown="\n".join(lines), key="ingest-summary", description="Ingest summary")
    bad = [{"source_uri": q.source_uri, "modality": q.modality, "reason": q.reason}
           for q in (*report.quarantined, *report.cohort_quarantined)]
    create_table_artifact(table=bad or [{"source_uri": "", "modality": "", "reason": "nothing quarantined"}],
                          key="ingest-quarantine", description="Items set aside, with the reason")


def _on_dask() -> bool:
    """True when this flow run's task runner is a DaskTaskRunner (then ingest fans out per chunk)."""
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    return context is not None and isinstance(context.task_runner, DaskTaskRunner)


def fan_out_ingest(source: str, cohort_csv: str | None, settings: Settings, exclude: tuple[str, ...],
                   workers: int) -> Any:
    """Hash chunks of files and read chunks of items on the task runner's workers; merge here, once.

    Everything the workers need is resolved from this process's settings and
    passed (the secret as a ``SecretStr``). A chunk that still fails after its
    retries fails the run, after the other chunks' rows are recorded: a re-run
    reads only what is missing.
    """
    from ingestion.driver.chunks import file_chunks

    home, secret, reader = str(settings.home), settings.pseudonym_secret, settings.reader_config()
    cohort = Path(cohort_csv) if cohort_csv else None
    files = file_chunks(Path(source), settings.home, cohort, tuple(map(Path, exclude)))
    hashed = [f.result() for f in [hash_chunk_task.submit(chunk) for chunk in files]]
    run = plan_ingest_task(source, cohort_csv, home, reader, settings.chunk_items, exclude, hashed)
    futures = [ingest_chunk_task.submit(chunk, reader, home, secret, workers, os.getpid()) for chunk in run.chunks]
    parts, failed = [], []
    for future in futures:
        try:
            parts.append(future.result())
        except Exception as exc:  # noqa: BLE001 - record the others first, then fail the run
            failed.append(exc)
    report = merge_ingest_task(run, parts, secret)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(futures)} ingest chunk(s) failed on the cluster (first: "
                           f"{type(failed[0]).__name__}: {failed[0]}); the rest is in the manifest, re-run to "
                           "read the missing items")
    return report


@flow(name="ingest", log_prints=True)
def ingest_flow(source: str, cohort_csv: str | None = None, home: str | None = None,
                exclude: list[str] | None = None, workers: int | None = None) -> Any:
    """Ingest ``source`` (and the cohort table) into ``home``; re-running on unchanged input is a cache hit.

    With the default runner one task ingests (reader processes on this machine);
    with a DaskTaskRunner the work fans out per chunk of ``settings.chunk_items``
    items (:func:`fan_out_ingest`), with the same manifest as a result. Returns the
    library's ``IngestReport``. ``workers`` (reader processes per task) defaults to
    ``settings.workers``.
    """
    settings = settings_for(home)
    if _on_dask():
        report = fan_out_ingest(source, cohort_csv, settings, tuple(exclude or ()), workers or settings.workers)
    else:
        run = ingest_task.with_options(refresh_cache=not settings.manifest_path.exists())
        report = run(source, cohort_csv, str(settings.home), settings.pseudonym_secret.get_secret_value(),
                     settings.reader_config(), workers or settings.workers, tuple(exclude or ()))
    publish_ingest(report)
    if cohort_csv and settings.reid_key_bytes() is not None:
        reidentify_task(cohort_csv, str(settings.home))
    get_run_logger().info("manifest: %s", settings.manifest_path)
    return report


@task(name="reidentify-map")
def reidentify_task(cohort_csv: str, home: str) -> int:
    """``ingestion.deid.reidentify.record_cohort``: the cohort's pseudonym -> MRN pairs into the encrypted map.

    The key is read here from the settings, never passed as a parameter (Prefect records parameters).
    """
    from ingestion.readers.records import QuarantineError
    from ingestion.deid.reidentify import record_cohort

    settings = settings_for(home)
    try:
        n = record_cohort(Path(cohort_csv), settings.pseudonym_secret.get_secret_value(), settings.reid_map_path,
                          settings.reid_key_bytes())
    except QuarantineError:
        return 0  # the cohort table was set aside by ingest, which reported why
    get_run_logger().info("re-identification map: %d pseudonym(s), encrypted", n)
    return n
