"""The ingest flow: source folder (+ cohort table) into the home's manifest, arrays, quarantine and cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.prefect_env import settings_for
from flows.tasks import ingest_task, summary_rows


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


@flow(name="ingest", log_prints=True)
def ingest_flow(source: str, cohort_csv: str | None = None, home: str | None = None,
                exclude: list[str] | None = None, workers: int | None = None) -> Any:
    """Ingest ``source`` (and the cohort table) into ``home``; re-running on unchanged input is a cache hit.

    Returns the library's ``IngestReport``. ``workers`` defaults to ``settings.workers``.
    """
    settings = settings_for(home)
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
    """``ingestion.reidentify.record_cohort``: the cohort's pseudonym -> MRN pairs into the encrypted map.

    The key is read here from the settings, never passed as a parameter (Prefect records parameters).
    """
    from ingestion.records import QuarantineError
    from ingestion.reidentify import record_cohort

    settings = settings_for(home)
    try:
        n = record_cohort(Path(cohort_csv), settings.pseudonym_secret.get_secret_value(), settings.reid_map_path,
                          settings.reid_key_bytes())
    except QuarantineError:
        return 0  # the cohort table was set aside by ingest, which reported why
    get_run_logger().info("re-identification map: %d pseudonym(s), encrypted", n)
    return n
