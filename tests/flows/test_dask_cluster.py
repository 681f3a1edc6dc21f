"""Ingest and encode fanned out per chunk over a real dask.distributed cluster (a scheduler and 2 worker processes).

The cluster is started by the test with the ``dask`` CLI on 127.0.0.1 and free
ports, and stopped by it (each process group). Ingest (hash chunks of files,
read chunks of items on the workers, one merge in the flow's process) and
encode (prepare + one task per chunk of items) must give what the default
thread runner gives: the same manifest items and the same embeddings, bit for
bit. The workers are started with other ``CLINFUSE_*`` values than the flow's
(secret, home, chunk size, CT spacing, note encoder): a task that read its
worker's environment would change the pseudonyms or the arrays.
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


WORKER_ENV = {"CLINFUSE_PSEUDONYM_SECRET": "a-worker-secret-that-must-not-be-used", "CLINFUSE_CHUNK_ITEMS": "7",
              "CLINFUSE_CT_SPACING_MM": "[1.0, 1.0, 1.0]", "CLINFUSE_NOTE_ENCODER": "minilm",
              "CLINFUSE_WORKERS": "3"}
"""What the workers' environment says; the flow's process says otherwise, and it must be the one that counts."""


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[str]:
    """A scheduler and 2 workers reporting to the flows tests' Prefect server (``prefect_api``, flows/conftest.py).

    Without a real server each worker process starts a temporary server of its own on the
    flow's SQLite file: a minute of start-up per worker on a loaded machine, and a race on
    creating the schema.
    """
    if not Path(DASK).exists():
        pytest.skip("the dask CLI is not installed (pip install 'dask[distributed]')")
    root = tmp_path_factory.mktemp("dask")
    env = {**WORKER_ENV, "CLINFUSE_HOME": str(root / "a-worker-home-that-must-not-be-used"),
           "PREFECT_API_URL": prefect_api}
    address, procs = start_cluster(root, 2, worker_env=env)
    try:
        yield address
    finally:
        stop_cluster(procs)


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ingestion.phantom import generate_cohort

    out = tmp_path_factory.mktemp("dask_phantom") / "cohort"
    generate_cohort(out, 5, seed=9, missing_rate=0.0, eeg_seconds=(4, 6))
    (out / "eeg" / "truncated.edf").write_bytes(b"0       not an EDF recording")  # quarantined by both runs
    return out


def run_ingest(source: Path, home: Path, dask_address: str | None, workers: int | None = None):
    """The ingest flow with the default runner, or on the Dask cluster at ``dask_address``; its ``IngestReport``.

    ``workers``: reader processes per ingest task (default: the settings').
    """
    from flows.flows.ingest import ingest_flow
    from flows.prefect_env import prefect_settings, settings_for, task_runner

    settings = settings_for(str(home))
    if dask_address:
        settings = settings.model_copy(update={"dask_address": dask_address})
    with prefect_settings(settings):
        runner = task_runner(settings, dask=dask_address is not None)
        return ingest_flow.with_options(task_runner=runner)(source=str(source), cohort_csv=str(source / "cohort.csv"),
                                                            home=str(home), exclude=[str(source / "answers.parquet")],
                                                            workers=workers)


def run_encode(home: Path, dask_address: str | None):
    """The encode flow with the default runner, or on the Dask cluster; its ``EncodeResult``."""
    from flows.flows.encode import encode_flow
    from flows.prefect_env import prefect_settings, settings_for, task_runner

    settings = settings_for(str(home))
    if dask_address:
        settings = settings.model_copy(update={"dask_address": dask_address})
    with prefect_settings(settings):
        return encode_flow.with_options(task_runner=task_runner(settings, dask=dask_address is not None))(
            home=str(home))


def run_ingest_encode(source: Path, home: Path, dask_address: str | None):
    """Ingest then encode (default runner, or the Dask cluster at ``dask_address``); the ``EncodeResult``."""
    run_ingest(source, home, dask_address)
    return run_encode(home, dask_address)


def embeddings(home: Path) -> pd.DataFrame:
    """Every stored vector as raw float16 bytes, keyed by (content hash, encoder name, version, preprocessing)."""
    from models.stores.embeddings import EmbeddingStore

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
def env(monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Iterator[None]:
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_PREFECT_API_URL", prefect_api)
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
    with Client(dask_cluster, timeout=30) as client:
        with get_task_stream(client) as ingest_stream:
            report = run_ingest(tiny_phantom, tmp_path / "dask", dask_cluster)
        with get_task_stream(client) as encode_stream:
            remote = run_encode(tmp_path / "dask", dask_cluster)
    # 21 units in chunks of 2 (+ one hashing chunk), then 20 items in chunks of 2: both workers take chunks
    assert len(ingest_stream.data) >= 11 and len({t["worker"] for t in ingest_stream.data}) == 2
    assert len(encode_stream.data) >= 8 and len({t["worker"] for t in encode_stream.data}) == 2
    assert report.new == 21 and report.n_quarantined == 1

    a, b = manifest_items(tmp_path / "local"), manifest_items(tmp_path / "dask")
    assert (a["status"] == "ok").sum() == 20 and set(a["modality"]) == {"ct", "xray", "eeg", "note"}
    assert a["patient_id"].nunique() == 5
    pd.testing.assert_frame_equal(a, b)  # same pseudonyms (the flow's secret), same arrays' paths, same quarantine
    bad = b[b["status"] == "quarantined"]["item_id"].item()
    assert (tmp_path / "dask" / "quarantine" / f"{bad}.json").is_file()
    for item in a[a["status"] == "ok"].itertuples():  # arrays written by the workers, with the flow's settings
        assert (tmp_path / "local" / item.array_uri).read_bytes() == (tmp_path / "dask" / item.array_uri).read_bytes()
    ea, eb = embeddings(tmp_path / "local"), embeddings(tmp_path / "dask")
    assert len(ea) == (a["status"] == "ok").sum()
    # Same keys; the same vectors to float16 rounding. Not byte for byte: a chunk of 2 items goes through the
    # encoders' batched convolutions in a different batch than the local run's, and oneDNN's float32 sums then
    # differ in the last bits, which now and then moves one float16 by one step (seen: EEG dim 28, -0.003422
    # vs -0.00342).
    pd.testing.assert_frame_equal(ea.drop(columns="vector"), eb.drop(columns="vector"))
    for va, vb in zip(ea["vector"], eb["vector"]):
        np.testing.assert_allclose(np.frombuffer(va, np.float16), np.frombuffer(vb, np.float16), rtol=2e-3, atol=1e-5)
    for m in ("ct", "xray", "eeg", "note"):
        assert remote.encoded[m] == local.encoded[m] > 0 and remote.encoder_keys[m] == local.encoder_keys[m]

    manifest = tmp_path / "dask" / "manifest.parquet"
    before = manifest.stat().st_mtime_ns
    again = run_ingest(tiny_phantom, tmp_path / "dask", dask_cluster)  # idempotent: nothing read, nothing written
    assert again.new == 0 and again.skipped == 21 and again.n_quarantined == 1
    assert manifest.stat().st_mtime_ns == before
