"""The predictions store: atomic per-batch Parquet files, DuckDB reads, contract checks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingestion.deid.pseudonym import pseudonymise
from ingestion.modalities import MODALITIES
from models.stores import predictions as ps


def model_output(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    risk = rng.uniform(0.05, 0.95, n)
    frame = pd.DataFrame({
        "patient_id": [pseudonymise(f"MRN{i:08d}", "s") for i in range(n)],
        "risk": risk, "risk_low": risk - 0.05, "risk_high": risk + 0.05,
        "predicted_class": (risk > 0.5).astype(int), "abstain": False, "abstain_reason": "",
        "donors_json": json.dumps({}),
    })
    for m in MODALITIES:
        frame[f"contrib_{m}"] = rng.normal(size=n)
        frame[f"mask_{m}"] = "present"
    frame.loc[0, "mask_eeg"] = "imputed"
    frame.loc[0, "donors_json"] = json.dumps({"eeg": [{"patient_id": frame.patient_id[1], "weight": 1.0}]})
    return frame


def test_append_then_read_round_trips_schema(tmp_path):
    out = model_output(5)
    path = ps.append_batch(tmp_path, out, model_name="clinfuse", model_version="3", run_id="abc")
    assert path.suffix == ".parquet" and not list(tmp_path.glob("*.tmp"))
    assert pq.read_schema(path).equals(ps.PREDICTIONS_SCHEMA, check_metadata=False)
    got = ps.read_predictions(tmp_path)
    assert len(got) == 5 and set(got.model_version) == {"3"} and set(got.run_id) == {"abc"}
    np.testing.assert_allclose(got.set_index("patient_id").loc[out.patient_id, "risk"], out.risk)
    assert got.loc[got.mask_eeg == "imputed", "patient_id"].tolist() == [out.patient_id[0]]
    assert str(got.predicted_at.dtype).startswith("datetime64[us, UTC]")


def test_latest_batch_filters_and_listing(tmp_path):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ps.append_batch(tmp_path, model_output(4), model_name="clinfuse", model_version="1", run_id="r1",
                    predicted_at=t0)
    ps.append_batch(tmp_path, model_output(3, seed=1), model_name="clinfuse", model_version="2", run_id="r2",
                    predicted_at=t0 + timedelta(days=1))
    latest = ps.read_latest_batch(tmp_path)
    assert len(latest) == 3 and set(latest.model_version) == {"2"}
    assert len(ps.read_predictions(tmp_path, model_version="1")) == 4
    some = ps.read_predictions(tmp_path, patient_ids=[latest.patient_id.iloc[0]])
    assert len(some) == 2  # same pseudonym in both batches
    batches = ps.list_batches(tmp_path)
    assert batches.model_version.tolist() == ["2", "1"] and batches.n_patients.tolist() == [3, 4]


def test_empty_store_reads_empty(tmp_path):
    assert ps.read_latest_batch(tmp_path / "none").empty
    assert list(ps.read_predictions(tmp_path).columns) == list(ps.PREDICTION_COLUMNS)


@pytest.mark.parametrize("breakage, message", [
    (lambda f: f.assign(patient_id="MRN00412345"), "not pseudonyms"),
    (lambda f: f.drop(columns=["contrib_ct"]), "lacks columns"),
    (lambda f: f.assign(mask_ct="maybe"), "mask_ct"),
    (lambda f: f.assign(risk=1.5), "probability"),
])
def test_contract_violations_are_refused_and_nothing_written(tmp_path, breakage, message):
    with pytest.raises(ps.PredictionsSchemaError, match=message):
        ps.append_batch(tmp_path, breakage(model_output(3)), model_name="m", model_version="1", run_id="r")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")
    import ingestion.atomic_files as atomic_files

    monkeypatch.setattr(atomic_files.os, "replace", boom)
    with pytest.raises(OSError):
        ps.append_batch(tmp_path, model_output(2), model_name="m", model_version="1", run_id="r")
    assert ps.batch_files(tmp_path) == [] and not list(tmp_path.glob(".*"))
