"""Read and validate the cohort table (patient ids, labels, demographics/labs) and pseudonymise it.

The cohort CSV comes from the hospital with original ids, so it is read here,
inside ingestion, and leaves only as ``<home>/cohort.parquet`` with
pseudonyms. A bad row (no id, duplicate id, label outside {0, 1}) is not
dropped silently and does not stop the run: it becomes a
:class:`CohortRowProblem` that the ingest report lists as a quarantined
``cohort`` row. Columns that look like direct identifiers (names, birth dates,
addresses...) are dropped and named in the report.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from ingestion.atomic_files import atomic_path
from ingestion.deid.pseudonym import PSEUDONYM_PATTERN, pseudonymise
from ingestion.readers.records import QuarantineError

COHORT_SCHEMA = pa.DataFrameSchema(
    {
        "patient_id": pa.Column(str, pa.Check.str_matches(PSEUDONYM_PATTERN), unique=True),
        "label": pa.Column(pd.Int8Dtype(), pa.Check.isin([0, 1]), nullable=True),
    },
    strict=False,
    name="cohort",
)
"""The pseudonymised cohort: unique pseudonyms, label 0/1 or null; other columns as given."""

IDENTIFIER_COLUMNS = re.compile(
    r"name|birth|dob|address|street|zip|postcode|phone|email|ssn|social|mrn|accession|insurance",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CohortRowProblem:
    """A cohort row set aside: its line in the CSV (header = line 1) and why. Never the original id."""

    line: int
    reason: str


@dataclass(frozen=True)
class CohortTable:
    """The pseudonymised cohort, the rows set aside, and the identifier-like columns dropped."""

    frame: pd.DataFrame
    problems: tuple[CohortRowProblem, ...]
    dropped_columns: tuple[str, ...]
    originals: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)
    """(pseudonym, original id) per kept row: only for the encrypted re-identification map (ingestion.deid.reidentify)."""


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    try:
        return pd.read_csv(io.StringIO(text), dtype={"patient_id": str, "label": str},
                           keep_default_na=False, na_values=[""], skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise QuarantineError(f"cohort table {path.name} cannot be parsed as CSV ({type(exc).__name__}); "
                              "export it again as comma-separated text with a header row") from exc


def _parse_label(value: object) -> int | None | str:
    """0/1 as int, empty as None, anything else as the string ``"bad"``."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return "bad"
    return int(number) if number in (0.0, 1.0) else "bad"


def read_cohort(path: Path, secret: str) -> CohortTable:
    """Read ``path`` (CSV with ``patient_id`` and ``label`` columns), validate and pseudonymise it.

    Raises :class:`QuarantineError` only when the table as a whole is unusable
    (missing file, not a CSV, no ``patient_id`` column); row-level problems are
    returned in :attr:`CohortTable.problems`.
    """
    path = Path(path)
    if not path.is_file():
        raise QuarantineError(f"cohort table {path} does not exist; pass the CSV with --cohort")
    df = _read_csv(path)
    df.columns = [str(c).strip() for c in df.columns]
    if "patient_id" not in df.columns:
        raise QuarantineError(f"cohort table {path.name} has no 'patient_id' column (columns: "
                              f"{', '.join(df.columns[:10])}); rename the id column to patient_id")
    if "label" not in df.columns:
        df["label"] = None
    dropped = tuple(c for c in df.columns if c not in ("patient_id", "label") and IDENTIFIER_COLUMNS.search(c))
    df = df.drop(columns=list(dropped))

    ids = df["patient_id"].map(lambda v: "" if pd.isna(v) else str(v).strip())
    labels = df["label"].map(_parse_label)
    lines = pd.Series(range(2, len(df) + 2), index=df.index)
    problems: list[CohortRowProblem] = []
    bad = pd.Series(False, index=df.index)

    for i in df.index[ids == ""]:
        problems.append(CohortRowProblem(int(lines[i]), "row has no patient_id; fill it in or delete the row"))
        bad[i] = True
    counts = ids[ids != ""].value_counts()
    for dup_id in counts[counts > 1].index:
        rows = df.index[ids == dup_id]
        where = ", ".join(str(int(lines[r])) for r in rows)
        for r in rows:
            problems.append(CohortRowProblem(int(lines[r]), f"patient_id appears on lines {where}; keep one row "
                                                             "per patient (all copies set aside)"))
            bad[r] = True
    for i in df.index[labels.map(lambda v: v == "bad") & ~bad]:
        problems.append(CohortRowProblem(int(lines[i]), "label must be 0, 1 or empty; fix the value"))
        bad[i] = True

    good = df[~bad].copy()
    good["patient_id"] = ids[~bad].map(lambda v: pseudonymise(v, secret))
    good["label"] = pd.array(labels[~bad].tolist(), dtype=pd.Int8Dtype())
    good = good[["patient_id", "label", *[c for c in good.columns if c not in ("patient_id", "label")]]]
    frame = COHORT_SCHEMA.validate(good.reset_index(drop=True))
    originals = tuple(zip(good["patient_id"], ids[~bad]))
    return CohortTable(frame, tuple(sorted(problems, key=lambda p: p.line)), dropped, originals)


def write_cohort(frame: pd.DataFrame, path: Path) -> None:
    """Validate and write the pseudonymised cohort to ``path`` atomically."""
    frame = COHORT_SCHEMA.validate(frame)
    with atomic_path(Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)


def load_cohort(path: Path) -> pd.DataFrame:
    """The pseudonymised cohort written by ingest (``<home>/cohort.parquet``), validated."""
    frame = pd.read_parquet(path)
    frame["label"] = frame["label"].astype(pd.Int8Dtype())
    return COHORT_SCHEMA.validate(frame)
