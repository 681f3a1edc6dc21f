"""The encode flow: every usable manifest item through its modality's encoder into the embedding store."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact

from flows.prefect_env import settings_for
from flows.settings import Settings
from flows.tasks import encode_task
from ingestion.modalities import MODALITIES


def encode_options(settings: Settings, batch_size: int = 32) -> dict[str, Any]:
    return {"device": settings.resolved_device(), "batch_size": batch_size, "seed": settings.seed,
            "note_encoder": settings.note_encoder}


@flow(name="encode", log_prints=True)
def encode_flow(home: str | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Encode the four modalities in parallel tasks (``gpu``-tagged); unchanged manifest = cache hits."""
    settings = settings_for(home)
    refresh = not (settings.embeddings_dir / "index.parquet").exists()
    futures = encode_task.with_options(refresh_cache=refresh).map(
        list(MODALITIES), unmapped(str(settings.home)), unmapped(str(settings.embeddings_dir)),
        unmapped(str(settings.encoders_dir)), unmapped(str(settings.quarantine_dir)),
        unmapped(encode_options(settings, batch_size)))
    reports = dict(zip(MODALITIES, futures.result()))
    rows = [{"modality": m, "encoder": "/".join(map(str, r.encoder_keys.get(m) or ("not ready",)))[:80],
             "encoded": r.encoded.get(m, 0), "store_hits": r.hits.get(m, 0), "failed": r.failed(m)}
            for m, r in reports.items()]
    create_table_artifact(table=rows, key="encode-summary", description="Embeddings per modality")
    get_run_logger().info("encode: %s", rows)
    return reports


def encoder_keys(reports: dict[str, Any]) -> dict[str, Any]:
    """``{modality: (encoder_name, encoder_version, preprocessing_hash) | None}`` for load_features."""
    return {m: (tuple(r.encoder_keys[m]) if r.encoder_keys.get(m) is not None else None)
            for m, r in reports.items()}
