"""Content-addressed store of embeddings: float16 ``.npy`` shards plus a Parquet index.

A vector is keyed by ``(content_sha256, encoder_name, encoder_version,
preprocessing_hash)``, so re-encoding unchanged input with an unchanged encoder is a
lookup, and a new encoder version is simply a miss. Layout under ``root``::

    index.parquet         one row per key: shard file, row, dim, sha256 of the row bytes
    shards/<uuid>.npy     float16 (n, dim), one file per put_many call
    index.lock            filelock guarding index updates

Writes are crash- and concurrency-safe: a shard is written to a temp file and
``os.replace``d into place before the index references it, and the index is
read-modified-replaced under an inter-process file lock, so two encoders writing at
once never lose or duplicate keys. Every read checks the row checksum: a corrupted or
truncated shard reads as a miss (to be recomputed and replaced), never as a wrong vector.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from filelock import FileLock

from ingestion.atomic_files import atomic_write_bytes


log = logging.getLogger(__name__)

KEY_COLUMNS = ("content_sha256", "encoder_name", "encoder_version", "preprocessing_hash")
INDEX_COLUMNS = (*KEY_COLUMNS, "shard", "row", "dim", "row_sha256", "written_at")


class EmbeddingKey(NamedTuple):
    """Identity of one stored vector."""

    content_sha256: str
    encoder_name: str
    encoder_version: str
    preprocessing_hash: str


def _row_sha(row: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(row, dtype=np.float16).tobytes()).hexdigest()


class EmbeddingStore:
    """Float16 embedding shards with a Parquet index; see the module docstring for guarantees."""

    def __init__(self, root: Path, lock_timeout_s: float = 120.0) -> None:
        self.root = Path(root)
        self.shards_dir = self.root / "shards"
        self.index_path = self.root / "index.parquet"
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / "index.lock"), timeout=lock_timeout_s)
        self._index_cache: tuple[tuple[int, int, int], pd.DataFrame, dict] | None = None

    # -- index --------------------------------------------------------------------
    def _read_index(self) -> tuple[pd.DataFrame, dict[tuple[str, ...], tuple[str, int, int, str]]]:
        """The index table and a key -> (shard, row, dim, row_sha256) dict, re-read only when the file changed."""
        try:
            st = self.index_path.stat()
        except FileNotFoundError:
            empty = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("row", "dim") else "object")
                                  for c in INDEX_COLUMNS})
            return empty, {}
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._index_cache is None or self._index_cache[0] != stamp:
            df = pd.read_parquet(self.index_path)
            lookup = {tuple(k): (sh, int(r), int(d), c) for k, sh, r, d, c in zip(
                df[list(KEY_COLUMNS)].itertuples(index=False, name=None), df["shard"], df["row"], df["dim"],
                df["row_sha256"])}
            self._index_cache = (stamp, df, lookup)
        return self._index_cache[1], self._index_cache[2]

    def index(self) -> pd.DataFrame:
        """A copy of the index as a flat DataFrame (one row per key)."""
        return self._read_index()[0].copy()

    def __len__(self) -> int:
        return len(self._read_index()[1])

    def __contains__(self, key: object) -> bool:
        return tuple(key) in self._read_index()[1]  # type: ignore[arg-type]

    # -- reads --------------------------------------------------------------------
    def _load_shard(self, shard: str) -> np.ndarray | None:
        try:
            arr = np.load(self.shards_dir / shard, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("embedding shard %s unreadable (%s); its keys read as misses", shard, exc)
            return None
        return arr if arr.ndim == 2 else None

    def get_many(self, keys: Iterable[Sequence[str]]) -> dict[EmbeddingKey, np.ndarray]:
        """Vectors (float32) for the keys that are stored and intact; misses are simply absent."""
        _, lookup = self._read_index()
        by_shard: dict[str, list[tuple[EmbeddingKey, int, int, str]]] = {}
        for k in keys:
            hit = lookup.get(tuple(k))
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((EmbeddingKey(*k), hit[1], hit[2], hit[3]))
        out: dict[EmbeddingKey, np.ndarray] = {}
        for shard, entries in by_shard.items():
            arr = self._load_shard(shard)
            if arr is None:
                continue
            for key, row, dim, checksum in entries:
                if row >= arr.shape[0] or arr.shape[1] != dim:
                    continue
                vec = np.asarray(arr[row])
                if _row_sha(vec) != checksum:
                    log.warning("embedding %s failed its checksum in shard %s; treated as a miss", key[0], shard)
                    continue
                out[key] = vec.astype(np.float32)
        return out

    def missing(self, keys: Iterable[Sequence[str]]) -> list[EmbeddingKey]:
        """The keys among ``keys`` that :meth:`get_many` would not return."""
        keys = [EmbeddingKey(*k) for k in keys]
        hits = self.get_many(keys)
        return [k for k in keys if k not in hits]

    # -- writes -------------------------------------------------------------------
    def put_many(self, keys: Sequence[Sequence[str]], vectors: np.ndarray) -> int:
        """Store vectors (one shard per call); an existing entry for the same key is replaced.

        Returns the number of keys written. Duplicate keys within one call keep the last.
        """
        vectors = np.asarray(vectors)
        keys = [EmbeddingKey(*k) for k in keys]
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"need a (n_keys, dim) array for {len(keys)} keys, got shape {vectors.shape}")
        if not keys:
            return 0
        if not np.all(np.isfinite(vectors)):
            raise ValueError("refusing to store non-finite embeddings (NaN/inf); check the encoder input")
        data = vectors.astype(np.float16)
        shard = f"{uuid.uuid4().hex}.npy"
        buf = io.BytesIO()
        np.save(buf, data, allow_pickle=False)
        atomic_write_bytes(self.shards_dir / shard, buf.getvalue())
        now = datetime.now(timezone.utc)
        new = pd.DataFrame([(*k, shard, i, data.shape[1], _row_sha(data[i]), now) for i, k in enumerate(keys)],
                           columns=list(INDEX_COLUMNS)).drop_duplicates(list(KEY_COLUMNS), keep="last")
        with self._lock:
            self._index_cache = None
            current = self.index()
            merged = pd.concat([current, new], ignore_index=True) if len(current) else new
            merged = merged.drop_duplicates(list(KEY_COLUMNS), keep="last")
            merged["written_at"] = pd.to_datetime(merged["written_at"], utc=True)
            buf = io.BytesIO()
            merged.to_parquet(buf, index=False)
            atomic_write_bytes(self.index_path, buf.getvalue())
            self._index_cache = None
        return len(new)

    def verify(self) -> list[EmbeddingKey]:
        """Keys whose stored bytes are unreadable or fail their checksum (a full scan)."""
        keys = [EmbeddingKey(*k) for k in self._read_index()[1]]
        good = self.get_many(keys)
        return [k for k in keys if k not in good]

    def prune_orphans(self, min_age_s: float = 3600.0) -> int:
        """Delete unreferenced shard files older than ``min_age_s``; returns how many.

        The age guard spares shards that a concurrent writer has written but not yet indexed.
        """
        import time

        with self._lock:
            self._index_cache = None
            used = set(self.index()["shard"])
            cutoff = time.time() - min_age_s
            orphans = [p for p in self.shards_dir.glob("*.npy")
                       if p.name not in used and p.stat().st_mtime < cutoff]
            for p in orphans:
                p.unlink(missing_ok=True)
        return len(orphans)
