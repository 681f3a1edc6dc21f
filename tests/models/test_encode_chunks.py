"""Chunk planning and merging of the encode fan-out (the cluster run itself is tests/flows/test_dask_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.encode_chunks import EncodeChunk, merge_results, plan_chunks
from models.features.assemble import EncodeFailure
from models.stages import EncodeResult


def _manifest() -> pd.DataFrame:
    rows = [("ct", f"c{i}", "ok", f"arrays/c{i}.npy") for i in (3, 1, 2, 1)]  # c1 twice: a duplicate item
    rows += [("note", "n1", "ok", "arrays/n1.npy"), ("note", "n2", "quarantined", ""), ("xray", "x1", "ok", "")]
    return pd.DataFrame(rows, columns=["modality", "content_sha256", "status", "array_uri"])


def test_chunks_cover_usable_items_once_in_hash_order() -> None:
    chunks = plan_chunks(_manifest(), 2)
    assert chunks == [EncodeChunk("ct", ("c1", "c2")), EncodeChunk("ct", ("c3",)), EncodeChunk("note", ("n1",))]
    assert plan_chunks(_manifest(), 2, ["note"]) == [EncodeChunk("note", ("n1",))]
    with pytest.raises(ValueError):
        plan_chunks(_manifest(), 0)


def test_merge_sums_chunks_and_writes_failures(tmp_path: Path) -> None:
    key = ("ct-enc", "v1", "p1")
    prepared = EncodeResult({"ct": key, "note": None}, {"ct": 8}, {"ct": 0}, {"ct": 0}, {"ct": 0.0})
    bad = EncodeFailure("c9", "ct", "arrays/c9.npy", "truncated array")
    parts = [EncodeResult({"ct": key}, {"ct": 8}, {"ct": 2}, {"ct": 1}, {"ct": 0.5}),
             EncodeResult({"ct": key}, {"ct": 8}, {"ct": 1}, {"ct": 0}, {"ct": 0.25}, failures=(bad,))]
    merged = merge_results(prepared, parts, ("ct", "note"), tmp_path)
    assert merged.encoder_keys == {"ct": key, "note": None} and merged.dims == {"ct": 8}
    assert merged.encoded == {"ct": 3, "note": 0} and merged.hits == {"ct": 1, "note": 0}
    assert merged.seconds["ct"] == pytest.approx(0.75) and merged.failed("ct") == 1
    assert (tmp_path / "encode_failures_ct.parquet").exists() and not (tmp_path / "encode_failures_note.parquet").exists()
