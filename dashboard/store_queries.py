"""DuckDB queries over the predictions store and the manifest, without Streamlit.

The dashboard's pages call these through the cached wrappers in
:mod:`dashboard.data_access`; the benchmark and the tests call them directly.
Every query only reads: the predictions and the manifest are written by flows.

``models.stores.predictions`` appends batches and answers the plain reads
(batch files, batch list, one patient's rows); the worklist needs filtered,
sorted, per-patient-latest slices, so that query lives here, in SQL.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingestion.deid.pseudonym import PSEUDONYM_RE
from ingestion.modalities import MODALITIES
from models.stores import predictions_latest, predictions as predictions_store

log = logging.getLogger(__name__)

#: Pseudonyms as ``ingestion.deid.pseudonym.pseudonymise`` writes them; anything else is never shown.

#: Risk bands shown in the worklist: (name, lower bound inclusive, upper bound exclusive).
RISK_BANDS: tuple[tuple[str, float, float], ...] = (
    ("low", 0.0, 0.3),
    ("medium", 0.3, 0.6),
    ("high", 0.6, 1.0000001),
)

SORTABLE = ("risk", "patient_id", "predicted_at", "interval_width")

_MASKS = ", ".join(f"mask_{m}" for m in MODALITIES)
_CONTRIBS = ", ".join(f"contrib_{m}" for m in MODALITIES)
_IMPUTED_ANY = " OR ".join(f"mask_{m} = 'imputed'" for m in MODALITIES)
_IMPUTED_LIST = "concat_ws(', ', " + ", ".join(
    f"CASE WHEN mask_{m} = 'imputed' THEN '{m}' END" for m in MODALITIES) + ")"
_MISSING_LIST = "concat_ws(', ', " + ", ".join(
    f"CASE WHEN mask_{m} = 'missing' THEN '{m}' END" for m in MODALITIES) + ")"
_BAND = "CASE " + " ".join(
    f"WHEN risk >= {lo} AND risk < {hi} THEN '{name}'" for name, lo, hi in RISK_BANDS) + " ELSE 'unknown' END"


@dataclass(frozen=True)
class WorklistScope:
    """Which predictions the worklist shows: one batch, or the latest per patient of one model version.

    Both ``None`` means the most recent batch in the store.
    """

    batch_id: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class WorklistFilters:
    """The worklist's filters; the default shows everything, riskiest first."""

    risk_bands: tuple[str, ...] = ()
    require_present: tuple[str, ...] = ()
    imputed_only: bool = False
    abstain_only: bool = False
    date_from: date | None = None
    date_to: date | None = None
    search: str = ""
    sort_by: str = "risk"
    descending: bool = True


@dataclass(frozen=True)
class Worklist:
    """The rows to show plus how many rows were hidden because their id is not a pseudonym."""

    rows: pd.DataFrame
    hidden_non_pseudonymous: int = 0
    scope_label: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def prediction_files(predictions_dir: Path) -> list[Path]:
    """The batch files of the store, oldest first (one Parquet file per batch)."""
    return predictions_store.batch_files(predictions_dir)


def store_fingerprint(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime_ns, size) of each file: the cache key that changes whenever a flow writes."""
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _source(files: list[Path]) -> str:
    names = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{names}], union_by_name = true)"


def list_batches(predictions_dir: Path) -> pd.DataFrame:
    """One row per batch (batch_id, model_name, model_version, n_patients, predicted_at), newest first."""
    return predictions_store.list_batches(predictions_dir)


def list_model_versions(predictions_dir: Path) -> list[str]:
    """Model versions with predictions in the store, newest prediction first."""
    files = prediction_files(predictions_dir)
    if not files:
        return []
    with _connect() as con:
        rows = con.execute(
            f"SELECT model_version FROM {_source(files)} GROUP BY model_version ORDER BY max(predicted_at) DESC"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _where(filters: WorklistFilters) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    bands = [b for b in filters.risk_bands if b in {n for n, _, _ in RISK_BANDS}]
    if bands:
        clauses.append("band IN (" + ", ".join("?" for _ in bands) + ")")
        params.extend(bands)
    for m in filters.require_present:
        if m not in MODALITIES:
            raise ValueError(f"unknown modality {m!r}; expected one of {MODALITIES}")
        clauses.append(f"mask_{m} = 'present'")
    if filters.imputed_only:
        clauses.append("has_imputed")
    if filters.abstain_only:
        clauses.append("abstain")
    if filters.date_from is not None:
        clauses.append("CAST(predicted_at AS DATE) >= ?")
        params.append(filters.date_from)
    if filters.date_to is not None:
        clauses.append("CAST(predicted_at AS DATE) <= ?")
        params.append(filters.date_to)
    if filters.search.strip():
        clauses.append("contains(lower(patient_id), ?)")
        params.append(filters.search.strip().lower())
    return clauses, params


def query_worklist(predictions_dir: Path, scope: WorklistScope = WorklistScope(),
                   filters: WorklistFilters = WorklistFilters()) -> Worklist:
    """The worklist rows for ``scope`` after ``filters``.

    Reads one small file when the store's maintained latest-per-patient table
    (:mod:`models.stores.predictions_latest`) covers every batch: the scoped batch file,
    or that table for a model-version scope. Otherwise (a store written by
    other tools, a write in progress) one DuckDB query scans every batch file;
    both give the same rows. Rows whose ``patient_id`` is not a pseudonym are
    counted and left out: the dashboard must never show an original
    identifier, and the page says how many it hid so nothing disappears silently.
    """
    files = prediction_files(predictions_dir)
    if not files:
        return Worklist(rows=pd.DataFrame(), scope_label="no predictions yet")
    if filters.sort_by not in SORTABLE:
        raise ValueError(f"cannot sort by {filters.sort_by!r}; choose one of {SORTABLE}")
    _where(filters)  # validates the filters whichever path answers
    fast = worklist_from_latest(predictions_dir, files, scope, filters)
    return fast if fast is not None else worklist_by_scan(files, scope, filters)


def worklist_by_scan(files: list[Path], scope: WorklistScope, filters: WorklistFilters) -> Worklist:
    """The worklist in one DuckDB query over every batch file (the reference answer; no maintained table)."""
    with _connect() as con:
        con.execute(f"CREATE TEMP VIEW p AS SELECT * FROM {_source(files)}")
        if scope.model_version is not None:
            scoped = ("SELECT * FROM p WHERE model_version = ? "
                      "QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY predicted_at DESC) = 1")
            scope_params: list[object] = [scope.model_version]
            label = f"model version {scope.model_version} (latest prediction per patient)"
        else:
            batch = scope.batch_id
            if batch is None:
                row = con.execute("SELECT batch_id FROM p ORDER BY predicted_at DESC, batch_id DESC LIMIT 1").fetchone()
                batch = str(row[0])
            scoped = "SELECT * FROM p WHERE batch_id = ?"
            scope_params = [batch]
            label = f"batch {batch}"
        clauses, params = _where(filters)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        order = "DESC" if filters.descending else "ASC"
        sql = f"""
            WITH s AS ({scoped}),
            w AS (
                SELECT patient_id, risk, risk_low, risk_high, risk_high - risk_low AS interval_width,
                       {_BAND} AS band, predicted_class, abstain, coalesce(abstain_reason, '') AS abstain_reason,
                       ({_IMPUTED_ANY}) AS has_imputed, {_IMPUTED_LIST} AS imputed, {_MISSING_LIST} AS missing,
                       {_MASKS}, {_CONTRIBS}, model_name, model_version, batch_id, run_id, predicted_at
                FROM s
            )
            SELECT *, regexp_full_match(patient_id, '{PSEUDONYM_RE.pattern[1:-1]}') AS _pseudonymous
            FROM w {where}
            ORDER BY {filters.sort_by} {order} NULLS LAST, patient_id
        """
        df = con.execute(sql, scope_params + params).df()
    hidden = int((~df["_pseudonymous"]).sum())
    df = df[df["_pseudonymous"]].drop(columns="_pseudonymous").reset_index(drop=True)
    return Worklist(rows=df, hidden_non_pseudonymous=hidden, scope_label=label)


WORKLIST_READ_COLUMNS = tuple(c for c in predictions_store.PREDICTION_COLUMNS if c != "donors_json")


def worklist_from_latest(predictions_dir: Path, files: list[Path], scope: WorklistScope,
                         filters: WorklistFilters) -> Worklist | None:
    """The worklist from one small file, or None when the maintained table does not cover the store.

    A batch scope reads that batch's own file (the state names it); a model
    version scope reads the maintained newest-row-per-patient table. Filters and
    derived columns are computed with Arrow kernels to match :func:`worklist_by_scan`.
    """
    state = predictions_latest.read_state(predictions_dir, files)
    if state is None:
        return None
    try:
        if scope.model_version is not None:
            table = _read(predictions_latest.latest_path(predictions_dir), "model_version", scope.model_version)
            label = f"model version {scope.model_version} (latest prediction per patient)"
        else:
            batch = scope.batch_id or state["latest_batch"]
            entry = next((b for b in state["batches"] if b["batch_id"] == batch), None)
            label = f"batch {batch}"
            table = (predictions_store.PREDICTIONS_SCHEMA.empty_table() if entry is None
                     else _read(Path(predictions_dir) / entry["file"], "batch_id", batch))
        rows, hidden = _worklist_rows(table.select(list(WORKLIST_READ_COLUMNS)), filters)
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:  # e.g. a file replaced under us
        log.debug("maintained worklist read failed (%s); scanning the batch files", exc)
        return None
    return Worklist(rows=rows, hidden_non_pseudonymous=hidden, scope_label=label)


#: For each 4-bit code (bit j: modality j has the mask value), the comma-separated names the scan's SQL writes.
_MODALITY_LISTS = pa.array([", ".join(m for j, m in enumerate(MODALITIES) if code >> j & 1)
                            for code in range(1 << len(MODALITIES))], pa.string())
_BAND_NAMES = pa.array([name for name, _, _ in RISK_BANDS] + ["unknown"], pa.string())
_DAY_US = 86_400 * 1_000_000


def _read(path: Path, column: str, value: str) -> pa.Table:
    """The worklist's columns of the rows of one Parquet file where ``column == value``.

    A plain single-threaded file read: many sessions read at once, and the
    dataset API's planning and thread pool only add overhead for a small file.
    """
    table = pq.ParquetFile(path).read(columns=list(WORKLIST_READ_COLUMNS), use_threads=False)
    return table.filter(pc.equal(table[column], str(value)))


def _np(array: pa.ChunkedArray | pa.Array, fill: object = None) -> np.ndarray:
    if fill is not None:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False) if isinstance(array, pa.Array) else array.to_numpy()


def _modality_code(table: pa.Table, value: str) -> np.ndarray:
    """Per row, a bit code of the modalities whose mask equals ``value`` (Arrow kernels, no per-row Python)."""
    code = np.zeros(table.num_rows, np.int64)
    for j, m in enumerate(MODALITIES):
        code |= _np(pc.equal(table[f"mask_{m}"], value), False).astype(np.int64) << j
    return code


def _keep(table: pa.Table, band: np.ndarray, imputed: np.ndarray, filters: WorklistFilters) -> np.ndarray:
    """The rows :func:`_where` keeps, as a boolean vector."""
    keep = np.ones(table.num_rows, bool)
    bands = [b for b in filters.risk_bands if b in {n for n, _, _ in RISK_BANDS}]
    if bands:
        keep &= np.isin(band, bands)
    for m in filters.require_present:
        keep &= _np(pc.equal(table[f"mask_{m}"], "present"), False)
    if filters.imputed_only:
        keep &= imputed > 0
    if filters.abstain_only:
        keep &= _np(table["abstain"], False)
    if filters.date_from is not None or filters.date_to is not None:
        day = _np(pc.cast(table["predicted_at"], pa.int64())) // _DAY_US  # CAST(predicted_at AS DATE), UTC
        epoch = date(1970, 1, 1)
        if filters.date_from is not None:
            keep &= day >= (filters.date_from - epoch).days
        if filters.date_to is not None:
            keep &= day <= (filters.date_to - epoch).days
    if filters.search.strip():
        term = filters.search.strip().lower()
        keep &= _np(pc.match_substring(pc.utf8_lower(table["patient_id"]), term), False)
    return keep


def _sort_indices(table: pa.Table, keys: list[tuple[str, str]]) -> pa.Array:
    """ORDER BY ... NULLS LAST (pyarrow >= 25 takes the null placement per key, older ones per sort)."""
    if int(pa.__version__.split(".")[0]) >= 25:
        return pc.sort_indices(table, sort_keys=[(k, o, "at_end") for k, o in keys])
    return pc.sort_indices(table, sort_keys=keys, null_placement="at_end")


def _worklist_rows(table: pa.Table, filters: WorklistFilters) -> tuple[pd.DataFrame, int]:
    """Derived columns, filters, order and the pseudonym check of the scan's SQL, with Arrow kernels.

    Arrow's kernels run outside the GIL, so many sessions querying at once share the
    cores instead of queueing on the interpreter; the rows are gathered once, already
    filtered and ordered. Returns (rows, hidden non-pseudonymous rows).
    """
    risk = _np(table["risk"])
    band_code = np.select([(risk >= lo) & (risk < hi) for _, lo, hi in RISK_BANDS], range(len(RISK_BANDS)),
                          len(RISK_BANDS))
    band = np.asarray([name for name, _, _ in RISK_BANDS] + ["unknown"])[band_code]
    imputed, missing = _modality_code(table, "imputed"), _modality_code(table, "missing")
    idx = np.flatnonzero(_keep(table, band, imputed, filters))
    width = pc.subtract(table["risk_high"], table["risk_low"])
    sort_col = width if filters.sort_by == "interval_width" else table[filters.sort_by]
    keys = pa.table({"k": pc.take(sort_col, idx), "patient_id": pc.take(table["patient_id"], idx)})
    order = "descending" if filters.descending else "ascending"
    idx = idx[_np(_sort_indices(keys, [("k", order), ("patient_id", "ascending")]))]
    pseudonymous = _np(pc.match_substring_regex(pc.take(table["patient_id"], idx), PSEUDONYM_RE.pattern), False)
    hidden, idx = int((~pseudonymous).sum()), pa.array(idx[pseudonymous])
    extra = {"interval_width": pc.take(width, idx), "band": pc.take(_BAND_NAMES, pa.array(band_code).take(idx)),
             "has_imputed": pc.greater(pa.array(imputed).take(idx), 0),
             "imputed": pc.take(_MODALITY_LISTS, pa.array(imputed).take(idx)),
             "missing": pc.take(_MODALITY_LISTS, pa.array(missing).take(idx)),
             "abstain_reason": pc.fill_null(pc.take(table["abstain_reason"], idx), "")}
    columns = ["patient_id", "risk", "risk_low", "risk_high", "interval_width", "band", "predicted_class", "abstain",
               "abstain_reason", "has_imputed", "imputed", "missing", *(f"mask_{m}" for m in MODALITIES),
               *(f"contrib_{m}" for m in MODALITIES), "model_name", "model_version", "batch_id", "run_id",
               "predicted_at"]
    out = pa.table({c: extra[c] if c in extra else pc.take(table[c], idx) for c in columns})
    return out.to_pandas(), hidden


def patient_predictions(predictions_dir: Path, patient_id: str) -> pd.DataFrame:
    """Every prediction of one patient, newest first (one row per batch that included them)."""
    if not PSEUDONYM_RE.match(patient_id):
        return pd.DataFrame()
    return predictions_store.read_predictions(predictions_dir, patient_ids=[patient_id])


def patient_items(manifest_path: Path, patient_id: str) -> pd.DataFrame:
    """The manifest rows of one patient (ok and quarantined), newest ingestion first."""
    if not manifest_path.is_file() or not PSEUDONYM_RE.match(patient_id):
        return pd.DataFrame(columns=["modality", "status", "reason", "array_uri", "meta_json"])
    path = str(manifest_path).replace("'", "''")
    with _connect() as con:
        return con.execute(
            f"""SELECT item_id, modality, status, reason, array_uri, meta_json, ingested_at
                FROM read_parquet('{path}') WHERE patient_id = ? ORDER BY ingested_at DESC""",
            [patient_id],
        ).df()


def load_array(home: Path, array_uri: str) -> np.ndarray:
    """A normalised array (memory-mapped, so a large CT opens without reading it whole)."""
    path = (home / array_uri).resolve()
    if home.resolve() not in path.parents:
        raise ValueError(f"array_uri {array_uri!r} points outside the clinfuse home")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_note(home: Path, array_uri: str) -> dict:
    """A de-identified note record (text, sections, findings) as ingestion wrote it."""
    path = (home / array_uri).resolve()
    if home.resolve() not in path.parents:
        raise ValueError(f"array_uri {array_uri!r} points outside the clinfuse home")
    return json.loads(path.read_text(encoding="utf-8"))


def parse_donors(donors_json: str | None) -> dict[str, list[dict]]:
    """``donors_json`` of a prediction row as ``{modality: [{"patient_id", "weight"}]}``; pseudonyms only."""
    if not donors_json:
        return {}
    try:
        raw = json.loads(donors_json)
    except (TypeError, ValueError):
        return {}
    out: dict[str, list[dict]] = {}
    for modality, donors in (raw or {}).items():
        clean = [d for d in donors or [] if isinstance(d, dict) and PSEUDONYM_RE.match(str(d.get("patient_id", "")))]
        out[str(modality)] = [{"patient_id": str(d["patient_id"]), "weight": float(d.get("weight", float("nan")))}
                              for d in clean]
    return out
