"""Attribute PNG/JPEG work units to patients: from the sidecar table when the source has one, else the file stem.

Why here and not in the reader: the patient of an image file is not in the
file, and the table must be read once per run, not once per image in every
worker. The original id goes on the unit (in memory, like a DICOM unit's),
for the worker to pseudonymise; what is kept of the row (line, view,
spacing) goes in ``extra`` and so into the manifest's meta, as
provenance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ingestion.driver.worker import WorkUnit
from ingestion.readers.image_sidecar import SIDECAR_NAME, Sidecar, SidecarError, SidecarRow, read_sidecar

IMAGE_KIND = "image"
"""The work-unit kind of a PNG/JPEG file; its items have modality ``xray``."""


def sidecar_path(root: Path) -> Path | None:
    """The source's sidecar table, if it has one (``images.csv`` at the top of the source folder)."""
    path = Path(root) / SIDECAR_NAME
    return path if path.is_file() else None


def _row_for(unit: WorkUnit, sidecar: Sidecar, basenames: Counter) -> SidecarRow | None:
    """The unit's row by relative path, else by bare file name when the table lists bare names and it is unique."""
    row = sidecar.rows.get(unit.source_uri)
    if row is None:
        name = PurePosixPath(unit.source_uri).name
        if basenames[name] == 1:
            row = sidecar.rows.get(name)
    return row


def _with_row(unit: WorkUnit, row: SidecarRow | None, sidecar: Sidecar) -> WorkUnit:
    name = PurePosixPath(unit.source_uri).name
    if row is None and name in sidecar.rows and name != unit.source_uri:  # listed by a bare name several images share
        return replace(unit, quarantine=f"{unit.source_uri}: {sidecar.name} names only {name!r}, which more than one "
                                        "image in the source has; give the path relative to the source folder")
    if row is None:
        return replace(unit, quarantine=f"{unit.source_uri}: not listed in {sidecar.name}, so its patient is unknown; "
                                        "add a row (file, patient_id) and re-run")
    if row.problem:
        return replace(unit, quarantine=f"{unit.source_uri}: {sidecar.name} {row.problem}; fix the row and re-run")
    extra = {**unit.extra, "sidecar": {"table": sidecar.name, "line": row.line, "view": row.view,
                                       "pixel_spacing_mm": list(row.spacing_mm) if row.spacing_mm else None}}
    return replace(unit, original_patient_id=row.patient_id, extra=extra)


def attribute_images(units: list[WorkUnit], root: Path) -> list[WorkUnit]:
    """Set the original patient id (and sidecar row) on every image unit; other units pass unchanged.

    With no sidecar, each file is its own patient: its stem. With a sidecar
    that cannot be read, every image is quarantined with the table's reason
    rather than falling back to stems, which would split patients silently.
    """
    images = [u for u in units if u.kind == IMAGE_KIND and not u.quarantine]
    if not images:
        return units
    path = sidecar_path(root)
    if path is None:
        done = {id(u): replace(u, original_patient_id=PurePosixPath(u.source_uri).stem,
                               extra={**u.extra, "patient_from": "file stem (no images.csv)"}) for u in images}
    else:
        try:
            sidecar = read_sidecar(path)
        except SidecarError as exc:
            reason = f"{exc}; fix the table and re-run (no image is attributed while it is unusable)"
            done = {id(u): replace(u, quarantine=f"{u.source_uri}: {reason}") for u in images}
        else:
            basenames = Counter(PurePosixPath(u.source_uri).name for u in images)
            done = {id(u): _with_row(u, _row_for(u, sidecar, basenames), sidecar) for u in images}
    return [done.get(id(u), u) for u in units]
