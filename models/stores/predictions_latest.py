"""The latest prediction per patient, maintained when a batch is written, so readers open one small file.

Why: the batch store grows by one Parquet file per batch, and the dashboard's
worklist asks "the newest row per patient" (or "the newest batch") on every
page load. Scanning every batch file for that costs time proportional to the
store's whole history, per session. Instead, :func:`refresh_latest` (called by
``append_batch`` after its file is in place) keeps::

    <root>/_latest/latest.parquet   one row per (patient_id, model_version): the newest
                                    (by predicted_at, then batch_id) of every batch file;
                                    its Parquet metadata holds the state below
    <root>/_latest/latest.lock      filelock serialising concurrent writers

The state in the footer says which batch files (name, size, mtime) the table
covers, and summarises each batch (model, version, run, rows, time), so a
reader learns the latest batch, the batch list and the per-patient table from
one file. Table and state change in one atomic ``os.replace``. A reader trusts
them only when the covered files are exactly the batch files on disk; any
other store (a batch written by another tool, a file removed, a write in
progress) reads as stale, and the reader falls back to scanning the batch
files, so the table can speed reads up but never change their answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from ingestion.atomic_files import atomic_path

LATEST_DIR = "_latest"
STATE_KEY = b"clinfuse.latest_state"
STATE_VERSION = 1

Stamp = dict[str, list[int]]
"""``{batch file name: [size, mtime_ns]}``: the batch files a table covers."""


def latest_path(root: Path) -> Path:
    return Path(root) / LATEST_DIR / "latest.parquet"


def stamp_of(files: Sequence[Path]) -> Stamp:
    """Name, size and mtime of each batch file; a file that vanished meanwhile is left out."""
    out: Stamp = {}
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out[f.name] = [st.st_size, st.st_mtime_ns]
    return out


def _batch_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).glob("*.parquet") if p.is_file()) if Path(root).is_dir() else []


def read_state(root: Path, files: Sequence[Path] | None = None) -> dict[str, Any] | None:
    """The maintained table's state when it covers exactly the batch files on disk, else None (stale/absent)."""
    path = latest_path(root)
    try:
        meta = pq.read_schema(path).metadata or {}
        state = json.loads(meta[STATE_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None
    if state.get("version") != STATE_VERSION:
        return None
    if state.get("covers") != stamp_of(_batch_files(root) if files is None else files):
        return None
    return state


def _source(paths: Sequence[Path]) -> str:
    names = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{names}], union_by_name = true)"


def _batch_summaries(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> list[dict[str, Any]]:
    """One dict per batch in ``paths``: the batch file, its model, run, row count and newest ``predicted_at``."""
    rows = con.execute(
        "SELECT batch_id, any_value(filename) AS file, any_value(model_name), any_value(model_version), "
        "any_value(run_id), count(*), max(predicted_at) "
        f"FROM read_parquet([{', '.join(repr(str(p)) for p in paths)}], union_by_name = true, filename = true) "
        "GROUP BY batch_id").fetchall()
    return [{"batch_id": str(b), "file": Path(f).name, "model_name": str(mn), "model_version": str(mv),
             "run_id": str(r), "n_patients": int(n), "predicted_at": ts.isoformat(timespec="microseconds")}
            for b, f, mn, mv, r, n, ts in rows]


def latest_batch_of(batches: Sequence[dict[str, Any]]) -> str | None:
    """The batch holding the newest row: max ``predicted_at``, ties to the larger batch id (as the scan orders)."""
    if not batches:
        return None
    return max(batches, key=lambda b: (b["predicted_at"], b["batch_id"]))["batch_id"]


def _merge(paths: Sequence[Path], schema: pa.Schema) -> pa.Table:
    """The newest row per (patient, model version) across ``paths``, in the store schema, sorted by patient."""
    with duckdb.connect(":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(
            f"SELECT {', '.join(schema.names)} FROM {_source(paths)} QUALIFY row_number() OVER ("
            "PARTITION BY patient_id, model_version ORDER BY predicted_at DESC, batch_id DESC) = 1 "
            "ORDER BY patient_id, model_version").to_arrow_table().cast(schema)


def refresh_latest(root: Path, schema: pa.Schema) -> dict[str, Any]:
    """Bring ``<root>/_latest/latest.parquet`` up to date with the batch files; returns its state.

    Incremental when the only change since the last refresh is new batch files
    (merge the current table with them); otherwise (first run, a batch rewritten
    or removed, a table from another version) rebuilt from every batch file.
    Serialised by a file lock, so concurrent writers each leave a table that
    covers at least their own batch, and the last one covers all.
    """
    root = Path(root)
    out = latest_path(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.with_name("latest.lock")), timeout=300):
        files = _batch_files(root)
        covers = stamp_of(files)
        files = [f for f in files if f.name in covers]
        old = _stored_state(out)
        incremental = (old is not None and old.get("version") == STATE_VERSION
                       and all(covers.get(n) == s for n, s in old["covers"].items()))
        new_files = [f for f in files if not (incremental and f.name in old["covers"])]
        if not new_files and incremental:
            return old
        with duckdb.connect(":memory:") as con:
            con.execute("SET TimeZone = 'UTC'")
            summaries = _batch_summaries(con, new_files) if new_files else []
        keep = [b for b in (old["batches"] if incremental else []) if b["file"] in covers]
        batches = keep + summaries
        sources = ([out] if incremental else []) + new_files
        table = _merge(sources, schema) if sources else schema.empty_table()
        state = {"version": STATE_VERSION, "covers": covers, "batches": batches,
                 "latest_batch": latest_batch_of(batches)}
        meta = {**(table.schema.metadata or {}), STATE_KEY: json.dumps(state, sort_keys=True).encode()}
        with atomic_path(out) as tmp:
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        return state


def _stored_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((pq.read_schema(path).metadata or {})[STATE_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None
