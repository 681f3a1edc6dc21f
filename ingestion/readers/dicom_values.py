"""Values from DICOM headers, read cheaply and without PHI.

Reading a CT series is dominated by pydicom's per-element conversion, so the
few geometry and pixel-format numbers needed per slice are parsed from the raw
element bytes here (falling back to pydicom for anything unusual). The text
helpers keep dates as found (the driver shifts them) and strip the patient's
own identifiers from free text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue


def raw_numbers(ds: Dataset, keyword: str) -> list[float] | None:
    """Numbers of a DS/IS/US element straight from its raw bytes, or None to fall back to pydicom.

    pydicom converts each element through validated value classes, which is
    most of a slice's read time; the handful of geometry and pixel-format
    elements read here are simple enough to parse from bytes, and anything
    unusual (converted already, big-endian, other VR) goes the normal way.
    """
    elem = ds.get_item(tag_for_keyword(keyword))  # type: ignore[arg-type]
    if not isinstance(elem, RawDataElement) or not elem.value:
        return None
    vr = elem.VR or dictionary_VR(elem.tag)
    try:
        if vr in ("DS", "IS"):
            return [float(v) for v in elem.value.split(b"\\")]
        if vr == "US" and ds.original_encoding[1] and len(elem.value) % 2 == 0:
            return [float(v) for v in np.frombuffer(elem.value, "<u2")]
    except (TypeError, ValueError):
        return None
    return None


def raw_text(ds: Dataset, keyword: str) -> bytes:
    """An element's bytes, for equality and containment checks (PatientID, ImageType) without decoding."""
    elem = ds.get_item(tag_for_keyword(keyword))  # type: ignore[arg-type]
    if elem is None:
        return b""
    if isinstance(elem, RawDataElement):
        return (elem.value or b"").strip(b" \x00")
    value = elem.value
    if isinstance(value, (list, tuple, MultiValue)):
        value = "\\".join(str(v) for v in value)
    return str(value or "").strip().encode("utf-8", "replace")


def number(ds: Dataset, keyword: str, default: float) -> float:
    """One numeric element (Rows, BitsStored, RescaleSlope, ...) with a default when absent or empty."""
    values = raw_numbers(ds, keyword)
    if values:
        return values[0]
    value = ds.get(keyword)
    return default if value is None or value == "" else float(value)


def iso_date(ds: Dataset) -> str | None:
    """The first of Study/Series/Acquisition/Content date as ISO ``YYYY-MM-DD`` (unshifted), or None."""
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        value = str(ds.get(keyword, "") or "").strip()
        if re.fullmatch(r"\d{8}", value):
            return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return None


def first_number(value: Any) -> float | None:
    """The first value of a possibly multi-valued numeric element (e.g. WindowCenter), or None."""
    if value is None or value == "":
        return None
    try:
        return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def safe_description(ds: Dataset) -> str:
    """SeriesDescription without the patient's own name or id and without long digit runs.

    Technologists sometimes type names or MRNs into the description; what
    remains ("CHEST W/O CONTRAST") is what downstream users need.
    """
    text = str(ds.get("SeriesDescription", "") or "")
    banned = [str(ds.get("PatientID", "") or "")]
    name = ds.get("PatientName")
    if name:
        banned += [c for c in re.split(r"[\^ ]", str(name)) if len(c) >= 2]
    for token in filter(None, banned):
        text = re.sub(re.escape(token), "", text, flags=re.IGNORECASE)
    return re.sub(r"\d{4,}", "", text).strip()[:64]
