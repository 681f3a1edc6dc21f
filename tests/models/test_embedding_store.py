"""EmbeddingStore: hits and misses, replacement, corruption detection, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from models.stores.embeddings import EmbeddingKey, EmbeddingStore


def _keys(n: int, version: str = "v1", start: int = 0) -> list[EmbeddingKey]:
    return [EmbeddingKey(f"{i:064x}", "ct-resnet3d", version, "prep1") for i in range(start, start + n)]


def test_hit_miss_and_stale_version(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "emb")
    vecs = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    assert store.put_many(_keys(5), vecs) == 5
    got = store.get_many(_keys(5) + _keys(1, start=99))
    assert set(got) == set(_keys(5))  # the unknown key is a miss, not an error
    np.testing.assert_allclose(got[_keys(5)[3]], vecs[3], atol=2e-3)  # float16 round trip
    assert got[_keys(5)[0]].dtype == np.float32
    assert store.get_many(_keys(5, version="v2")) == {}  # new encoder version: all misses
    assert store.missing(_keys(6)) == [_keys(6)[5]]


def test_put_replaces_existing_key_without_duplicates(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "emb")
    store.put_many(_keys(3), np.zeros((3, 4)))
    store.put_many(_keys(2), np.ones((2, 4)))
    index = store.index()
    assert len(index) == 3 and not index.duplicated(["content_sha256", "encoder_name", "encoder_version",
                                                     "preprocessing_hash"]).any()
    got = store.get_many(_keys(3))
    assert got[_keys(3)[0]].tolist() == [1.0] * 4 and got[_keys(3)[2]].tolist() == [0.0] * 4


def test_truncated_shard_is_a_miss_and_is_replaced(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "emb")
    store.put_many(_keys(4), np.random.default_rng(1).normal(size=(4, 32)))
    shard = next((tmp_path / "emb" / "shards").glob("*.npy"))
    shard.write_bytes(shard.read_bytes()[:-40])  # lose part of the last rows
    reopened = EmbeddingStore(tmp_path / "emb")
    assert reopened.get_many(_keys(4)) == {}
    assert set(reopened.verify()) == set(_keys(4))
    reopened.put_many(_keys(4), np.ones((4, 32)))  # recompute replaces the stale entries
    assert len(reopened.get_many(_keys(4))) == 4 and reopened.verify() == []


def test_flipped_bytes_fail_the_row_checksum(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "emb")
    store.put_many(_keys(3), np.arange(3 * 8, dtype=np.float32).reshape(3, 8))
    shard = next((tmp_path / "emb" / "shards").glob("*.npy"))
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF  # a byte of the last row
    shard.write_bytes(bytes(raw))
    got = EmbeddingStore(tmp_path / "emb").get_many(_keys(3))
    assert set(got) == set(_keys(3)[:2])


def test_rejects_bad_input(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "emb")
    with pytest.raises(ValueError, match="non-finite"):
        store.put_many(_keys(1), np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="keys"):
        store.put_many(_keys(2), np.zeros((3, 4)))
    assert len(store) == 0


def _writer(root: str, offset: int, rounds: int) -> None:
    store = EmbeddingStore(Path(root))
    rng = np.random.default_rng(offset)
    for r in range(rounds):
        keys = _keys(10, start=offset + 5 * r)  # overlaps the other writer's keys
        store.put_many(keys, rng.normal(size=(10, 8)))


def test_two_processes_writing_at_once_leave_a_consistent_store(tmp_path: Path) -> None:
    root = tmp_path / "emb"
    EmbeddingStore(root)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), off, 5)) for off in (0, 20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = EmbeddingStore(root)
    index = store.index()
    expected = set(_keys(10 + 5 * 4, start=0)) | set(_keys(10 + 5 * 4, start=20))
    assert not index.duplicated(["content_sha256", "encoder_name", "encoder_version",
                                 "preprocessing_hash"]).any()
    assert {EmbeddingKey(*k) for k in index.iloc[:, :4].itertuples(index=False)} == expected
    assert len(store.get_many(expected)) == len(expected)
    assert store.verify() == []
