"""The encode flow: every usable manifest item through its modality's encoder into the embedding store."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.prefect_env import settings_for
from flows.settings import Settings
from flows.tasks import encode_task
from ingestion.modalities import MODALITIES
from models.stages import EncodeConfig, EncodeResult


def encode_options(settings: Settings, batch_size: int = 0) -> dict[str, Any]:
    """The encoder options a home's settings imply (device resolved, seed, note encoder, batch size)."""
    return {"device": settings.resolved_device(), "batch_size": batch_size, "seed": settings.seed,
            "note_encoder": settings.note_encoder}


def encoder_keys(result: EncodeResult) -> dict[str, tuple[str, str, str] | None]:
    """``{modality: (encoder_name, encoder_version, preprocessing_hash) | None}`` for feature loading."""
    return dict(result.encoder_keys)


@flow(name="encode", log_prints=True)
def encode_flow(home: str | None = None, modalities: list[str] | None = None, device: str | None = None,
                batch_size: int = 0) -> EncodeResult:
    """Encode the modalities in parallel tasks (``gpu``-tagged); an unchanged manifest is all cache hits.

    ``device`` defaults to the settings' (auto: CUDA when present); ``batch_size`` 0
    picks one for the device. Returns one :class:`EncodeResult` for all modalities.
    """
    settings = settings_for(home)
    options = {**encode_options(settings, batch_size), **({"device": device} if device else {})}
    base = EncodeConfig(home=settings.home, **options)
    wanted = tuple(m for m in MODALITIES if m in (modalities or MODALITIES))
    refresh = not (settings.embeddings_dir / "index.parquet").exists()
    futures = [encode_task.with_options(refresh_cache=refresh).submit(replace(base, modalities=(m,)))
               for m in wanted]
    parts = [f.result() for f in futures]
    result = EncodeResult(
        encoder_keys={m: r.encoder_keys.get(m) for m, r in zip(wanted, parts)},
        dims={m: r.dims[m] for m, r in zip(wanted, parts) if m in r.dims},
        encoded={m: r.encoded.get(m, 0) for m, r in zip(wanted, parts)},
        hits={m: r.hits.get(m, 0) for m, r in zip(wanted, parts)},
        seconds={m: r.seconds.get(m, 0.0) for m, r in zip(wanted, parts)},
        failures=tuple(f for r in parts for f in r.failures))
    rows = [{"modality": m, "encoder": "/".join(map(str, result.encoder_keys.get(m) or ("not ready",)))[:80],
             "encoded": result.encoded[m], "store_hits": result.hits[m], "failed": result.failed(m)} for m in wanted]
    create_table_artifact(table=rows, key="encode-summary", description="Embeddings per modality")
    get_run_logger().info("encode: %s", rows)
    return result
