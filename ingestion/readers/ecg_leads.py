"""ECG lead names mapped onto the standard 12 leads, and the EDF sniff that tells an ECG from an EEG.

Why: devices and databases spell the same lead many ways (``I``, ``ECG I``,
``Lead II``, ``DII`` in French/Spanish notation, ``AVR``/``aVR``, ``V1-REF``).
The encoder wants one fixed lead order, so every record is mapped onto
:data:`STANDARD_12_LEADS` here; what cannot be mapped is named, never silently
dropped. Both WFDB and EDF files come through here, and an EDF is routed to
the ECG reader only when its labels are ECG leads and none is a 10-20 scalp
electrode (an EEG's single ``ECG``/``EKG`` polygraphy channel is no 12-lead ECG).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.readers.eeg_channels import standard_channel_name

STANDARD_12_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""Row order of every normalised ECG array (limb, augmented, then precordial leads)."""

_BY_UPPER: dict[str, str] = {lead.upper(): lead for lead in STANDARD_12_LEADS}
_BY_UPPER.update({"DI": "I", "DII": "II", "DIII": "III", "D1": "I", "D2": "II", "D3": "III",
                  "L1": "I", "L2": "II", "L3": "III"})

_PREFIX = re.compile(r"^(?:ECG|EKG|LEAD|ABL)[\s_:.-]*", re.IGNORECASE)
_SUFFIX = re.compile(r"[\s_:-]*(?:REF|WCT)$", re.IGNORECASE)

MIN_EDF_LEADS = 2
"""An EDF needs at least this many 12-lead labels (and no 10-20 label) to be read as an ECG."""


def standard_lead_name(name: str) -> str | None:
    """The standard lead of a vendor label (``ECG V1`` -> ``V1``, ``DII`` -> ``II``), or None."""
    stripped = _SUFFIX.sub("", _PREFIX.sub("", name.strip()))
    return _BY_UPPER.get(stripped.strip().upper())


@dataclass(frozen=True)
class LeadMap:
    """Source label -> standard lead (first source wins), plus the labels left out and the leads absent."""

    mapping: dict[str, str] = field(default_factory=dict)
    unmapped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def present(self) -> tuple[str, ...]:
        have = set(self.mapping.values())
        return tuple(lead for lead in STANDARD_12_LEADS if lead in have)


def map_leads(labels: Sequence[str]) -> LeadMap:
    """Map source labels onto :data:`STANDARD_12_LEADS`; see :class:`LeadMap`."""
    mapping: dict[str, str] = {}
    unmapped: list[str] = []
    for label in labels:
        lead = standard_lead_name(label)
        if lead is None or lead in mapping.values():
            unmapped.append(label)
        else:
            mapping[label] = lead
    have = set(mapping.values())
    return LeadMap(mapping, tuple(unmapped), tuple(lead for lead in STANDARD_12_LEADS if lead not in have))


def edf_labels(path: Path) -> list[str]:
    """Signal labels of an EDF/BDF header (256 + 16 x n bytes read); empty when the header is not EDF-like."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            n = int(head[252:256].decode("ascii").strip())
            if not 0 < n <= 1024:
                return []
            raw = fh.read(16 * n)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return [raw[i * 16:(i + 1) * 16].decode("latin-1").strip() for i in range(len(raw) // 16)]


def looks_like_ecg(labels: Sequence[str]) -> bool:
    """True when at least :data:`MIN_EDF_LEADS` labels are ECG leads and none is a 10-20 electrode."""
    if any(standard_channel_name(label) for label in labels):
        return False
    return len(map_leads(labels).present) >= MIN_EDF_LEADS
