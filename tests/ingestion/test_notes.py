"""read_notes on text, CSV and JSONL files written here, and sections/findings on real notes."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from ingestion.deid.pseudonym import date_shift_days
from ingestion.readers.notes import NoteRowError, detect_sections, extract_findings, read_notes
from ingestion.readers.records import NormalisedItem, QuarantineError

SECRET = "test-secret"
NOTE = (
    "MRN: MRN00412345\nDate: 2024-05-03\nNote type: Neurology consult\n\n"
    "HISTORY OF PRESENT ILLNESS: Mrs. Abernathy had a seizure on May 1, 2024. Phone (617) 555-0134.\n"
    "IMPRESSION: No evidence of pneumothorax. Left temporal slowing.\n"
)


def finding(item: NormalisedItem, text: str) -> dict:
    return next(f for f in item.array["findings"] if f["text"] == text)


def test_txt_note_scrubbed_sectioned_and_date_shifted(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(NOTE, encoding="utf-8")
    [item] = read_notes(path, SECRET)
    assert isinstance(item, NormalisedItem) and item.modality == "note"
    assert item.original_patient_id == "MRN00412345" and item.event_date == "2024-05-03"
    doc = item.array
    expected = dt.date(2024, 5, 3) - dt.timedelta(days=date_shift_days("MRN00412345", SECRET))
    assert doc["date"] == expected.isoformat() and doc["note_type"] == "Neurology consult"
    assert "Abernathy" not in doc["text"] and "555-0134" not in doc["text"] and "May 1" not in doc["text"]
    assert "MRN00412345" not in json.dumps(doc) + json.dumps(item.metadata)
    assert list(doc["sections"]) == ["history of present illness", "impression"]
    assert finding(item, "pneumothorax") == {"text": "pneumothorax", "negated": True, "section": "impression"}
    assert finding(item, "slowing")["negated"] is False
    assert finding(item, "seizure")["section"] == "history of present illness"
    assert item.metadata["encoding"] == "utf-8" and item.metadata["n_phi_replaced"] >= 3


def test_latin1_note_decoded(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(NOTE.replace("Left temporal", "Œdème? No: left temporal café-au-lait").encode("cp1252"))
    [item] = read_notes(path, SECRET)
    assert item.metadata["encoding"] == "cp1252"
    assert "café-au-lait" in item.array["text"] and "Œdème" in item.array["text"]


def test_empty_note_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("MRN: MRN00412345\nDate: 2024-05-03\nNote type: Progress\n\n   \n", encoding="utf-8")
    with pytest.raises(QuarantineError, match="empty note"):
        read_notes(path, SECRET)
    (tmp_path / "void.txt").write_bytes(b"")
    with pytest.raises(QuarantineError, match="empty note"):
        read_notes(tmp_path / "void.txt", SECRET)


def test_note_without_mrn_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "anon.txt"
    path.write_text("Date: 2024-05-03\n\nIMPRESSION: normal.\n", encoding="utf-8")
    with pytest.raises(QuarantineError, match="no patient id"):
        read_notes(path, SECRET)


def test_csv_bad_rows_become_their_own_errors(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient_id", "date", "note_type", "text"])
        writer.writerow(["MRN001", "2024-01-02", "Radiology", "FINDINGS: Right lower lobe consolidation."])
        writer.writerow(["MRN002", "2024-01-03", "Radiology", ""])  # empty note
        writer.writerow(["MRN003", "not a date", "Radiology", "No effusion."])
        writer.writerow(["MRN004", "03/01/2024", "Radiology", "Small nodule.", "stray field"])
        writer.writerow(["MRN005", "03/01/2024", "Radiology", "IMPRESSION: Cardiomegaly."])
    results = read_notes(path, SECRET)
    assert len(results) == 5
    ok = [r for r in results if isinstance(r, NormalisedItem)]
    errors = [r for r in results if isinstance(r, NoteRowError)]
    assert [i.original_patient_id for i in ok] == ["MRN001", "MRN005"]
    assert [e.row for e in errors] == [2, 3, 4]
    assert "empty note" in errors[0].reason and "not a date" in errors[1].reason and "more field" in errors[2].reason
    assert ok[1].event_date == "2024-03-01" and ok[1].metadata["source_line"] == 5


def test_jsonl_rows(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    lines = [json.dumps({"patient_id": "MRN9", "date": "2023-12-31", "note_type": "EEG report",
                         "text": "IMPRESSION: Focal slowing. No epileptiform discharges."}),
             "{not json", json.dumps(["a list"])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first, bad_json, not_object = read_notes(path, SECRET)
    assert isinstance(first, NormalisedItem)
    assert {(f["text"], f["negated"]) for f in first.array["findings"]} == {
        ("focal slowing", False), ("epileptiform discharges", True)}
    assert isinstance(bad_json, NoteRowError) and bad_json.row == 2 and "not valid JSON" in bad_json.reason
    assert isinstance(not_object, NoteRowError) and not_object.row == 3


def test_table_without_needed_columns_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("uid,findings\n1,No pneumothorax.\n", encoding="utf-8")
    with pytest.raises(QuarantineError, match="lacks column"):
        read_notes(path, SECRET)


def test_unknown_extension_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "note.docx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(QuarantineError, match="extension"):
        read_notes(path, SECRET)


@pytest.mark.realdata
def test_sections_on_mtsamples(realdata: Path) -> None:
    notes = pd.read_csv(realdata / "notes" / "mtsamples_subset.csv", dtype=str, keep_default_na=False)
    first = dict((name, text) for name, _, text in detect_sections(notes.transcription.iloc[0]))
    assert {"subjective", "medications", "allergies", "objective", "assessment", "plan"} <= set(first)
    assert first["assessment"] == "Allergic rhinitis."
    with_sections = sum(len(detect_sections(t)) >= 2 for t in notes.transcription)
    assert with_sections / len(notes) > 0.9


@pytest.mark.realdata
def test_negation_on_indiana_reports(realdata: Path) -> None:
    reports = pd.read_csv(realdata / "notes" / "indiana_reports_subset.csv", dtype=str, keep_default_na=False)
    first = extract_findings(f"FINDINGS: {reports.findings.iloc[0]}\nIMPRESSION: {reports.impression.iloc[0]}")
    assert {f["text"] for f in first} >= {"pneumothorax", "consolidation", "edema"}
    assert all(f["negated"] for f in first)  # report 1 is "normal": every finding is negated
    assert [f["negated"] for f in extract_findings("There is no evidence of pneumothorax.")] == [True]
    assert [f["negated"] for f in extract_findings("Small right pneumothorax.")] == [False]
