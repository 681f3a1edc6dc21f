"""DuckDB worklist queries over a written predictions store, checked against pandas on the same files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from dashboard.store_queries import (WorklistFilters, WorklistScope, list_batches, list_model_versions,
                                     load_array, parse_donors, patient_items, patient_predictions, query_worklist,
                                     store_fingerprint, prediction_files)
from tests.dashboard.fixtures import FixtureHome


def _all(fh: FixtureHome) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in prediction_files(fh.home / "predictions")])


def test_batches_and_versions(fixture_home: FixtureHome) -> None:
    b = list_batches(fixture_home.home / "predictions")
    assert list(b["batch_id"]) == [fixture_home.latest_batch, fixture_home.older_batch]
    assert list(list_model_versions(fixture_home.home / "predictions")) == ["2", "1"]
    assert list_batches(fixture_home.home / "nowhere").empty


def test_filters_match_pandas(fixture_home: FixtureHome) -> None:
    pred = fixture_home.home / "predictions"
    df = _all(fixture_home)
    latest = df[df["batch_id"] == fixture_home.latest_batch]
    got = query_worklist(pred, WorklistScope(), WorklistFilters(risk_bands=("low", "medium"))).rows
    assert set(got["patient_id"]) == set(latest.loc[latest["risk"] < 0.6, "patient_id"])
    got = query_worklist(pred, WorklistScope(), WorklistFilters(sort_by="patient_id", descending=False)).rows
    assert list(got["patient_id"]) == sorted(latest["patient_id"])
    got = query_worklist(pred, WorklistScope(batch_id=fixture_home.older_batch),
                         WorklistFilters(date_from=date(2025, 3, 2))).rows
    assert got.empty
    with pytest.raises(ValueError, match="cannot sort"):
        query_worklist(pred, WorklistScope(), WorklistFilters(sort_by="risk; DROP TABLE p"))
    with pytest.raises(ValueError, match="unknown modality"):
        query_worklist(pred, WorklistScope(), WorklistFilters(require_present=("mri",)))


def test_model_version_scope_takes_latest_per_patient(fixture_home: FixtureHome, tmp_path: Path) -> None:
    pred = fixture_home.home / "predictions"
    got = query_worklist(pred, WorklistScope(model_version="2")).rows
    assert len(got) == len(fixture_home.patient_ids) and set(got["batch_id"]) == {fixture_home.latest_batch}


def test_patient_reads_and_donors(fixture_home: FixtureHome) -> None:
    pid = fixture_home.patient_ids[1]
    preds = patient_predictions(fixture_home.home / "predictions", pid)
    assert list(preds["batch_id"]) == [fixture_home.latest_batch, fixture_home.older_batch]
    donors = parse_donors(preds.iloc[0]["donors_json"])
    assert list(donors) == ["ct"] and [d["weight"] for d in donors["ct"]] == [0.6, 0.4]
    assert parse_donors('{"ct": [{"patient_id": "MRN123", "weight": 1}]}') == {"ct": []}
    assert parse_donors("not json") == {}
    items = patient_items(fixture_home.home / "manifest.parquet", pid)
    assert set(items["modality"]) == {"xray", "eeg", "note"}
    arr = load_array(fixture_home.home, items.loc[items["modality"] == "eeg", "array_uri"].iloc[0])
    assert arr.shape == (4, 19, 512)
    with pytest.raises(ValueError, match="outside"):
        load_array(fixture_home.home, "../../etc/passwd")
    assert patient_predictions(fixture_home.home / "predictions", "MRN00100000").empty


def test_fingerprint_changes_when_a_batch_is_written(tmp_path: Path) -> None:
    f = tmp_path / "b.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(f)
    before = store_fingerprint([f, tmp_path / "absent.parquet"])
    pd.DataFrame({"a": [1, 2]}).to_parquet(f)
    assert len(before) == 1 and store_fingerprint([f]) != before
