"""Attribute ECG work units to patients: from the ``ecg.csv`` sidecar when the source has one, else the record.

Why here and not in the reader: as for PNG/JPEG images (:mod:`ingestion.driver.image_units`),
the table is read once per run, not once per record in every worker. Without
a table a WFDB record is its own patient (its record name, e.g. PTB-XL's
``00001_lr``); an EDF keeps the patient code of its header, read by the
reader. The original id stays on the unit in memory for the worker to pseudonymise.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

from ingestion.driver.worker import WorkUnit
from ingestion.readers.image_sidecar import SidecarError, read_sidecar

ECG_KIND = "ecg"
ECG_SIDECAR_NAME = "ecg.csv"
"""The ECG sidecar (columns ``file``, ``patient_id``) at the top of the source folder; never read as notes."""


def ecg_sidecar_path(root: Path) -> Path | None:
    path = Path(root) / ECG_SIDECAR_NAME
    return path if path.is_file() else None


def _keys(source_uri: str) -> tuple[str, ...]:
    """A record may be listed by its header path, its record path (no extension) or a bare name."""
    posix = PurePosixPath(source_uri)
    record = posix.with_suffix("").as_posix()
    return (source_uri, record, posix.name, posix.stem)


def _attributed(unit: WorkUnit, rows: dict, table: str) -> WorkUnit:
    row = next((rows[k] for k in _keys(unit.source_uri) if k in rows), None)
    if row is None:
        return replace(unit, quarantine=f"{unit.source_uri}: not listed in {table}, so its patient is unknown; "
                                        "add a row (file, patient_id) and re-run")
    if row.problem:
        return replace(unit, quarantine=f"{unit.source_uri}: {table} {row.problem}; fix the row and re-run")
    return replace(unit, original_patient_id=row.patient_id,
                   extra={**unit.extra, "sidecar": {"table": table, "line": row.line}})


def attribute_ecg(units: list[WorkUnit], root: Path) -> list[WorkUnit]:
    """Set the original patient id on every ECG unit; other units pass unchanged.

    A sidecar that cannot be read quarantines every ECG record with its reason
    rather than falling back to record names, which would split patients silently.
    """
    ecg = [u for u in units if u.kind == ECG_KIND and not u.quarantine]
    if not ecg:
        return units
    path = ecg_sidecar_path(root)
    if path is None:
        done = {id(u): replace(u, original_patient_id=PurePosixPath(u.source_uri).stem,
                               extra={**u.extra, "patient_from": "record name (no ecg.csv)"})
                if u.source_uri.lower().endswith(".hea") else u for u in ecg}
    else:
        try:
            sidecar = read_sidecar(path)
        except SidecarError as exc:
            reason = f"{exc}; fix the table and re-run (no ECG is attributed while it is unusable)"
            done = {id(u): replace(u, quarantine=f"{u.source_uri}: {reason}") for u in ecg}
        else:
            done = {id(u): _attributed(u, sidecar.rows, ECG_SIDECAR_NAME) for u in ecg}
    return [done.get(id(u), u) for u in units]
