"""Chunked ingest (what a Dask cluster runs) gives the manifest of a one-process ingest.

Uses the fake readers of ``test_ingest`` (plain text files that name their
patient) so the driver's chunk logic runs in about a second; the run on a real
cluster with the real readers is ``tests/flows/test_dask_cluster.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ingestion.driver.chunks import file_chunks, hash_chunk, merge_chunks, plan_chunks, read_chunk
from ingestion.driver.worker import ReaderConfig
from ingestion.manifest import read_manifest
from tests.ingestion.test_ingest import FAKE, READER_ARGS, SECRET, run, write

COLS = ["item_id", "patient_id", "modality", "source_uri", "source_files", "status", "reason", "array_uri",
        "meta_json", "pipeline_version"]


def chunked(source: Path, home: Path, chunk_items: int = 2, secret: str = SECRET):
    """The cluster's steps, in order, in this process: hash chunks, plan, read each chunk, merge once."""
    config = ReaderConfig(**READER_ARGS)
    hashed = [hash_chunk(paths) for paths in file_chunks(source, home)]
    planned = plan_chunks(source, None, home, config, chunk_items, hashed=hashed, readers=FAKE)
    parts = [read_chunk(units, config, home, secret, readers=FAKE) for units in planned.chunks]
    return planned, merge_chunks(planned, parts, secret)


def manifest(home: Path) -> pd.DataFrame:
    df = read_manifest(home / "manifest.parquet")
    return df[COLS].assign(source_files=df["source_files"].map(tuple)).sort_values("item_id").reset_index(drop=True)


def bad_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(5):
        write(src / "eeg" / f"p{i}.edf", f"patient=MRN00{i}\n")
    write(src / "eeg" / "copy_of_p1.edf", "patient=MRN001\n")  # byte-identical: one row, two files
    write(src / "eeg" / "crash.edf", "action=crash\n")  # kills its reader process: quarantined, nothing else lost
    write(src / "eeg" / "nochannels.edf", "nothing\n")
    write(src / "notes" / "two.txt", "patient=MRN001\nno mrn here\n")
    write(src / "misc" / "photo.gif", "not an image format we read")
    for path in src.rglob("*.*"):  # settled files (a file written < 2 s ago is never remembered by hash)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**10))
    return src


def test_chunked_ingest_equals_one_process_ingest(tmp_path: Path) -> None:
    src = bad_source(tmp_path)
    local = run(src, tmp_path / "local")
    planned, report = chunked(src, tmp_path / "chunked")
    assert len(planned.chunks) == 5 and all(len(c) <= 2 for c in planned.chunks)  # 9 units to read, by 2
    pd.testing.assert_frame_equal(manifest(tmp_path / "local"), manifest(tmp_path / "chunked"))
    assert report.counts == local.counts and report.new == local.new == 10
    assert report.duplicate_files == local.duplicate_files == 1
    reasons = [[(q.source_uri, q.reason) for q in r.quarantined] for r in (local, report)]
    assert reasons[0] == reasons[1] and len(reasons[0]) == 4
    for q in read_manifest(tmp_path / "chunked" / "manifest.parquet").query("status == 'quarantined'").itertuples():
        assert (tmp_path / "chunked" / "quarantine" / f"{q.item_id}.json").is_file()
    # the workers' hashes went into the home's cache, so planning opened no file to hash it
    cached = json.loads((tmp_path / "chunked" / "source_hashes.json").read_text())
    assert {str(p.absolute()) for p in src.rglob("*.*")} <= set(cached)


def test_chunked_rerun_reads_and_writes_nothing(tmp_path: Path) -> None:
    src = bad_source(tmp_path)
    chunked(src, tmp_path / "home")
    path = tmp_path / "home" / "manifest.parquet"
    before, stamp = path.read_bytes(), os.stat(path).st_mtime_ns
    planned, report = chunked(src, tmp_path / "home")
    assert planned.chunks == [] and report.new == 0 and report.skipped == 9
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == stamp


def test_the_secret_passed_decides_the_pseudonyms(tmp_path: Path, monkeypatch) -> None:
    """Nothing in a chunk reads the environment: another CLINFUSE_PSEUDONYM_SECRET there changes nothing."""
    src = bad_source(tmp_path)
    chunked(src, tmp_path / "a")
    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", "what-a-worker-might-have")
    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "elsewhere"))
    chunked(src, tmp_path / "b")
    pd.testing.assert_frame_equal(manifest(tmp_path / "a"), manifest(tmp_path / "b"))
