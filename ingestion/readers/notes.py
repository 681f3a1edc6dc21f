"""Read clinical notes (.txt, .csv, .jsonl) into scrubbed, sectioned documents with findings.

A hospital export holds one note per text file (a ``MRN:`` / ``Date:`` /
``Note type:`` header, a blank line, the body) or many per table. Every note
becomes one :class:`~ingestion.readers.records.NormalisedItem` whose array is the note
document of ``docs/CONTRACTS.md``: PHI-scrubbed text, sections, findings with
a negation flag, and the date shifted per patient. In a table, one bad row is
its own :class:`NoteRowError` in the returned list, so the driver can
quarantine that row and keep the rest; a file that cannot be read at all
raises :class:`~ingestion.readers.records.QuarantineError`.

Findings use spaCy (blank English pipeline, no downloaded model) with an
entity ruler over :data:`FINDING_TERMS` and negspaCy's NegEx, so
"no evidence of pneumothorax" is a negated finding.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from dateutil import parser as date_parser

from ingestion.deid.notes import scrub_note
from ingestion.deid.pseudonym import date_shift_days
from ingestion.readers.records import NormalisedItem, QuarantineError

NOTE_EXTENSIONS: tuple[str, ...] = (".txt", ".csv", ".jsonl")

FINDING_TERMS: tuple[str, ...] = (
    "lesion", "mass", "opacity", "consolidation", "effusion", "pleural effusion", "pneumothorax",
    "seizure", "slowing", "focal slowing", "spike", "sharp wave", "epileptiform discharge", "hemorrhage",
    "haemorrhage", "infarct", "infarction", "edema", "oedema", "fracture", "cardiomegaly", "nodule",
    "atelectasis", "pneumonia", "infiltrate", "midline shift", "hydrocephalus", "ischemia", "emphysema",
    "granuloma", "tumor", "tumour", "metastasis", "abscess", "encephalopathy",
)
"""Clinical findings the note reader tags (singular; plurals are matched too)."""

_PLURALS = {"mass": "masses", "opacity": "opacities", "metastasis": "metastases", "ischemia": "ischemia",
            "edema": "edema", "oedema": "oedema", "atelectasis": "atelectasis", "slowing": "slowing",
            "cardiomegaly": "cardiomegaly", "emphysema": "emphysema", "hydrocephalus": "hydrocephalus",
            "pneumothorax": "pneumothoraces", "encephalopathy": "encephalopathies"}

_HEADER_KEYS = {"mrn": "patient_id", "patient id": "patient_id", "patient_id": "patient_id",
                "date": "date", "note date": "date", "note type": "note_type", "type": "note_type"}
_COLUMN_ALIASES = {"patient_id": ("patient_id", "mrn", "patient"), "date": ("date", "note_date"),
                   "note_type": ("note_type", "type", "category"), "text": ("text", "note", "body")}

# An upper-case heading after a line start or a list separator (mtsamples writes "SUBJECTIVE:,"),
# or a Title Case heading alone at the start of a line ("Impression: ...").
_SECTION = re.compile(
    r"(?:^|(?<=[\n,.;]))[ \t]*(?P<name>[A-Z][A-Z0-9 /&()'\-]{2,60}?)[ \t]*:[ \t]*,?"
    r"|^[ \t]*(?P<title>[A-Z][a-z]+(?: [A-Za-z]+){0,3})[ \t]*:[ \t]*$",
    re.MULTILINE,
)
PREAMBLE = "preamble"
"""Section name of text before the first heading."""
MAX_NOTE_CHARS = 1_000_000
"""Longest note body parsed (spaCy's default ``max_length``); a longer one is quarantined, not crashed on."""
MAX_NOTE_TABLE_BYTES = 64_000_000
"""Largest .csv/.jsonl notes table read (tables are read whole, then parsed): a 100 MB table took 610 MB."""


class NoteRowError(QuarantineError):
    """One bad row of a note table: quarantined alone, the rest of the file goes on."""

    def __init__(self, reason: str, row: int) -> None:
        super().__init__(reason)
        self.row = row


def read_notes(path: Path, secret: str) -> list[NormalisedItem | QuarantineError]:
    """Read every note of a .txt, .csv or .jsonl file, one result per note in file order.

    A .txt file holds one note; an empty one raises :class:`QuarantineError`.
    Tables (columns/keys ``patient_id, date, note_type, text``) give one entry
    per row: a :class:`NormalisedItem`, or a :class:`NoteRowError` naming the row.
    ``secret`` keys the per-patient date shift.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in NOTE_EXTENSIONS:
        raise QuarantineError(f"note file {path.name} has extension {suffix!r}; notes are read from "
                              f"{', '.join(NOTE_EXTENSIONS)}: convert it to one of these.")
    if suffix == ".txt" and path.stat().st_size > 4 * MAX_NOTE_CHARS:  # never read a huge "note" into memory
        raise QuarantineError(f"note file {path.name} is {path.stat().st_size / 1e6:.1f} MB, far more than one "
                              f"note ({MAX_NOTE_CHARS:,} characters at most); split it or export a notes table.")
    if suffix != ".txt" and path.stat().st_size > MAX_NOTE_TABLE_BYTES:  # a table is read whole: bound it
        raise QuarantineError(f"notes table {path.name} is {path.stat().st_size / 1e6:.1f} MB, more than the "
                              f"{MAX_NOTE_TABLE_BYTES / 1e6:.0f} MB read at once; split it into smaller tables.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QuarantineError(f"note file {path.name} could not be read ({exc}); check its permissions.") from exc
    if looks_binary(data):
        raise QuarantineError(f"note file {path.name} holds binary data, not text (NUL or control bytes in its "
                              "first 8 KB); it is not a note: remove it or export the note as text.")
    text, encoding = decode_text(data)
    if suffix == ".txt":
        fields = _parse_txt(text, path.name)
        return [note_item(fields, secret, source_format="txt", encoding=encoding, where=path.name)]
    rows = _csv_rows(text, path.name) if suffix == ".csv" else _jsonl_rows(text)
    results: list[NormalisedItem | QuarantineError] = []
    for line, fields in rows:
        where = f"{path.name} {'row' if suffix == '.csv' else 'line'} {line}"
        try:
            if isinstance(fields, str):
                raise QuarantineError(f"{where}: {fields}")
            results.append(note_item(fields, secret, source_format=suffix[1:], encoding=encoding,
                                     where=where, line=line))
        except QuarantineError as exc:
            results.append(NoteRowError(exc.reason, line))
    if not results:
        raise QuarantineError(f"note file {path.name} has no rows; export the notes again.")
    return results


def looks_binary(data: bytes, sample: int = 8192) -> bool:
    """Whether a file's start is binary, not text: a NUL byte, or over 10% control bytes other than whitespace.

    Why: every byte decodes as Latin-1, so a binary file would otherwise be parsed as a note (or as
    thousands of bad table lines, each its own quarantined row) instead of being set aside once.
    """
    head = data[:sample]
    if b"\0" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and control / len(head) > 0.10


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode UTF-8 (with or without BOM), else Windows-1252, else Latin-1; return text and encoding used."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), "utf-8" if encoding == "utf-8-sig" else encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"  # maps every byte, never fails


def note_item(
    fields: dict[str, Any], secret: str, *, source_format: str, encoding: str, where: str, line: int | None = None
) -> NormalisedItem:
    """Build the note document from header fields + body; raises :class:`QuarantineError` for a bad note."""
    original_id = str(fields.get("patient_id") or "").strip()
    body = str(fields.get("text") or "")
    if not body.strip():
        raise QuarantineError(f"{where}: empty note (no text after the header); export the note again or remove it.")
    if not original_id:
        raise QuarantineError(f"{where}: the note has no patient id (MRN); add it to the note header or column.")
    if len(body) > MAX_NOTE_CHARS:
        raise QuarantineError(f"{where}: the note is {len(body):,} characters, more than the {MAX_NOTE_CHARS:,} "
                              "clinfuse parses (several notes or an attachment pasted in?); split it and re-run.")
    day = _parse_date(str(fields.get("date") or ""), where)
    shifted = day - dt.timedelta(days=date_shift_days(original_id, secret))
    note_type = str(fields.get("note_type") or "").strip() or "unspecified"
    known = [original_id, *(str(v) for k, v in fields.items() if k == "name" and v)]
    scrubbed = scrub_note(body.strip(), known)
    sections = detect_sections(scrubbed.text)
    findings = extract_findings(scrubbed.text)
    document = {"text": scrubbed.text, "note_type": note_type, "date": shifted.isoformat(),
                "sections": {name: text for name, _, text in sections}, "findings": findings}
    metadata = {"source_format": source_format, "encoding": encoding, "source_line": line,
                "note_type": note_type, "n_chars": len(scrubbed.text), "n_phi_replaced": scrubbed.n_replaced,
                "phi_categories": scrubbed.categories, "sections": [name for name, _, _ in sections],
                "n_findings": len(findings), "n_negated": sum(f["negated"] for f in findings)}
    return NormalisedItem("note", original_id, document, metadata, event_date=day.isoformat())


def _parse_date(value: str, where: str) -> dt.date:
    value = value.strip()
    if not value:
        raise QuarantineError(f"{where}: the note has no date; add a Date: header or date column (YYYY-MM-DD).")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        pass
    try:
        return date_parser.parse(value, dayfirst=False).date()
    except (ValueError, OverflowError) as exc:
        raise QuarantineError(f"{where}: date {value[:40]!r} is not a date; write it as YYYY-MM-DD.") from exc


def _parse_txt(text: str, name: str) -> dict[str, Any]:
    """Header lines ``Key: value`` up to the first blank line, then the body."""
    lines = text.lstrip("\ufeff").splitlines()
    fields: dict[str, Any] = {}
    index = 0
    while index < len(lines) and lines[index].strip():
        key, sep, value = lines[index].partition(":")
        canonical = _HEADER_KEYS.get(key.strip().lower())
        if not sep or canonical is None:
            if key.strip().lower() in ("name", "patient name") and sep:
                fields["name"] = value.strip()
                index += 1
                continue
            break  # not a header line: the note has no (further) header
        fields[canonical] = value.strip()
        index += 1
    fields["text"] = "\n".join(lines[index:]).strip()
    if not fields["text"] and not text.strip():
        raise QuarantineError(f"note file {name}: empty note (the file has no text); export it again or remove it.")
    return fields


def _canonical(columns: list[str]) -> dict[str, str]:
    """Map canonical field -> column name present in the file."""
    lower = {c.strip().lower(): c for c in columns if c}
    found = {}
    for field, aliases in _COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                found[field] = lower[alias]
                break
    return found


def _csv_rows(text: str, name: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="__extra__")
    columns = _canonical(list(reader.fieldnames or []))
    missing = [f for f in ("patient_id", "text") if f not in columns]
    if missing:
        raise QuarantineError(f"note table {name} lacks column(s) {', '.join(missing)} (has: "
                              f"{', '.join(reader.fieldnames or [])[:200]}); notes tables need patient_id, "
                              "date, note_type, text.")
    try:
        for number, row in enumerate(reader, start=1):
            if row.get("__extra__"):
                yield number, f"the row has {len(row['__extra__'])} more field(s) than the header; quote its text."
            elif any(v is None for k, v in row.items() if k != "__extra__"):
                yield number, "the row has fewer fields than the header; fill in patient_id, date, note_type, text."
            else:
                yield number, {field: row[col] for field, col in columns.items()}
    except csv.Error as exc:
        raise QuarantineError(f"note table {name} is not valid CSV ({exc}); re-export it.") from exc


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"the line is not valid JSON ({exc.msg} at column {exc.colno}); fix or remove it."
            continue
        if not isinstance(record, dict):
            yield number, "the line is not a JSON object with patient_id, date, note_type, text."
            continue
        columns = _canonical(list(record))
        yield number, {field: record[col] for field, col in columns.items()}


def detect_sections(text: str) -> list[tuple[str, int, str]]:
    """Sections of a note as ``(name, start offset, text)``, names lower-cased, in order.

    Headings are upper-case phrases followed by a colon (``IMPRESSION:``,
    mtsamples' ``SUBJECTIVE:,``) or a Title Case phrase alone on a line.
    Text before the first heading is :data:`PREAMBLE`; repeated headings are
    joined. Dicts keep order, so the section map reads in note order.
    """
    marks = [(m.start(), m.end(), (m.group("name") or m.group("title")).strip().lower())
             for m in _SECTION.finditer(text)]
    bounds: list[tuple[str, int, int]] = []
    if not marks or text[: marks[0][0]].strip():
        bounds.append((PREAMBLE, 0, marks[0][0] if marks else len(text)))
    for i, (_, end, name) in enumerate(marks):
        bounds.append((name, end, marks[i + 1][0] if i + 1 < len(marks) else len(text)))
    merged: dict[str, tuple[int, str]] = {}
    for name, start, stop in bounds:
        chunk = text[start:stop].strip(" \t\n,")
        if name in merged:
            merged[name] = (merged[name][0], f"{merged[name][1]}\n{chunk}".strip())
        else:
            merged[name] = (start, chunk)
    return [(name, start, chunk) for name, (start, chunk) in merged.items()]


def extract_findings(text: str) -> list[dict[str, Any]]:
    """Findings of :data:`FINDING_TERMS` in ``text``, each with ``negated`` (NegEx) and its section."""
    sections = detect_sections(text)
    starts = sorted((start, name) for name, start, _ in sections)
    doc = _finding_pipeline()(text)
    out = []
    for ent in doc.ents:
        section = PREAMBLE
        for start, name in starts:
            if start <= ent.start_char:
                section = name
        out.append({"text": ent.text.lower(), "negated": bool(ent._.negex), "section": section})
    return out


@lru_cache(maxsize=1)
def _finding_pipeline():  # -> spacy.Language; imported lazily: spaCy costs a second to import
    """spaCy blank English + sentencizer + entity ruler over FINDING_TERMS + NegEx (clinical termset)."""
    import spacy
    from negspacy.negation import Negex  # noqa: F401  (registers the "negex" factory)
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    terms = {t for term in FINDING_TERMS for t in (term, _plural(term))}
    ruler.add_patterns([{"label": "FINDING", "pattern": term} for term in sorted(terms)])
    nlp.add_pipe("negex", config={"ent_types": ["FINDING"],
                                  "neg_termset": termset("en_clinical").get_patterns()})
    return nlp


def _plural(term: str) -> str:
    words = term.split()
    last = _PLURALS.get(words[-1], words[-1] + ("es" if words[-1].endswith(("s", "x")) else "s"))
    return " ".join([*words[:-1], last])
