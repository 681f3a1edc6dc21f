"""Availability mask and cohort join from a manifest and a cohort table."""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd

from ingestion.availability import availability_mask, cohort_join
from ingestion.manifest import empty_manifest, rows_to_frame
from ingestion.modalities import MODALITIES


def _row(patient: str | None, modality: str, status: str = "ok", uri: str | None = None, when: int = 0) -> dict:
    sha = hashlib.sha256(f"{patient}{modality}{status}{uri}{when}".encode()).hexdigest()
    return {
        "item_id": sha, "patient_id": patient, "modality": modality, "source_uri": uri or f"{patient}/{modality}",
        "source_files": [uri or f"{patient}/{modality}"], "content_sha256": sha, "status": status,
        "reason": "" if status == "ok" else "bad; fix it", "array_uri": f"arrays/{sha}.npy" if status == "ok" else "",
        "meta_json": "{}", "ingested_at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=when),
        "pipeline_version": "v",
    }


A, B, C, D = "P00000000000a", "P00000000000b", "P00000000000c", "P00000000000d"


def _manifest() -> pd.DataFrame:
    return rows_to_frame([
        _row(A, "ct"), _row(A, "eeg"), _row(A, "note"), _row(A, "xray"), _row(A, "ecg"),
        _row(B, "xray", status="quarantined"),                          # quarantined: not present
        _row(B, "eeg", uri="b.edf", when=0), _row(B, "eeg", status="quarantined", uri="b.edf", when=9),  # latest bad
        _row(C, "note", uri="c.txt", when=0, status="quarantined"), _row(C, "note", uri="c.txt", when=5),  # latest ok
        _row(D, "ct"),                                                  # not in the cohort
        _row(None, "unknown", status="quarantined"),
    ])


def test_mask_uses_latest_ok_version_in_cohort_order() -> None:
    cohort = pd.DataFrame({"patient_id": [C, B, A], "label": [1, 0, None]})
    mask = availability_mask(_manifest(), cohort)
    assert list(mask.columns) == list(MODALITIES)
    assert mask.index.name == "patient_id" and list(mask.index) == [C, B, A]
    assert mask.loc[A].tolist() == ["present"] * 5
    assert mask.loc[B].tolist() == ["missing"] * 5
    assert mask.loc[C].tolist() == ["missing", "missing", "missing", "present", "missing"]
    assert set(mask.to_numpy().ravel()) <= {"present", "missing"}


def test_mask_without_cohort_covers_patients_with_files() -> None:
    mask = availability_mask(_manifest())
    assert list(mask.index) == [A, C, D]
    assert availability_mask(empty_manifest()).empty


def test_cohort_join_names_both_sides() -> None:
    cohort = pd.DataFrame({"patient_id": [A, B, C, "P00000000000e"], "label": [1, 0, 1, 0]})
    join = cohort_join(_manifest(), cohort)
    assert join.in_files_not_in_cohort == (D,)
    assert join.in_cohort_without_files == (B, "P00000000000e")
    assert join.n_cohort == 4 and join.n_with_files == 3 and join.complete == 1
