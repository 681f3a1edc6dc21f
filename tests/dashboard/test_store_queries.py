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


SCOPES = (WorklistScope(), WorklistScope(batch_id="batch-20250301"), WorklistScope(model_version="1"),
          WorklistScope(model_version="2"), WorklistScope(batch_id="no-such-batch"))
FILTERS = (WorklistFilters(), WorklistFilters(risk_bands=("high",), require_present=("ct",)),
           WorklistFilters(imputed_only=True, sort_by="patient_id", descending=False),
           WorklistFilters(abstain_only=True, search="A", sort_by="interval_width"),
           WorklistFilters(date_from=date(2025, 3, 10), date_to=date(2025, 3, 10), sort_by="predicted_at"))


def test_maintained_table_answers_exactly_as_the_scan(tmp_path: Path) -> None:
    """Every scope and filter: the one-file read gives the scan's rows, order, labels and hidden count."""
    import shutil

    from dashboard.store_queries import worklist_by_scan, worklist_from_latest
    from models.stores.predictions_latest import refresh_latest
    from models.stores.predictions import PREDICTIONS_SCHEMA
    from tests.dashboard.fixtures import build_home

    fh = build_home(tmp_path / "home", n_patients=40, maintain_latest=False)
    pred = fh.home / "predictions"
    latest = pred / f"{fh.latest_batch}.parquet"
    frame = pd.read_parquet(latest)
    frame.loc[5, "patient_id"] = "MRN00012345"  # an id that is not a pseudonym: hidden by both paths
    frame.to_parquet(latest, index=False)
    files = prediction_files(pred)
    assert worklist_from_latest(pred, files, WorklistScope(), WorklistFilters()) is None  # no table yet
    refresh_latest(pred, PREDICTIONS_SCHEMA)
    files = prediction_files(pred)
    for scope in SCOPES:
        for filters in FILTERS:
            scan = worklist_by_scan(files, scope, filters)
            fast = worklist_from_latest(pred, files, scope, filters)
            assert fast is not None
            pd.testing.assert_frame_equal(fast.rows, scan.rows, check_dtype=False)
            assert (fast.scope_label, fast.hidden_non_pseudonymous) == (scan.scope_label, scan.hidden_non_pseudonymous)
    assert query_worklist(pred).hidden_non_pseudonymous == 1
    shutil.copy(latest, pred / "zz-copied-in.parquet")  # a batch file the table does not cover
    assert worklist_from_latest(pred, prediction_files(pred), WorklistScope(), WorklistFilters()) is None


def test_worklist_reads_one_file_when_the_table_is_fresh(fixture_home: FixtureHome, monkeypatch) -> None:
    from dashboard import store_queries

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned every batch file although the maintained table covers the store")

    monkeypatch.setattr(store_queries, "worklist_by_scan", no_scan)
    rows = query_worklist(fixture_home.home / "predictions").rows
    assert len(rows) == len(fixture_home.patient_ids) and set(rows["batch_id"]) == {fixture_home.latest_batch}
