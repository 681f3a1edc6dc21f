"""Encode fanned out per chunk over a real dask.distributed cluster (a scheduler and 2 worker processes).

The cluster is started by the test with the ``dask`` CLI on 127.0.0.1 and free
ports, and stopped by it (each process group). Ingest (one task, in the flow's
process) and encode (prepare + one task per chunk of items, on the cluster)
must give what the default thread runner gives: the same manifest items and
the same embeddings, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.dask_cli import DASK, start_cluster, stop_cluster

pytestmark = [pytest.mark.server, pytest.mark.slow]

SECRET = "dask-test-secret"


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(DASK).exists():
        pytest.skip("the dask CLI is not installed (pip install 'dask[distributed]')")
    address, procs = start_cluster(tmp_path_factory.mktemp("dask"), 2)
    try:
        yield address
    finally:
        stop_cluster(procs)


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ingestion.phantom import generate_cohort

    out = tmp_path_factory.mktemp("dask_phantom") / "cohort"
    generate_cohort(out, 5, seed=9, missing_rate=0.0, eeg_seconds=(4, 6))
    return out


def run_ingest_encode(source: Path, home: Path, dask_address: str | None):
    """The ingest and encode flows with the default runner, or on the Dask cluster at ``dask_address``.

    Returns the encode flow's ``EncodeResult``.
    """
    from flows.encode_flow import encode_flow
    from flows.ingest_flow import ingest_flow
    from flows.prefect_env import prefect_settings, settings_for, task_runner

    settings = settings_for(str(home))
    if dask_address:
        settings = settings.model_copy(update={"dask_address": dask_address})
    with prefect_settings(settings):
        runner = task_runner(settings, dask=dask_address is not None)
        ingest_flow.with_options(task_runner=runner)(source=str(source), cohort_csv=str(source / "cohort.csv"),
                                                     home=str(home), exclude=[str(source / "answers.parquet")])
        runner = task_runner(settings, dask=dask_address is not None)
        return encode_flow.with_options(task_runner=runner)(home=str(home))


def embeddings(home: Path) -> pd.DataFrame:
    """Every stored vector as raw float16 bytes, keyed by (content hash, encoder name, version, preprocessing)."""
    from models.embedding_store import EmbeddingStore

    store = EmbeddingStore(home / "embeddings")
    keys = [tuple(k) for k in store.index().iloc[:, :4].itertuples(index=False)]
    vectors = store.get_many(keys)
    rows = [(*k, np.asarray(v, dtype=np.float16).tobytes()) for k, v in vectors.items()]
    return pd.DataFrame(rows, columns=["sha", "name", "version", "prep", "vector"]).sort_values(
        ["sha", "name"]).reset_index(drop=True)


def manifest_items(home: Path) -> pd.DataFrame:
    cols = ["item_id", "patient_id", "modality", "source_uri", "content_sha256", "status", "reason", "array_uri"]
    return pd.read_parquet(home / "manifest.parquet")[cols].sort_values("item_id").reset_index(drop=True)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", SECRET)
    monkeypatch.setenv("CLINFUSE_CHUNK_ITEMS", "2")
    monkeypatch.setenv("CLINFUSE_NOTE_ENCODER", "tfidf")  # the fitted encoder: prepared once, never per chunk
    monkeypatch.setenv("CLINFUSE_DEVICE", "cpu")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cluster_run_equals_local_run(dask_cluster, tiny_phantom, env, tmp_path) -> None:
    from distributed import Client, get_task_stream

    local = run_ingest_encode(tiny_phantom, tmp_path / "local", None)
    with Client(dask_cluster, timeout=30) as client, get_task_stream(client) as stream:
        remote = run_ingest_encode(tiny_phantom, tmp_path / "dask", dask_cluster)
    assert len(stream.data) >= 8 and len({t["worker"] for t in stream.data}) == 2  # both workers took chunks

    a, b = manifest_items(tmp_path / "local"), manifest_items(tmp_path / "dask")
    assert len(a) > 0 and set(a["modality"]) == {"ct", "xray", "eeg", "note"}
    pd.testing.assert_frame_equal(a, b)
    ea, eb = embeddings(tmp_path / "local"), embeddings(tmp_path / "dask")
    assert len(ea) == (a["status"] == "ok").sum()
    pd.testing.assert_frame_equal(ea, eb)  # same keys, same float16 bytes
    for m in ("ct", "xray", "eeg", "note"):
        assert remote.encoded[m] == local.encoded[m] > 0 and remote.encoder_keys[m] == local.encoder_keys[m]
