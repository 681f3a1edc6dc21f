"""The note scrubber against the phantom's planted PHI: recall (nothing planted survives) and precision.

The whole note file (header included) is scrubbed without telling the scrubber the patient's known
identifiers: stricter than ingestion, which passes the MRN it parsed from the header. The numbers are
recorded in docs/RELIABILITY.md; the artifact-wide audit (zero planted strings anywhere under the home
after a pipeline run) is in tests/test_reliability_corpus.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingestion.deid.notes import scrub_precision, scrub_recall


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


def test_audit_trail_and_key_file_hold_no_planted_phi(small_phantom: Path, tmp_path: Path) -> None:
    """The re-identification map (written from the phantom's cohort with its real MRNs) and a clinician's audit
    trail hold none of the planted PHI in readable form; the map opens with the key and only with it.
    (The pipeline-wide scan of every artifact, these two included, is in tests/test_reliability_corpus.py.)"""
    import pytest

    from flows.access.audit import AuditLog
    from ingestion.deid.pseudonym import pseudonymise
    from ingestion.deid.reidentify import ReidKeyError, generate_key, read_map, record_cohort, reveal

    secret, key = "phi-test-secret", generate_key()
    map_path, trail = tmp_path / "home" / "reidentify.fernet", AuditLog(tmp_path / "home" / "access" / "audit.jsonl")
    assert record_cohort(small_phantom / "cohort.csv", secret, map_path, key) > 0
    answers = pd.read_parquet(small_phantom / "answers.parquet")
    for original in answers["patient_id"].astype(str):
        pid = pseudonymise(original, secret)
        trail.append("c.clinician", "clinician", "view_patient", pid)
        assert reveal(map_path, key, pid) == original
        trail.append("c.clinician", "clinician", "reveal_mrn", pid, "found")
        with pytest.raises(ValueError):
            trail.append("c.clinician", "clinician", "reveal_mrn", original)  # an MRN is refused outright
    planted = {str(s) for phi in answers["planted_phi"] for s in phi} | set(answers["patient_id"].astype(str))
    for path in (map_path, trail.path, trail.head_path):
        data = path.read_bytes()
        hits = [s for s in planted if s.encode() in data]
        assert not hits, (path.name, hits[:5])
    with pytest.raises(ReidKeyError):
        read_map(map_path, generate_key())
    assert trail.verify().ok
