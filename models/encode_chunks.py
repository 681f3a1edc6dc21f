"""Encoding split into chunks of items, so a cluster can run many chunks at once.

One task per modality leaves all but four workers idle and makes the slowest
modality the whole run's wall time; chunks of a fixed number of items spread a
backlog over every worker. The chunks are a pure function of the manifest (items
sorted by content hash), so any runner (threads, or processes on a Dask cluster)
encodes exactly the same batches and writes bit-identical embeddings. Encoders
that are fitted (the TF-IDF note fallback) are prepared once, before the
fan-out, never per chunk (``EncodeConfig(only=())``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ingestion.modalities import MODALITIES
from models.features.assemble import write_failures, usable_items
from models.stages import EncodeResult


@dataclass(frozen=True)
class EncodeChunk:
    """One fan-out task's share: a modality and the content hashes of its items."""

    modality: str
    shas: tuple[str, ...]


def plan_chunks(manifest: pd.DataFrame, chunk_items: int, modalities: Sequence[str] = MODALITIES) -> list[EncodeChunk]:
    """Usable items per modality, sorted by content hash, cut into chunks of ``chunk_items``."""
    if chunk_items < 1:
        raise ValueError(f"chunk_items must be at least 1, got {chunk_items}")
    chunks = []
    for modality in modalities:
        shas = sorted(set(usable_items(manifest, [modality])["content_sha256"]))
        chunks += [EncodeChunk(modality, tuple(shas[i:i + chunk_items])) for i in range(0, len(shas), chunk_items)]
    return chunks


def merge_results(prepared: EncodeResult, parts: Sequence[EncodeResult], modalities: Sequence[str],
                  quarantine_dir: Path | None = None) -> EncodeResult:
    """One result summing the chunks (what a single unchunked encode would have returned).

    With ``quarantine_dir`` each modality's failures are written the way an
    unchunked encode writes them (and an old failures file is cleared).
    """
    def total(field: str, m: str) -> float:
        return sum(getattr(p, field).get(m, 0) for p in parts)

    failures = tuple(f for p in parts for f in p.failures)
    if quarantine_dir is not None:
        for m in modalities:
            write_failures(Path(quarantine_dir) / f"encode_failures_{m}.parquet", [f for f in failures if f.modality == m])
    return EncodeResult(
        encoder_keys={m: prepared.encoder_keys.get(m) for m in modalities},
        dims={m: prepared.dims[m] for m in modalities if m in prepared.dims},
        encoded={m: int(total("encoded", m)) for m in modalities},
        hits={m: int(total("hits", m)) for m in modalities},
        seconds={m: float(total("seconds", m)) for m in modalities},
        failures=failures)
