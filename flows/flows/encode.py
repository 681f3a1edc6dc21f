"""The encode flow: every usable manifest item through its modality's encoder into the embedding store."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.flows.tasks import encode_task, plan_encode_task
from flows.prefect_env import settings_for
from flows.settings import Settings
from ingestion.modalities import MODALITIES
from models.encode_chunks import merge_results
from models.stages import EncodeConfig, EncodeResult


def encode_options(settings: Settings, batch_size: int = 0) -> dict[str, Any]:
    """The encoder options a home's settings imply (device resolved, seed, note encoder, batch size,
    the machine's note model cache)."""
    return {"device": settings.resolved_device(), "batch_size": batch_size, "seed": settings.seed,
            "note_encoder": settings.note_encoder, "note_model_cache": settings.note_model_cache_dir}


def encoder_keys(result: EncodeResult) -> dict[str, tuple[str, str, str] | None]:
    """``{modality: (encoder_name, encoder_version, preprocessing_hash) | None}`` for feature loading."""
    return dict(result.encoder_keys)


CHUNK_THREADS = 4
"""Encode chunks in flight at once when the flow runs on its own (``clinfuse encode``), as in the pipeline
(:func:`flows.prefect_env.task_runner`). Prefect's default thread runner has no limit, so every chunk ran
at once, each with its encoders and a batch: 128 chunks (32 per modality) at 1,000 patients, and encode's
peak RSS grew with the cohort (bench_scale: 1,884 MiB at 200 patients, 4,625 MiB at 1,000)."""


@flow(name="encode", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=CHUNK_THREADS))
def encode_flow(home: str | None = None, modalities: list[str] | None = None, device: str | None = None,
                batch_size: int = 0) -> EncodeResult:
    """Encode in chunks of settings.chunk_items items (``gpu``-tagged tasks that the task runner fans out).

    The encoders are built (and fitted where needed) once, then the chunks run in
    parallel on the flow's task runner (threads, or a Dask cluster: same chunks,
    same embeddings); an unchanged manifest is all cache hits. ``device`` defaults
    to the settings' (auto: CUDA when present); ``batch_size`` 0 picks one for the
    device. Returns one :class:`EncodeResult` for all modalities.
    """
    settings = settings_for(home)
    options = {**encode_options(settings, batch_size), **({"device": device} if device else {})}
    wanted = tuple(m for m in MODALITIES if m in (modalities or MODALITIES))
    base = EncodeConfig(home=settings.home, modalities=wanted, **options)
    refresh = not (settings.embeddings_dir / "index.parquet").exists()
    prepared = encode_task.with_options(refresh_cache=refresh)(replace(base, only=()))
    chunks = plan_encode_task(str(settings.home), settings.chunk_items, wanted)
    futures = [encode_task.with_options(refresh_cache=refresh).submit(
        replace(base, modalities=(c.modality,), only=c.shas)) for c in chunks]
    result = merge_results(prepared, [f.result() for f in futures], wanted, settings.quarantine_dir)
    rows = [{"modality": m, "encoder": "/".join(map(str, result.encoder_keys.get(m) or ("not ready",)))[:80],
             "encoded": result.encoded[m], "store_hits": result.hits[m], "failed": result.failed(m)} for m in wanted]
    create_table_artifact(table=rows, key="encode-summary", description="Embeddings per modality")
    get_run_logger().info("encode: %s", rows)
    return result
