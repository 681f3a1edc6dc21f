"""Reading the cohort table: pseudonyms, bad rows set aside with reasons, identifier columns dropped."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingestion.cohort import load_cohort, read_cohort, write_cohort
from ingestion.deid.pseudonym import pseudonymise
from ingestion.readers.records import QuarantineError

SECRET = "cohort-secret"


def test_good_table_is_pseudonymised_and_typed(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text("patient_id,label,age,sex,crp\n007,1,70,F,3.5\nMRN2,0,55,M,1.0\nMRN3,,40,F,\n")
    table = read_cohort(csv, SECRET)
    assert table.problems == () and table.dropped_columns == ()
    assert table.frame["patient_id"].tolist() == [pseudonymise(m, SECRET) for m in ("007", "MRN2", "MRN3")]
    assert table.frame["label"].tolist()[:2] == [1, 0] and pd.isna(table.frame["label"].iloc[2])
    assert table.frame["age"].tolist() == [70, 55, 40]
    write_cohort(table.frame, tmp_path / "cohort.parquet")
    back = load_cohort(tmp_path / "cohort.parquet")
    assert back["patient_id"].tolist() == table.frame["patient_id"].tolist()
    assert b"MRN2" not in (tmp_path / "cohort.parquet").read_bytes()


def test_bad_rows_are_set_aside_with_line_numbers(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text("patient_id,label\nMRNA,1\nMRNB,yes\nMRNA,0\n,1\nMRNC,2\nMRND,1.0\n")
    table = read_cohort(csv, SECRET)
    lines = {p.line: p.reason for p in table.problems}
    assert sorted(lines) == [2, 3, 4, 5, 6]
    assert "lines 2, 4" in lines[2] and "0, 1 or empty" in lines[3] and "no patient_id" in lines[5]
    assert not any("MRN" in reason for reason in lines.values())  # original ids are never echoed
    assert table.frame["patient_id"].tolist() == [pseudonymise("MRND", SECRET)]


def test_identifier_columns_dropped_and_latin1_read(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_bytes("patient_id,label,patient_name,birth_date,ward\nA,1,Zoë Müller,1950-01-01,Neuro\n"
                    .encode("latin-1"))
    table = read_cohort(csv, SECRET)
    assert table.dropped_columns == ("patient_name", "birth_date")
    assert list(table.frame.columns) == ["patient_id", "label", "ward"]


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    ("id,label\n1,0\n", "no 'patient_id' column"),
    ("", "cannot be parsed"),
])
def test_unusable_table_raises_quarantine_error(tmp_path: Path, content: str | None, match: str) -> None:
    csv = tmp_path / "cohort.csv"
    if content is not None:
        csv.write_text(content)
    with pytest.raises(QuarantineError, match=match):
        read_cohort(csv, SECRET)
