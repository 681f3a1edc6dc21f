"""Hostile files through a whole ``clinfuse ingest`` process: bounded memory, a reason each, nothing else lost.

One ingest subprocess (2 workers) reads a source holding every attack of ``tests/corpus/hostile.py`` (a
zip with one 3 GiB member, a DICOM declaring 60,000 x 60,000 x 1,000 frames, a JPEG 2000 codestream
declaring 60,000 x 60,000 and a JPEG frame header declaring the same, an EDF header implying terabytes, 100 MB and binary notes, placeholder
patient ids) beside ordinary good files. Its memory is measured by the kernel (peak RSS of its largest
process) and guarded (the tree is killed past 4 GiB, so a regression fails here, not on the machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.deid.pseudonym import pseudonymise
from tests.corpus.attack_run import SECRET, run_ingest, rows_of
from tests.corpus.build import reason_matches
from tests.corpus.hostile import PLACEHOLDER_IDS, build_hostile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

MEMORY_CAP = 1 << 30
"""Peak RSS any process of the ingest may reach with every attack in its batch (1 GiB)."""


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("attacks")
    cases = build_hostile(work / "src")
    return cases, run_ingest(work, work / "src", timeout_s=900)


def test_ingest_survives_every_attack(attacked) -> None:
    _, run = attacked
    assert run.rc == 0, run.logs[-4000:]
    assert not run.killed, f"the ingest tree passed the 4 GiB guard (sampled {run.tree_peak_rss:,} bytes)"


def test_peak_memory_is_bounded(attacked) -> None:
    _, run = attacked
    assert run.peak_rss < MEMORY_CAP, f"peak RSS {run.peak_rss / 2**20:.0f} MiB with a 3 GiB zip member in the batch"


@pytest.mark.parametrize("name", [
    "zip_one_3gib_member", "dicom_60000x60000x1000_frames", "jpeg2000_codestream_declares_60000x60000",
    "jpeg_frame_header_declares_60000x60000", "dicom_deflated_dataset_3gib",
    "edf_samples_imply_tens_of_tb", "note_100_mb", "notes_table_100_mb", "note_binary_1_mb",
    "notes_jsonl_binary_1_mb", "ct_patient_id_unknown_0", "ct_patient_id_unknown_1", "xray_patient_id_anonymous",
    "xray_patient_id_anon", "xray_patient_id_0", "xray_patient_id_na", "note_mrn_anonymous",
    "good_ct", "good_xray", "good_eeg", "good_note",
])
def test_each_case_gets_its_status_and_reason(attacked, name: str) -> None:
    cases, run = attacked
    case = next(c for c in cases if c.name == name)
    rows = rows_of(run.manifest, case)
    assert len(rows) == 1, f"{name}: {len(rows)} manifest rows"
    row = rows.iloc[0]
    assert row["status"] == case.expect, f"{name}: {row['status']} ({row['reason']})"
    if case.expect == "quarantined":
        assert reason_matches(case, row["reason"]), f"{name}: reason {row['reason']!r} does not match {case.reason!r}"


def test_nothing_lost_and_nothing_written_outside_the_home(attacked) -> None:
    _, run = attacked
    assert run.lost == (), f"source files without a manifest row: {run.lost}"
    assert run.written_outside == (), f"written outside the home: {run.written_outside}"


def test_placeholder_ids_never_become_one_patient(attacked) -> None:
    _, run = attacked
    placeholders = {pseudonymise(pid, SECRET) for pid in PLACEHOLDER_IDS}
    assert not placeholders & set(run.manifest["patient_id"].dropna()), "a placeholder id was pseudonymised"
    ct = run.manifest[run.manifest["source_uri"].str.startswith("hostile_ids/unknown_ct_")]
    assert len(ct) == 2 and ct["patient_id"].isna().all()
