"""The PACS ingest flow: pull what is new from a DICOMweb PACS into the home's staging folder, then ingest it.

Scheduled (``clinfuse deploy`` or ``prefect deployment``) it pulls only series
the cursor has not seen; with nothing new it moves no data and does not even
hash the staging folder. An unreachable PACS fails the run with the reason,
and the cursor, the staged files and the manifest stay as they were.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.flows.ingest import ingest_flow
from flows.prefect_env import settings_for


@task(name="pacs-pull", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=3)
def pacs_pull_task(url: str, home: str, query: dict[str, Any], pacs_dir: str) -> Any:
    """``ingestion.pacs.pull``: QIDO-RS search, WADO-RS retrieve of new series into ``pacs_dir/staging``
    (``ingestion.pacs_dimse.pull_dimse`` for a ``dicom://`` URL: C-FIND, C-GET).

    The credentials are read here from the settings, never passed as parameters (Prefect records those).
    """
    from pathlib import Path

    from ingestion.pacs import PacsQuery, connect, pull
    from ingestion.pacs_dimse import is_dimse_url, pull_dimse

    settings = settings_for(home)
    if is_dimse_url(url):  # dicom://HOST:PORT/CALLED_AE: C-FIND + C-GET, same staging and cursor
        return pull_dimse(url, Path(pacs_dir), PacsQuery(**query), settings.pacs_ae_title, settings.pacs_timeout_s)
    password = settings.pacs_password.get_secret_value() if settings.pacs_password else None
    client = connect(url, settings.pacs_username, password, settings.pacs_timeout_s)
    return pull(client, url, Path(pacs_dir), PacsQuery(**query))


@task(name="pacs-mark-ingested", cache_policy=NO_CACHE)
def mark_ingested_task(pacs_dir: str, url: str) -> None:
    """``ingestion.pacs.mark_ingested``: the staged data is in the manifest."""
    from pathlib import Path

    from ingestion.pacs import mark_ingested

    mark_ingested(Path(pacs_dir), url)


@flow(name="pacs-ingest", log_prints=True)
def pacs_ingest_flow(url: str | None = None, home: str | None = None, cohort_csv: str | None = None) -> dict[str, Any]:
    """Pull new series from the PACS (``url`` or settings.pacs_url) and ingest them into ``home``."""
    from ingestion.pacs import pacs_modalities
    from ingestion.pacs_cursor import redact_url

    settings = settings_for(home)
    url = url or settings.pacs_url
    if not url:
        raise ValueError("no PACS configured: pass --pacs URL or set CLINFUSE_PACS_URL")
    pacs_dir = settings.pacs_dir(url)
    query = {"modalities": pacs_modalities(settings.pacs_modalities), "study_date_from": settings.pacs_study_date_from}
    pulled = pacs_pull_task(url, str(settings.home), query, str(pacs_dir))
    logger = get_run_logger()
    ingested = None
    if pulled.pending_ingest or cohort_csv:
        ingested = ingest_flow(source=pulled.staging, cohort_csv=cohort_csv, home=str(settings.home))
        mark_ingested_task(str(pacs_dir), url)
    else:
        logger.info("nothing new on %s: no data moved, nothing to ingest", redact_url(url))
    create_markdown_artifact(
        key="pacs-pull", description="PACS pull",
        markdown=(f"# Pull from `{pulled.pacs}`\n\n{pulled.series_found} series found, {pulled.series_pulled} pulled "
                  f"({pulled.instances_written} instances, {pulled.bytes_written / 1e6:.1f} MB), "
                  f"{pulled.series_current} already current; {pulled.elapsed_s:.1f} s."))
    return {"pull": pulled, "ingest": ingested}
