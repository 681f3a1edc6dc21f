"""The outbox flow: a scored batch's SRs and FHIR bundle into ``<home>/outbox``, then sent where configured.

Writing always happens (a site with no endpoint still gets the files);
sending happens for each destination that the settings name: the SRs to the
STOW-RS URL, the bundles to the FHIR base URL. A failed send never fails the
run that scored the batch: the item stays in the outbox, the ledger holds
the reason, and ``clinfuse outbox send`` (or the next batch) retries it.
Credentials are read here from the settings, never passed as parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.prefect_env import settings_for
from flows.settings import Settings


@task(name="outbox-write", cache_policy=NO_CACHE)
def outbox_write_task(batch_path: str, source: str | None, home: str) -> Any:
    """``models.outbox.outbox.write_batch_outbox``: one SR per patient and the batch's bundle."""
    from models.outbox.outbox import write_batch_outbox

    settings = settings_for(home)
    written = write_batch_outbox(Path(batch_path), settings.manifest_path, Path(source) if source else None,
                                 settings.pseudonym_secret.get_secret_value(), settings.outbox_dir, settings.workers)
    logger = get_run_logger()
    logger.info("outbox: %d SR written, %d already there; bundle %s (%s)", written.sr_written, written.sr_present,
                Path(written.bundle).name or "none", "written" if written.bundle_written else "not written")
    for reason in written.failed:
        logger.warning("outbox: a result was left out (its prediction is in the batch file): %s", reason)
    for reason in written.references_skipped[:20]:
        logger.warning("outbox: an image reference was left out: %s", reason)
    return written


@task(name="outbox-send", cache_policy=NO_CACHE)
def outbox_send_task(home: str) -> Any:
    """``models.outbox.send``: STOW-RS the SRs and POST the bundles not yet sent to the configured destinations."""
    from ingestion.pacs import connect
    from models.outbox.send import SendReport, post_bundles, send_srs

    settings = settings_for(home)
    report = SendReport()
    if settings.outbox_stow_url:
        password = settings.outbox_stow_password.get_secret_value() if settings.outbox_stow_password else None
        try:
            client = connect(settings.outbox_stow_url, settings.outbox_stow_username, password,
                             settings.outbox_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a bad URL is a reason, not a crashed batch
            report.failed["sr"].append(f"STOW-RS destination unusable: {exc}")
        else:
            send_srs(settings.outbox_dir, client, settings.outbox_stow_url, report)
    if settings.outbox_fhir_url:
        token = settings.outbox_fhir_token.get_secret_value() if settings.outbox_fhir_token else None
        post_bundles(settings.outbox_dir, settings.outbox_fhir_url, token=token, timeout_s=settings.outbox_timeout_s,
                     report=report)
    logger = get_run_logger()
    logger.info("outbox send: sent %s, already sent %s, failed %d", report.sent, report.already, report.n_failed)
    for reason in [*report.failed["sr"], *report.failed["fhir"]][:20]:
        logger.warning("outbox: not sent (kept in the outbox): %s", reason)
    return report


def send_configured(settings: Settings) -> bool:
    """True when the settings (read once by the calling flow) name a STOW-RS or FHIR destination."""
    return bool(settings.outbox_stow_url or settings.outbox_fhir_url)


@flow(name="outbox-send", log_prints=True)
def outbox_send_flow(home: str | None = None) -> Any:
    """Send what the outbox holds and was not sent yet (``clinfuse outbox send``)."""
    settings = settings_for(home)
    if not send_configured(settings):
        raise ValueError("no destination configured: set CLINFUSE_OUTBOX_STOW_URL and/or CLINFUSE_OUTBOX_FHIR_URL")
    return outbox_send_task(str(settings.home))


def batch_outbox(batch_path: str, source: str | None, settings: Settings) -> dict[str, Any]:
    """Write a scored batch's outbox and send it where configured (called by the predict and pipeline flows
    with the settings they read; the tasks get the home as text, which any worker can resolve)."""
    home = str(settings.home)
    written = outbox_write_task(batch_path, source, home)
    sent = outbox_send_task(home) if send_configured(settings) else None
    return {"written": written, "sent": sent}
