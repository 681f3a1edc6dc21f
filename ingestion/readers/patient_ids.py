"""Placeholder patient ids: values that stand for "no id" and must never be pseudonymised as a patient.

Why: exports fill a missing PatientID or MRN with a word ("Unknown",
"ANONYMOUS", "N/A", "0"). Pseudonymised as if real, every file carrying the
same placeholder becomes one patient: two CT studies of two people merged
into one record, their labels and predictions mixed. Clinfuse quarantines such
items with the reason, like items with no id at all, rather than inventing a
per-study id: an invented id joins no cohort label and no other modality of
the same person, so the item could only appear as a phantom patient.
"""

from __future__ import annotations

import re

PLACEHOLDERS: frozenset[str] = frozenset({
    "unknown", "unk", "anonymous", "anonymized", "anonymised", "anon", "n/a", "na", "n.a.", "none", "null",
    "nil", "nan", "x", "xx", "xxx", "patient", "patientid", "patient id", "noid", "no id", "not available",
    "test", "tbd", "default", "deidentified", "de-identified", "removed", "redacted", "empty", "missing",
})
"""Case-insensitive words used for "no id" (EDF+ writes X for an unknown patient code)."""

_FILLER = re.compile(r"^[\s0\-_.?*#^]+$")
"""Ids made only of zeros, dashes, dots, question marks and the like ("0", "000000", "--", "???")."""


def placeholder_reason(patient_id: str | None) -> str | None:
    """Why ``patient_id`` is not a real id ("blank" or "placeholder 'Unknown'"), or None for a real one.

    The returned text holds the placeholder itself, never a real id, so it may go into a reason.
    """
    value = (patient_id or "").strip()
    if not value:
        return "blank"
    if value.casefold() in PLACEHOLDERS or _FILLER.match(value):
        return f"placeholder {value!r}"
    return None
