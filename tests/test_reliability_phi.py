"""The note scrubber against the phantom's planted PHI: recall (nothing planted survives) and precision.

The whole note file (header included) is scrubbed without telling the scrubber the patient's known
identifiers: stricter than ingestion, which passes the MRN it parsed from the header. The numbers are
recorded in docs/RELIABILITY.md; the artifact-wide audit (zero planted strings anywhere under the home
after a pipeline run) is in tests/test_reliability_corpus.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingestion.deid_notes import scrub_precision, scrub_recall


def planted_notes(phantom: Path) -> tuple[list[str], list[list[str]]]:
    """Every phantom note's text and the planted PHI strings that occur in it."""
    answers = pd.read_parquet(phantom / "answers.parquet")
    notes, planted = [], []
    for files, phi in zip(answers["files_note"], answers["planted_phi"]):
        for rel in files:
            text = (phantom / rel).read_text(encoding="utf-8", errors="replace")
            notes.append(text)
            planted.append([str(p) for p in phi if str(p) in text])
    return notes, planted


def test_scrubber_recall_and_precision_on_planted_phi(small_phantom: Path) -> None:
    notes, planted = planted_notes(small_phantom)
    assert notes and sum(map(len, planted)) >= 5 * len(notes), "the phantom should plant PHI in every note"
    recall, precision = scrub_recall(notes, planted), scrub_precision(notes, planted)
    print(f"notes={len(notes)} planted={sum(map(len, planted))} recall={recall:.3f} precision={precision:.3f}")
    assert recall == 1.0
    assert precision >= 0.85
