"""What one ingest worker process does with one work unit: read, pseudonymise, write, report small.

The driver (:mod:`ingestion.driver.ingest`) hands each :class:`WorkUnit` to a worker
process. The worker calls the modality reader, replaces the original patient
id by its pseudonym, writes the normalised array under ``home/arrays`` itself
(so whole-cohort arrays never travel back to, or pile up in, the parent) and
returns only small :class:`ItemResult` records. It never raises: bad input
becomes a quarantined result with a reason a person can act on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import ingestion
from ingestion.atomic_files import DiskFullError, atomic_path
from ingestion.deid.pseudonym import date_shift_days, pseudonymise
from ingestion.readers.patient_ids import placeholder_reason
from ingestion.readers.records import NormalisedItem, QuarantineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderConfig:
    """The reader settings that shape the normalised arrays; part of ``pipeline_version``."""

    ct_spacing_mm: tuple[float, float, float]
    ct_shape: tuple[int, int, int]
    xray_shape: tuple[int, int]
    eeg_sfreq: float
    eeg_window_s: float
    eeg_line_freq: float

    def pipeline_version(self) -> str:
        """``ingestion.__version__`` plus a hash of this config: arrays differ when either does."""
        blob = json.dumps(asdict(self), sort_keys=True, default=list).encode()
        return f"{ingestion.__version__}+{hashlib.sha256(blob).hexdigest()[:10]}"


@dataclass(frozen=True)
class Readers:
    """The modality readers the driver calls; tests may pass their own (module-level, picklable)."""

    index_dicom: Callable[..., Any]
    read_ct_series: Callable[..., NormalisedItem]
    read_xray: Callable[..., NormalisedItem]
    read_eeg: Callable[..., NormalisedItem]
    read_notes: Callable[..., Sequence[NormalisedItem | QuarantineError]]
    read_image_file: Callable[..., NormalisedItem] = field(  # PNG/JPEG X-rays; a default keeps 5-reader callers
        default_factory=lambda: LazyReader("ingestion.readers.image_file", "read_image_file"))
    read_ecg: Callable[..., NormalisedItem] = field(  # WFDB / EDF 12-lead ECG
        default_factory=lambda: LazyReader("ingestion.readers.ecg", "read_ecg"))


@dataclass(frozen=True)
class LazyReader:
    """A reader named by module and function, imported on first call (in the worker that needs it).

    Keeps the parent process free of pydicom/MNE/spaCy imports and pickles as two strings.
    """

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


def default_readers() -> Readers:
    """The real readers of clinfuse."""
    return Readers(
        index_dicom=LazyReader("ingestion.driver.dicom_index", "index_dicom"),
        read_ct_series=LazyReader("ingestion.readers.ct_volume", "read_ct_series"),
        read_xray=LazyReader("ingestion.readers.xray_image", "read_xray"),
        read_eeg=LazyReader("ingestion.readers.eeg", "read_eeg"),
        read_notes=LazyReader("ingestion.readers.notes", "read_notes"),
        read_image_file=LazyReader("ingestion.readers.image_file", "read_image_file"),
        read_ecg=LazyReader("ingestion.readers.ecg", "read_ecg"),
    )


@dataclass(frozen=True)
class WorkUnit:
    """One source item to read (or already known to be bad).

    ``files`` are paths relative to the source root (what the manifest stores);
    ``read_paths`` are what the reader opens (absolute paths, or the DICOM
    index's own file handles for members of a zip). ``quarantine`` holds a
    reason decided before reading (unrecognised type, unreadable file).
    """

    kind: str
    source_uri: str
    files: tuple[str, ...]
    item_sha: str
    read_paths: tuple[Any, ...] = ()
    original_patient_id: str | None = None
    quarantine: str | None = None
    duplicates: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    root: str = ""
    """The source root, cut from reasons so the manifest names files relative to it."""


@dataclass(frozen=True)
class ItemResult:
    """The small record a worker sends back: one future manifest row (no arrays, no original ids)."""

    item_id: str
    patient_id: str | None
    modality: str
    source_uri: str
    source_files: tuple[str, ...]
    status: str
    reason: str
    array_uri: str
    meta: dict[str, Any]
    ingested_at: dt.datetime

    def manifest_row(self, pipeline_version: str) -> dict[str, Any]:
        return {
            "item_id": self.item_id, "patient_id": self.patient_id, "modality": self.modality,
            "source_uri": self.source_uri, "source_files": list(self.source_files),
            "content_sha256": self.item_id, "status": self.status, "reason": self.reason,
            "array_uri": self.array_uri, "meta_json": json.dumps(self.meta, sort_keys=True, default=str),
            "ingested_at": self.ingested_at, "pipeline_version": pipeline_version,
        }


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """``write(fh)`` into a temporary file that then becomes ``path`` (numpy writes to a handle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_array(home: Path, modality: str, item_id: str, array: np.ndarray | dict[str, Any]) -> str:
    """Write a normalised array (``.npy``) or note document (``.json``) atomically; return its home-relative path."""
    if isinstance(array, dict):
        rel = Path("arrays") / modality / f"{item_id}.json"
        payload = json.dumps(array, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
        _atomic_write_bytes(home / rel, lambda fh: fh.write(payload))
    else:
        rel = Path("arrays") / modality / f"{item_id}.npy"
        data = np.ascontiguousarray(array, dtype=np.float32)
        _atomic_write_bytes(home / rel, lambda fh: np.save(fh, data, allow_pickle=False))
    return rel.as_posix()


def write_quarantine_pointer(home: Path, result: ItemResult, pipeline_version: str) -> None:
    """A small JSON under ``home/quarantine`` saying which source files were set aside and why.

    A pointer rather than a copy, so no raw file (and the PHI inside it) is
    duplicated into the clinfuse home.
    """
    doc = {"item_id": result.item_id, "modality": result.modality, "source_uri": result.source_uri,
           "source_files": list(result.source_files), "reason": result.reason, "patient_id": result.patient_id,
           "ingested_at": result.ingested_at.isoformat(), "pipeline_version": pipeline_version}
    payload = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")
    _atomic_write_bytes(home / "quarantine" / f"{result.item_id}.json", lambda fh: fh.write(payload))


def derived_item_id(file_sha: str, index: int) -> str:
    """Item id of the ``index``-th note of a multi-note file (csv/jsonl rows)."""
    return hashlib.sha256(f"{file_sha}#{index}".encode()).hexdigest()


def _scrub(text: str, original_id: str | None, pseudonym: str | None) -> str:
    """Belt and braces: never let a reader's message echo the original patient id."""
    if original_id and not placeholder_reason(original_id) and original_id.strip() in text:  # "0" is no PHI
        text = text.replace(original_id.strip(), pseudonym or "<patient>")
    return text


def _scrub_meta(value: Any, original_id: str, pseudonym: str) -> Any:
    """:func:`_scrub` on every string of a JSON-like ``value``, never inside a longer number.

    Replacing the id in the serialised JSON text instead broke it whenever the
    id was a short number ("5" inside ``"n_frames": 5``), and a bare substring
    match would rewrite "/255" for patient "5": the item was lost to a
    JSONDecodeError (real data: the COVID-19 X-ray collection's numeric ids).
    """
    if isinstance(value, dict):
        return {k: _scrub_meta(v, original_id, pseudonym) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_meta(v, original_id, pseudonym) for v in value]
    if isinstance(value, str) and original_id.strip() and not placeholder_reason(original_id):
        ident = re.escape(original_id.strip())  # not inside a longer number: "5" is kept in "255" and "1.5"
        token = re.compile(rf"(?<![0-9])(?<![0-9]\.){ident}(?![0-9])(?!\.[0-9])")
        return token.sub(pseudonym, value)
    return value


def _meta_base(unit: WorkUnit) -> dict[str, Any]:
    meta: dict[str, Any] = {"source_sha256": unit.item_sha, **unit.extra}
    if unit.duplicates:
        meta["duplicates"] = [{"path": dup, "duplicate_of": orig} for dup, orig in unit.duplicates]
    return meta


def quarantined_result(unit: WorkUnit, reason: str, *, item_id: str | None = None,
                       patient_id: str | None = None, modality: str | None = None,
                       source_uri: str | None = None, meta: dict[str, Any] | None = None) -> ItemResult:
    """A quarantined :class:`ItemResult` for ``unit`` (or one of its notes)."""
    kind = "xray" if unit.kind == "image" else unit.kind  # a PNG/JPEG unit is an X-ray item
    modality = modality or (kind if kind in ("ct", "xray", "eeg", "ecg", "note") else "unknown")
    if unit.root:
        reason = reason.replace(unit.root.rstrip("/") + "/", "")
    return ItemResult(item_id or unit.item_sha, patient_id, modality, source_uri or unit.source_uri,
                      unit.files, "quarantined", reason, "", {**_meta_base(unit), **(meta or {})}, now_utc())


def _shift_date(date: str | None, original_id: str, secret: str) -> str | None:
    """Shift an event date back by the patient's keyed offset (the same for all of a patient's items)."""
    if not date:
        return None
    try:
        day = dt.date.fromisoformat(str(date)[:10])
    except ValueError:
        return None
    return (day - dt.timedelta(days=date_shift_days(original_id, secret))).isoformat()


def _ok_result(unit: WorkUnit, item: NormalisedItem, home: Path, secret: str, *,
               item_id: str, source_uri: str, extra_meta: dict[str, Any] | None = None) -> ItemResult:
    """Pseudonymise ``item``, write its array and describe it; the original id stays in this function."""
    original = item.original_patient_id
    if not original or not str(original).strip():
        raise QuarantineError(f"{source_uri}: no patient id found in the file; add it to the source and re-run")
    placeholder = placeholder_reason(str(original))
    if placeholder:  # pseudonymised, every file with it would be one patient: different people merged
        raise QuarantineError(f"{source_uri}: the patient id is a {placeholder}, not a real id; items sharing it "
                              "would merge different patients into one: set the real PatientID/MRN and re-run")
    patient_id = pseudonymise(str(original), secret)
    meta = {**_meta_base(unit), **(extra_meta or {}), **dict(item.metadata)}
    shifted = _shift_date(item.event_date, str(original), secret)
    if shifted:
        meta["event_date"] = shifted
    meta_json = json.loads(json.dumps(meta, sort_keys=True, default=str))  # tuples, dates etc. as JSON has them
    if isinstance(item.array, np.ndarray) and not np.isfinite(item.array).all():
        bad = int(item.array.size - np.count_nonzero(np.isfinite(item.array)))
        raise QuarantineError(f"{source_uri}: the normalised {item.modality} array holds {bad} NaN/infinite value(s) "
                              f"of {item.array.size}; the source's pixel or sample data is corrupt: re-export it")
    array_uri = write_array(home, item.modality, item_id, item.array)
    return ItemResult(item_id, patient_id, item.modality, source_uri, unit.files, "ok", "", array_uri,
                      _scrub_meta(meta_json, str(original), patient_id), now_utc())


def _read(unit: WorkUnit, config: ReaderConfig, secret: str, readers: Readers) -> Any:
    if unit.kind == "ct":
        return readers.read_ct_series(list(unit.read_paths), config.ct_spacing_mm, config.ct_shape)
    if unit.kind == "xray":
        return readers.read_xray(unit.read_paths[0], config.xray_shape)
    if unit.kind == "eeg":
        return readers.read_eeg(unit.read_paths[0], config.eeg_sfreq, config.eeg_window_s, config.eeg_line_freq)
    if unit.kind == "ecg":  # the patient is the sidecar's or the record's (set on the unit), else the EDF header's
        return readers.read_ecg(unit.read_paths[0], patient_id=unit.original_patient_id)
    if unit.kind == "note":
        return list(readers.read_notes(unit.read_paths[0], secret))
    if unit.kind == "image":  # patient, view and spacing come from the sidecar row (or the stem), not the file
        row = unit.extra.get("sidecar") or {}
        spacing = row.get("pixel_spacing_mm")
        return readers.read_image_file(unit.read_paths[0], config.xray_shape, unit.original_patient_id,
                                       view=row.get("view") or "", spacing_mm=tuple(spacing) if spacing else None)
    raise QuarantineError(f"{unit.source_uri}: no reader for kind {unit.kind!r}")


def _note_results(unit: WorkUnit, outcomes: list[Any], home: Path, secret: str) -> list[ItemResult]:
    """One result per note of a note file; a single-note file keeps the file's own id and uri."""
    if not outcomes:
        return [quarantined_result(unit, f"{unit.source_uri}: the file holds no note text; "
                                         "export the note again or remove the file", modality="note")]
    single = len(outcomes) == 1
    results = []
    for i, outcome in enumerate(outcomes):
        item_id = unit.item_sha if single else derived_item_id(unit.item_sha, i)
        uri = unit.source_uri if single else f"{unit.source_uri}#{i}"
        extra = {} if single else {"row": i}
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(_ok_result(unit, outcome, home, secret, item_id=item_id, source_uri=uri, extra_meta=extra))
        except QuarantineError as exc:
            results.append(quarantined_result(unit, exc.reason, item_id=item_id, source_uri=uri,
                                              modality="note", meta=extra))
    return results


def process_unit(unit: WorkUnit, config: ReaderConfig, home: Path, secret: str, readers: Readers) -> list[ItemResult]:
    """Read one unit and return its results; runs in a worker process and never raises."""
    real_id = unit.original_patient_id and not placeholder_reason(unit.original_patient_id)
    pseudonym = pseudonymise(unit.original_patient_id, secret) if real_id else None
    if unit.quarantine:
        return [quarantined_result(unit, unit.quarantine, patient_id=pseudonym)]
    try:
        outcome = _read(unit, config, secret, readers)
        if unit.kind == "note":
            return _note_results(unit, outcome, home, secret)
        return [_ok_result(unit, outcome, home, secret, item_id=unit.item_sha, source_uri=unit.source_uri)]
    except QuarantineError as exc:
        reason = _scrub(exc.reason, unit.original_patient_id, pseudonym)
    except DiskFullError:
        raise  # the home's disk, not this file: stops the run, and the item is read again once space is freed
    except MemoryError:
        reason = f"{unit.source_uri}: ran out of memory while reading; ingest it on a larger machine or with fewer workers"
    except Exception as exc:  # noqa: BLE001 - any reader failure is a quarantine reason, never a crash
        detail = _scrub(f"{type(exc).__name__}: {exc}", unit.original_patient_id, pseudonym)[:300]
        reason = f"{unit.source_uri}: the {unit.kind} reader failed unexpectedly ({detail}); report it with this file"
    return [quarantined_result(unit, reason, patient_id=pseudonym)]
