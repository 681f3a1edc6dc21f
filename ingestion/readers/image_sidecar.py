"""The optional sidecar table of a PNG/JPEG source: which patient, view and pixel spacing each image has.

Why: a PNG/JPEG holds pixels only. Without a table every image would have to
be its own patient (its file stem), so two films of one person could never be
joined. ``images.csv`` at the top of the source folder names, per image file,
the patient and optionally the view, the pixel spacing and the modality.
Dates are not read: the meta would carry them unshifted (PHI). Column names
are matched case-insensitively, with the spellings public sets use
(``filename``, ``patientid``).

A row is checked when the table is read; a bad row becomes a reason on that
image (quarantined), never a guess. The original patient ids stay in memory.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

SIDECAR_NAME = "images.csv"
"""The sidecar's file name, at the top of the source folder; reserved (never read as a note file)."""

MAX_SIDECAR_BYTES = 64 << 20
"""64 MiB, about a million rows: a larger 'sidecar' is not one, and reading it whole would cost memory."""

COLUMNS: dict[str, tuple[str, ...]] = {
    "file": ("file", "filename", "path", "image", "file_name"),
    "patient_id": ("patient_id", "patientid", "patient", "mrn", "subject_id"),
    "view": ("view", "view_position", "viewposition", "projection"),
    "pixel_spacing_mm": ("pixel_spacing_mm", "pixel_spacing", "spacing_mm"),
    "modality": ("modality",),
}
"""Our column -> accepted header spellings (case-insensitive); ``file`` and ``patient_id`` are required."""

XRAY_MODALITIES: frozenset[str] = frozenset({"x-ray", "xray", "cr", "dx", "cxr", "radiograph", ""})
"""``modality`` values read as a radiograph; any other (e.g. CT) is quarantined, as a CT slice saved as an
image is neither an X-ray nor a CT volume."""


class SidecarError(Exception):
    """The table as a whole cannot be used (unreadable, no file or patient column)."""


@dataclass(frozen=True)
class SidecarRow:
    """One image's entry; ``problem`` is set when the row cannot be used (the image is then quarantined)."""

    line: int
    patient_id: str = ""
    view: str = ""
    spacing_mm: tuple[float, float] | None = None
    modality: str = ""
    problem: str | None = None


@dataclass(frozen=True)
class Sidecar:
    """The rows by file path relative to the source root (forward slashes)."""

    name: str
    rows: dict[str, SidecarRow] = field(default_factory=dict)


def parse_spacing(text: str) -> tuple[float, float] | None:
    """``0.139`` (square) or ``0.139\\0.14`` / ``0.139;0.14`` / ``0.139 x 0.14`` (row, column); raises ValueError."""
    parts = [p for p in re.split(r"[\\;x×,\s]+", text.strip()) if p]
    if not parts:
        return None
    values = [float(p) for p in parts]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"pixel spacing {text!r} is not one or two positive numbers in mm")
    return values[0], values[1]


def _header_map(header: list[str], name: str) -> dict[str, int]:
    lowered = [re.sub(r"[\s\-]+", "_", h.strip().lower()) for h in header]  # "View Position" -> view_position
    found: dict[str, int] = {}
    for ours, spellings in COLUMNS.items():
        for spelling in spellings:
            if spelling in lowered:
                found[ours] = lowered.index(spelling)
                break
    missing = [c for c in ("file", "patient_id") if c not in found]
    if missing:
        raise SidecarError(f"{name}: no {' or '.join(missing)} column (accepted headers: "
                           + "; ".join(f"{c}: {', '.join(COLUMNS[c])}" for c in missing) + ")")
    return found


def _row(line: int, cells: list[str], cols: dict[str, int]) -> SidecarRow:
    def cell(key: str) -> str:
        i = cols.get(key)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    base = dict(line=line, patient_id=cell("patient_id"), view=cell("view"), modality=cell("modality"))
    try:
        spacing = parse_spacing(cell("pixel_spacing_mm"))
    except ValueError as exc:
        return SidecarRow(**base, problem=f"line {line}: {exc}")
    if not base["patient_id"]:
        return SidecarRow(**base, problem=f"line {line}: the patient id is empty")
    if base["modality"].lower() not in XRAY_MODALITIES:
        return SidecarRow(**base, problem=f"line {line}: modality {base['modality']!r} is not a radiograph; "
                                          "clinfuse reads CT from DICOM series only, not from single images")
    return SidecarRow(**base, spacing_mm=spacing)


def read_sidecar(path: Path) -> Sidecar:
    """Read the table; a file listed twice keeps a problem naming both lines. Raises SidecarError."""
    name = path.name
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{name}: larger than {MAX_SIDECAR_BYTES >> 20} MiB; it is not an image table")
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SidecarError(f"{name}: not UTF-8 text; save it as UTF-8 CSV") from None
    except OSError as exc:
        raise SidecarError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise SidecarError(f"{name}: empty; it needs a header with file and patient_id columns")
    cols = _header_map(header, name)
    rows: dict[str, SidecarRow] = {}
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        key = _key(cells[cols["file"]] if cols["file"] < len(cells) else "")
        if not key:
            continue
        if key in rows:
            rows[key] = SidecarRow(line, problem=f"lines {rows[key].line} and {line} both describe this file; "
                                                 "keep one row per image")
            continue
        rows[key] = _row(line, cells, cols)
    return Sidecar(name, rows)


def _key(file_cell: str) -> str:
    """Normalise a file cell to a forward-slash path relative to the source root."""
    key = file_cell.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key.lstrip("/")
