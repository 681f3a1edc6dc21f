"""The manifest: schema, atomic writes, upserts under a lock, latest version per source."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.manifest import (
    MANIFEST_COLUMNS, empty_manifest, latest_per_source, read_manifest, rows_to_frame, upsert_manifest,
    write_manifest,
)
from tests.conftest import forked_processes


def _row(name: str, *, status: str = "ok", source_uri: str | None = None, when: int = 0, **over) -> dict:
    sha = hashlib.sha256(name.encode()).hexdigest()
    row = {
        "item_id": sha, "patient_id": "P0123456789ab", "modality": "eeg",
        "source_uri": source_uri or f"{name}.edf", "source_files": [f"{name}.edf"], "content_sha256": sha,
        "status": status, "reason": "" if status == "ok" else "bad file; re-export it",
        "array_uri": f"arrays/eeg/{sha}.npy" if status == "ok" else "", "meta_json": "{}",
        "ingested_at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=when),
        "pipeline_version": "0.1.0+abc",
    }
    row.update(over)
    return row


def test_round_trip_keeps_columns_and_types(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    rows = [_row("a"), _row("b", status="quarantined", patient_id=None, modality="unknown")]
    write_manifest(rows_to_frame(rows), path)
    back = read_manifest(path)
    assert tuple(back.columns) == MANIFEST_COLUMNS
    assert back["source_files"].tolist() == [["a.edf"], ["b.edf"]]
    assert str(back["ingested_at"].dtype) == "datetime64[us, UTC]"
    assert back["patient_id"].isna().tolist() == [False, True]
    schema = pq.read_schema(path)
    assert pa.types.is_list(schema.field("source_files").type)
    assert pa.types.is_string(schema.field("source_files").type.value_type)
    assert str(schema.field("ingested_at").type) == "timestamp[us, tz=UTC]"


def test_missing_manifest_reads_empty(tmp_path: Path) -> None:
    df = read_manifest(tmp_path / "nope.parquet")
    assert df.empty and tuple(df.columns) == MANIFEST_COLUMNS


@pytest.mark.parametrize("override", [
    {"status": "maybe"},
    {"modality": "mri"},
    {"patient_id": "MRN00412345"},          # an original id is not a pseudonym
    {"reason": "should be empty when ok"},
    {"array_uri": ""},
    {"content_sha256": "0" * 64},           # must equal item_id
    {"meta_json": "not json"},
    {"source_files": []},
    {"modality": "unknown"},                # unknown only for quarantined rows
])
def test_schema_rejects_bad_rows(tmp_path: Path, override: dict) -> None:
    path = tmp_path / "manifest.parquet"
    with pytest.raises(pandera.errors.SchemaError):
        write_manifest(rows_to_frame([_row("a", **override)]), path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    write_manifest(rows_to_frame([_row("a")]), path)
    before = path.read_bytes()
    with pytest.raises(pandera.errors.SchemaError):
        write_manifest(rows_to_frame([_row("a"), _row("a")]), path)  # duplicate item_id
    assert path.read_bytes() == before


def test_upsert_replaces_same_item_and_keeps_others(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    upsert_manifest(path, [_row("a", status="quarantined"), _row("b")])
    merged = upsert_manifest(path, [_row("a", when=5)])
    assert len(merged) == 2
    assert dict(zip(merged["source_uri"], merged["status"])) == {"a.edf": "ok", "b.edf": "ok"}
    assert read_manifest(path).equals(merged)


def test_latest_per_source_picks_latest_ingested_at() -> None:
    df = rows_to_frame([_row("v2", source_uri="x.edf", when=10), _row("v1", source_uri="x.edf", when=1),
                        _row("other", when=3)])
    latest = latest_per_source(df)
    assert len(latest) == 2
    assert latest.set_index("source_uri").loc["x.edf", "item_id"] == hashlib.sha256(b"v2").hexdigest()
    assert latest_per_source(empty_manifest()).empty


def _writer(path: str, prefix: str, n: int) -> None:
    for i in range(n):
        upsert_manifest(Path(path), [_row(f"{prefix}{i}")])


def test_concurrent_writers_never_lose_rows(tmp_path: Path) -> None:
    """Two processes upserting into one manifest: the lock serialises them, every row survives."""
    path = tmp_path / "manifest.parquet"
    procs = forked_processes(_writer, [(str(path), p, 8) for p in ("x", "y")])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    df = read_manifest(path)
    assert len(df) == 16 and df["item_id"].is_unique
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rows_to_frame_requires_every_column() -> None:
    row = _row("a")
    del row["meta_json"]
    with pytest.raises(ValueError, match="meta_json"):
        rows_to_frame([row])
    assert isinstance(rows_to_frame([]), pd.DataFrame)
