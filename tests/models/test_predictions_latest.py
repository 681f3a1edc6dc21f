"""The latest-prediction-per-patient table that ``append_batch`` maintains beside the batch files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow.parquet as pq

from models.stores import predictions as ps
from models.stores import predictions_latest as pl
from tests.models.test_predictions_store import model_output

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _append(root, frame, version, when, batch_id=None):
    return ps.append_batch(root, frame, model_name="clinfuse", model_version=version, run_id=f"run{version}",
                           predicted_at=when, batch_id=batch_id)


def _table(root) -> pd.DataFrame:
    return pq.read_table(pl.latest_path(root)).to_pandas().sort_values(["patient_id", "model_version"],
                                                                       ignore_index=True)


def _by_scan(root) -> pd.DataFrame:
    """The reference: newest row per (patient, version) over every batch file, with pandas."""
    rows = ps.read_predictions(root).sort_values(["predicted_at", "batch_id"])
    rows = rows.drop_duplicates(["patient_id", "model_version"], keep="last")
    return rows.sort_values(["patient_id", "model_version"], ignore_index=True)[list(ps.PREDICTION_COLUMNS)]


def test_a_new_batch_supersedes_older_rows_per_patient(tmp_path):
    _append(tmp_path, model_output(5, seed=0), "1", T0)
    newer = model_output(3, seed=1)  # same pseudonyms as the first 3 patients, new risks
    _append(tmp_path, newer, "1", T0 + timedelta(hours=1))
    state = pl.read_state(tmp_path)
    assert state is not None and len(state["batches"]) == 2
    table = _table(tmp_path)
    assert len(table) == 5 and table["patient_id"].is_unique
    got = table.set_index("patient_id")["risk"]
    pd.testing.assert_series_equal(got.loc[newer.patient_id], newer.set_index("patient_id")["risk"],
                                   check_names=False)
    old_only = sorted(set(table.patient_id) - set(newer.patient_id))
    assert (table.set_index("patient_id").loc[old_only, "predicted_at"] == pd.Timestamp(T0)).all()
    pd.testing.assert_frame_equal(table, _by_scan(tmp_path), check_dtype=False)


def test_an_older_batch_written_later_does_not_win(tmp_path):
    _append(tmp_path, model_output(3, seed=1), "1", T0 + timedelta(days=1))
    _append(tmp_path, model_output(3, seed=2), "1", T0)  # back-filled: predicted earlier
    assert (_table(tmp_path)["predicted_at"] == pd.Timestamp(T0 + timedelta(days=1))).all()
    assert pl.read_state(tmp_path)["latest_batch"] == ps.list_batches(tmp_path)["batch_id"].iloc[0]


def test_one_row_per_patient_and_model_version(tmp_path):
    _append(tmp_path, model_output(4), "1", T0)
    _append(tmp_path, model_output(2, seed=3), "2", T0 + timedelta(hours=1))
    table = _table(tmp_path)
    assert table.groupby("model_version").size().to_dict() == {"1": 4, "2": 2}
    pd.testing.assert_frame_equal(table, _by_scan(tmp_path), check_dtype=False)


def test_rewriting_a_batch_is_idempotent(tmp_path):
    frame = model_output(4)
    _append(tmp_path, frame, "1", T0, batch_id="b1")
    _append(tmp_path, model_output(4, seed=5), "1", T0 + timedelta(hours=1), batch_id="b2")
    before = _table(tmp_path)
    _append(tmp_path, model_output(4, seed=5), "1", T0 + timedelta(hours=1), batch_id="b2")  # same batch again
    after = _table(tmp_path)
    pd.testing.assert_frame_equal(before, after)
    assert pl.read_state(tmp_path) is not None and len(ps.list_batches(tmp_path)) == 2
    state = pl.refresh_latest(tmp_path, ps.PREDICTIONS_SCHEMA)  # nothing new: a no-op
    assert state == pl.read_state(tmp_path)


def test_incremental_refresh_equals_a_full_rebuild(tmp_path):
    for k in range(4):
        _append(tmp_path, model_output(3 + k, seed=k), str(1 + k % 2), T0 + timedelta(hours=k))
    incremental = _table(tmp_path)
    pl.latest_path(tmp_path).unlink()
    pl.refresh_latest(tmp_path, ps.PREDICTIONS_SCHEMA)
    pd.testing.assert_frame_equal(incremental, _table(tmp_path))


def test_batches_written_by_other_tools_make_the_table_stale_until_the_next_write(tmp_path):
    _append(tmp_path, model_output(3), "1", T0)
    assert pl.read_state(tmp_path) is not None
    outside = ps.read_predictions(tmp_path).assign(batch_id="zz-outside", risk=0.99,
                                                    predicted_at=pd.Timestamp(T0 + timedelta(days=2)))
    outside.to_parquet(tmp_path / "zz-outside.parquet", index=False)  # not through append_batch
    assert pl.read_state(tmp_path) is None  # readers now scan instead of trusting the table
    _append(tmp_path, model_output(2, seed=9), "1", T0 + timedelta(days=3))
    assert pl.read_state(tmp_path) is not None
    pd.testing.assert_frame_equal(_table(tmp_path), _by_scan(tmp_path), check_dtype=False)
    assert (tmp_path / "zz-outside.parquet").unlink() is None and pl.read_state(tmp_path) is None


def test_list_batches_from_the_state_matches_the_scan(tmp_path):
    _append(tmp_path, model_output(4), "1", T0)
    _append(tmp_path, model_output(2, seed=1), "2", T0 + timedelta(hours=1))
    from_state = ps.list_batches(tmp_path)
    pl.latest_path(tmp_path).unlink()
    scanned = ps.list_batches(tmp_path)
    pd.testing.assert_frame_equal(from_state, scanned, check_dtype=False)
    assert from_state.n_patients.tolist() == [2, 4]
