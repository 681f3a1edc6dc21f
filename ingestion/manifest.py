"""The manifest: one Parquet row per source item, validated, written atomically under a lock.

Every later stage finds its input through this table (see docs/CONTRACTS.md,
"Manifest"). Two ``clinfuse ingest`` runs on one home may overlap, so every
change is a read-modify-write done under a :class:`filelock.FileLock` and
published with ``os.replace`` of a temporary file: a reader sees the old table
or the new one, never half of one.

Versions: a changed source file has a new ``content_sha256`` and so becomes a
new row; the old row is kept. :func:`latest_per_source` picks, per
``source_uri``, the row with the latest ``ingested_at``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq
from filelock import FileLock

from ingestion.atomic_files import atomic_path
from ingestion.deid.pseudonym import PSEUDONYM_PATTERN
from ingestion.modalities import MODALITIES

MANIFEST_COLUMNS: tuple[str, ...] = (
    "item_id", "patient_id", "modality", "source_uri", "source_files", "content_sha256",
    "status", "reason", "array_uri", "meta_json", "ingested_at", "pipeline_version",
)
MANIFEST_MODALITIES: tuple[str, ...] = (*MODALITIES, "unknown")
STATUSES: tuple[str, ...] = ("ok", "quarantined")

ARROW_SCHEMA = pa_arrow.schema([
    ("item_id", pa_arrow.string()),
    ("patient_id", pa_arrow.string()),
    ("modality", pa_arrow.string()),
    ("source_uri", pa_arrow.string()),
    ("source_files", pa_arrow.list_(pa_arrow.string())),
    ("content_sha256", pa_arrow.string()),
    ("status", pa_arrow.string()),
    ("reason", pa_arrow.string()),
    ("array_uri", pa_arrow.string()),
    ("meta_json", pa_arrow.string()),
    ("ingested_at", pa_arrow.timestamp("us", tz="UTC")),
    ("pipeline_version", pa_arrow.string()),
])

_SHA = r"^[0-9a-f]{64}$"


def _is_file_list(value: Any) -> bool:
    return (isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0
            and all(isinstance(v, str) and v for v in value))


def _is_json_object(text: Any) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        "item_id": pa.Column(str, pa.Check.str_matches(_SHA), unique=True),
        "patient_id": pa.Column(str, pa.Check.str_matches(PSEUDONYM_PATTERN), nullable=True),
        "modality": pa.Column(str, pa.Check.isin(MANIFEST_MODALITIES)),
        "source_uri": pa.Column(str, pa.Check.str_length(min_value=1)),
        "source_files": pa.Column(object, pa.Check(lambda s: s.map(_is_file_list),
                                                   error="source_files must be a non-empty list of paths")),
        "content_sha256": pa.Column(str, pa.Check.str_matches(_SHA)),
        "status": pa.Column(str, pa.Check.isin(STATUSES)),
        "reason": pa.Column(str),
        "array_uri": pa.Column(str),
        "meta_json": pa.Column(str, pa.Check(lambda s: s.map(_is_json_object),
                                             error="meta_json must be a JSON object")),
        "ingested_at": pa.Column(pd.DatetimeTZDtype("us", "UTC")),
        "pipeline_version": pa.Column(str, pa.Check.str_length(min_value=1)),
    },
    checks=[
        pa.Check(lambda df: df["item_id"] == df["content_sha256"], error="item_id must equal content_sha256"),
        pa.Check(lambda df: (df["status"] != "ok") | ((df["reason"] == "") & (df["array_uri"] != "")),
                 error="an ok row has an array_uri and no reason"),
        pa.Check(lambda df: (df["status"] != "quarantined") | ((df["reason"] != "") & (df["array_uri"] == "")),
                 error="a quarantined row has a reason and no array_uri"),
        pa.Check(lambda df: (df["modality"] != "unknown") | (df["status"] == "quarantined"),
                 error="modality 'unknown' is for quarantined rows only"),
    ],
    strict=True,
    ordered=True,
    name="manifest",
)


def empty_manifest() -> pd.DataFrame:
    """A manifest with no rows and the declared column types."""
    return _from_arrow(ARROW_SCHEMA.empty_table())


def _from_arrow(table: pa_arrow.Table) -> pd.DataFrame:
    df = table.to_pandas()
    df["source_files"] = df["source_files"].map(lambda v: [str(x) for x in v])
    df["ingested_at"] = df["ingested_at"].astype(pd.DatetimeTZDtype("us", "UTC"))
    return df.reset_index(drop=True)


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a manifest frame from row dicts (keys = :data:`MANIFEST_COLUMNS`), typed as on disk."""
    rows = list(rows)
    if not rows:
        return empty_manifest()
    missing = [c for c in MANIFEST_COLUMNS if any(c not in r for r in rows)]
    if missing:
        raise ValueError(f"manifest rows lack columns {missing}")
    table = pa_arrow.Table.from_pylist([{c: r[c] for c in MANIFEST_COLUMNS} for r in rows], schema=ARROW_SCHEMA)
    return _from_arrow(table)


def validate_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Validate against :data:`MANIFEST_SCHEMA`; raises ``pandera.errors.SchemaError`` naming the bad rows."""
    return MANIFEST_SCHEMA.validate(df)


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest at ``path`` (an empty one when the file does not exist yet), validated."""
    path = Path(path)
    if not path.exists():
        return empty_manifest()
    return validate_manifest(_from_arrow(pq.read_table(path, schema=ARROW_SCHEMA)))


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    """Validate and write ``df`` to ``path`` atomically (see :func:`atomic_path`).

    Callers that read-modify-write must hold :func:`manifest_lock`; use
    :func:`update_manifest` which does both.
    """
    df = validate_manifest(df.reset_index(drop=True))
    table = pa_arrow.Table.from_pandas(df, schema=ARROW_SCHEMA, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def manifest_lock(path: Path, timeout: float = 600.0) -> FileLock:
    """The inter-process lock guarding the manifest at ``path`` (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)


def update_manifest(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """Apply ``change`` to the current manifest under the lock and write the result atomically.

    ``change`` sees the table as it is on disk now (another run may have
    written since this one started), so merges never lose another run's rows.
    """
    with manifest_lock(path):
        current = read_manifest(path)
        updated = change(current.copy())
        write_manifest(updated, path)
        return updated


def upsert_manifest(path: Path, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Insert ``rows``, replacing existing rows with the same ``item_id``; returns the new manifest."""
    new = rows if isinstance(rows, pd.DataFrame) else rows_to_frame(rows)
    if new.empty:
        with manifest_lock(path):
            return read_manifest(path)

    def change(current: pd.DataFrame) -> pd.DataFrame:
        kept = current[~current["item_id"].isin(new["item_id"])]
        parts = [part for part in (kept, new) if not part.empty]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)

    return update_manifest(path, change)


def latest_per_source(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ``source_uri``: the version with the latest ``ingested_at`` (ties: last written)."""
    if df.empty:
        return df
    return (df.reset_index(drop=True).reset_index(names="_order")
            .sort_values(["ingested_at", "_order"], kind="stable")
            .drop_duplicates("source_uri", keep="last")
            .drop(columns="_order").sort_index().reset_index(drop=True))


def meta_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed ``meta_json`` of a manifest row."""
    return json.loads(row["meta_json"])
