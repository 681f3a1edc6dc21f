"""The batch predictions store: one Parquet file per batch, appended atomically, read with DuckDB.

Why one file per batch: appending never rewrites what is there, a crashed
writer leaves at most a ``*.tmp`` file that no reader globs, and a batch can be
removed or archived by moving one file. DuckDB reads all files at once
(``union_by_name`` so an older batch with fewer columns still reads).

The schema is the Predictions table of ``docs/CONTRACTS.md``. Only pseudonymous
``patient_id`` values are accepted: this store is past ingestion.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.atomic_files import atomic_path

from ingestion.deid.pseudonym import PSEUDONYM_RE
from ingestion.modalities import MODALITIES
from models.stores import predictions_latest

log = logging.getLogger(__name__)

MASK_VALUES = ("present", "missing", "imputed")

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("run_id", pa.string()),
        ("batch_id", pa.string()),
        ("risk", pa.float64()),
        ("risk_low", pa.float64()),
        ("risk_high", pa.float64()),
        ("predicted_class", pa.int64()),
        ("abstain", pa.bool_()),
        ("abstain_reason", pa.string()),
        *[(f"contrib_{m}", pa.float64()) for m in MODALITIES],
        *[(f"mask_{m}", pa.string()) for m in MODALITIES],
        ("donors_json", pa.string()),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
    ]
)
"""Column order and types of every batch file."""

PREDICTION_COLUMNS: tuple[str, ...] = tuple(PREDICTIONS_SCHEMA.names)
MODEL_OUTPUT_COLUMNS: tuple[str, ...] = tuple(
    c for c in PREDICTION_COLUMNS if c not in ("model_name", "model_version", "run_id", "batch_id", "predicted_at")
)
"""What a model's ``predict`` returns; the store adds model, run, batch and time."""


class PredictionsSchemaError(ValueError):
    """A batch does not match the Predictions contract; the message names the column and the fix."""


def _check(frame: pd.DataFrame) -> None:
    missing = [c for c in MODEL_OUTPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise PredictionsSchemaError(f"prediction batch lacks columns {missing}; see docs/CONTRACTS.md Predictions")
    bad_ids = frame.loc[~frame["patient_id"].astype(str).str.fullmatch(PSEUDONYM_RE), "patient_id"]
    if len(bad_ids):
        raise PredictionsSchemaError(
            f"{len(bad_ids)} patient_id values are not pseudonyms (P + 12 hex); only ingestion's "
            "pseudonyms may be stored past ingestion")
    for m in MODALITIES:
        odd = set(frame[f"mask_{m}"].astype(str)) - set(MASK_VALUES)
        if odd:
            raise PredictionsSchemaError(f"mask_{m} has values {sorted(odd)}; allowed: {MASK_VALUES}")
    risk = frame["risk"].to_numpy(dtype=float)
    if np.any((risk < 0) | (risk > 1) | ~np.isfinite(risk)):
        raise PredictionsSchemaError("risk must be a finite probability in [0, 1]")
    for text in frame["donors_json"]:
        json.loads(text or "{}")


def new_batch_id(now: datetime | None = None) -> str:
    """A sortable, unique batch id: UTC time then a random suffix."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


def append_batch(
    root: Path,
    predictions: pd.DataFrame,
    *,
    model_name: str,
    model_version: str,
    run_id: str,
    batch_id: str | None = None,
    predicted_at: datetime | None = None,
) -> Path:
    """Write ``predictions`` (model output columns) as one new batch file under ``root``; return its path.

    The file is written to a ``.tmp`` name in the same folder and renamed, so a
    reader sees the whole batch or nothing. Then the latest-per-patient table
    (:mod:`models.stores.predictions_latest`) is brought up to date, so the worklist
    reads one small file instead of every batch.
    """
    _check(predictions)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    predicted_at = predicted_at or datetime.now(timezone.utc)
    batch_id = batch_id or new_batch_id(predicted_at)
    frame = predictions.loc[:, list(MODEL_OUTPUT_COLUMNS)].copy()
    frame["model_name"] = str(model_name)
    frame["model_version"] = str(model_version)
    frame["run_id"] = str(run_id)
    frame["batch_id"] = batch_id
    frame["predicted_at"] = pd.Timestamp(predicted_at).tz_convert("UTC") if pd.Timestamp(predicted_at).tzinfo \
        else pd.Timestamp(predicted_at, tz="UTC")
    frame["abstain_reason"] = frame["abstain_reason"].fillna("").astype(str)
    frame["donors_json"] = frame["donors_json"].fillna("{}").astype(str)
    table = pa.Table.from_pandas(frame.loc[:, list(PREDICTION_COLUMNS)], schema=PREDICTIONS_SCHEMA,
                                 preserve_index=False)
    final = root / f"{batch_id}.parquet"
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp)
    try:
        predictions_latest.refresh_latest(root, PREDICTIONS_SCHEMA)
    except Exception as exc:  # noqa: BLE001 - the batch is stored; readers fall back to scanning the batch files
        log.warning("latest-per-patient table not updated (%s: %s); the worklist scans the batch files until "
                    "the next batch is written", type(exc).__name__, exc)
    return final


def batch_files(root: Path) -> list[Path]:
    """Every complete batch file, oldest first (batch ids sort by time)."""
    root = Path(root)
    return sorted(p for p in root.glob("*.parquet") if p.is_file()) if root.is_dir() else []


def _empty() -> pd.DataFrame:
    return PREDICTIONS_SCHEMA.empty_table().to_pandas()


def read_predictions(
    root: Path,
    model_version: str | None = None,
    *,
    batch_id: str | None = None,
    patient_ids: Sequence[str] | None = None,
    model_name: str | None = None,
) -> pd.DataFrame:
    """All stored predictions matching the filters, newest batch first; an empty frame when none."""
    files = batch_files(root)
    if not files:
        return _empty()
    where, params = [], []
    for column, value in (("model_version", model_version), ("batch_id", batch_id), ("model_name", model_name)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(str(value))
    if patient_ids is not None:
        where.append("list_contains(?, patient_id)")
        params.append(list(patient_ids))
    sql = (f"SELECT * FROM read_parquet(?, union_by_name = true)"
           f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY predicted_at DESC, batch_id DESC, patient_id")
    with duckdb.connect() as con:
        frame = con.execute(sql, [[str(f) for f in files], *params]).df()
    frame["predicted_at"] = pd.to_datetime(frame["predicted_at"], utc=True)  # DuckDB says Etc/UTC
    return frame


def read_latest_batch(root: Path) -> pd.DataFrame:
    """The most recent batch (by ``predicted_at``); an empty frame when the store is empty."""
    files = batch_files(root)
    if not files:
        return _empty()
    with duckdb.connect() as con:
        row = con.execute("SELECT batch_id FROM read_parquet(?, union_by_name = true) "
                          "ORDER BY predicted_at DESC, batch_id DESC LIMIT 1", [[str(f) for f in files]]).fetchone()
    return read_predictions(root, batch_id=row[0])


BATCH_LIST_COLUMNS = ["batch_id", "model_name", "model_version", "run_id", "n_patients", "predicted_at"]


def list_batches(root: Path) -> pd.DataFrame:
    """One row per batch: batch_id, model_name, model_version, run_id, n_patients, predicted_at (newest first).

    Read from the maintained table's state when it covers the store (no batch file opened), else by a scan.
    """
    files = batch_files(root)
    if not files:
        return pd.DataFrame(columns=BATCH_LIST_COLUMNS)
    state = predictions_latest.read_state(root, files)
    if state is not None:
        frame = pd.DataFrame(state["batches"], columns=[*BATCH_LIST_COLUMNS, "file"]).drop(columns="file")
        frame["predicted_at"] = pd.to_datetime(frame["predicted_at"], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]")
        frame["n_patients"] = frame["n_patients"].astype("int64")
        return frame.sort_values(["predicted_at", "batch_id"], ascending=False, kind="stable").reset_index(drop=True)
    with duckdb.connect() as con:
        return con.execute(
            "SELECT batch_id, any_value(model_name) AS model_name, any_value(model_version) AS model_version, "
            "any_value(run_id) AS run_id, count(*) AS n_patients, max(predicted_at) AS predicted_at "
            "FROM read_parquet(?, union_by_name = true) GROUP BY batch_id ORDER BY predicted_at DESC",
            [[str(f) for f in files]]).df()
