"""One patient's result as the outbox writes it, and the deterministic ids derived from it.

Re-running predict on the same batch must not duplicate what the PACS and the
EHR receive, so every id (SOP Instance UID, FHIR resource id, file name) is a
hash of what identifies the result: the patient, the model (name, version,
run) and the inputs it was scored on (the content hashes of the patient's
items). The scored values are not part of the key, so a re-run whose Monte
Carlo estimate moved in the last digit is still the same result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ingestion.deid.pseudonym import PSEUDONYM_RE
from ingestion.deid.uids import ImageRef
from ingestion.modalities import MODALITIES


def hashed_uid(*parts: str) -> str:
    """A DICOM UID under the UUID-derived root ``2.25`` from a hash of ``parts`` (same parts, same UID)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


@dataclass(frozen=True)
class PatientResult:
    """What one patient's SR and RiskAssessment say; ``patient_id`` is the pseudonym."""

    patient_id: str
    model_name: str
    model_version: str
    run_id: str
    risk: float
    risk_low: float
    risk_high: float
    predicted_class: int | None
    abstain: bool
    abstain_reason: str
    contributions: Mapping[str, float]
    mask: Mapping[str, str]
    predicted_at: datetime
    inputs: tuple[str, ...] = ()
    references: tuple[ImageRef, ...] = field(default=())

    def __post_init__(self) -> None:
        if not PSEUDONYM_RE.fullmatch(self.patient_id):
            raise ValueError("a result leaving the platform must carry a pseudonym (P + 12 hex), not a raw id")

    @property
    def key(self) -> str:
        """Hex key of the result: patient, model, run and inputs; names its files and ids."""
        ident = json.dumps([self.patient_id, self.model_name, self.model_version, self.run_id, sorted(self.inputs)])
        return hashlib.sha256(ident.encode("utf-8")).hexdigest()

    @property
    def outcome(self) -> str:
        """``positive``, ``negative`` or ``abstained`` (no class when the model abstains)."""
        if self.abstain or self.predicted_class is None:
            return "abstained"
        return "positive" if int(self.predicted_class) == 1 else "negative"


def _optional_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def results_from_batch(batch: pd.DataFrame, inputs: Mapping[str, Iterable[str]],
                       references: Mapping[str, Iterable[ImageRef]]) -> list[PatientResult]:
    """One :class:`PatientResult` per row of a predictions batch (the Predictions contract's columns)."""
    out = []
    for row in batch.to_dict("records"):
        pid = str(row["patient_id"])
        at = pd.Timestamp(row["predicted_at"])
        at = (at.tz_localize(timezone.utc) if at.tzinfo is None else at).to_pydatetime()
        out.append(PatientResult(
            patient_id=pid, model_name=str(row["model_name"]), model_version=str(row["model_version"]),
            run_id=str(row["run_id"]), risk=float(row["risk"]), risk_low=float(row["risk_low"]),
            risk_high=float(row["risk_high"]), predicted_class=_optional_int(row["predicted_class"]),
            abstain=bool(row["abstain"]), abstain_reason=str(row.get("abstain_reason") or ""),
            contributions={m: float(row[f"contrib_{m}"]) for m in MODALITIES if pd.notna(row.get(f"contrib_{m}"))},
            mask={m: str(row[f"mask_{m}"]) for m in MODALITIES if f"mask_{m}" in row},
            predicted_at=at, inputs=tuple(sorted(inputs.get(pid, ()))),
            references=tuple(references.get(pid, ()))))
    return out
