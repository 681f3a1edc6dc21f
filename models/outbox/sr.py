"""A DICOM Comprehensive SR per patient (highdicom): the risk, its interval, the class or abstention,
per-modality contributions and the model, referencing the de-identified source images.

A PACS viewer shows it in the patient's study (the first referenced study; a
patient without CT or X-ray gets a study of its own, with a UID derived from
the pseudonym). The document's concepts use a private coding scheme
(``99CLINFUSE``) except where DICOM has a code (algorithm name and version,
source image). Patient ID and Patient's Name are the pseudonym: no PHI.
"""

from __future__ import annotations

import io

import highdicom as hd
from pydicom.dataset import Dataset

from ingestion.deid.uids import ImageRef
from models.outbox.result import PatientResult, hashed_uid

SCHEME = "99CLINFUSE"
MANUFACTURER = "clinfuse"
TITLE = hd.sr.CodedConcept("CLF-RISK-REPORT", SCHEME, "Multimodal risk assessment")
RISK = hd.sr.CodedConcept("CLF-RISK", SCHEME, "Risk")
RISK_LOW = hd.sr.CodedConcept("CLF-RISK-LOW", SCHEME, "Risk interval lower bound")
RISK_HIGH = hd.sr.CodedConcept("CLF-RISK-HIGH", SCHEME, "Risk interval upper bound")
OUTCOME = hd.sr.CodedConcept("CLF-OUTCOME", SCHEME, "Predicted class")
ABSTAIN_REASON = hd.sr.CodedConcept("CLF-ABSTAIN", SCHEME, "Abstention reason")
ALGORITHM_NAME = hd.sr.CodedConcept("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = hd.sr.CodedConcept("111003", "DCM", "Algorithm Version")
SOURCE_IMAGE = hd.sr.CodedConcept("260753009", "SCT", "Source")
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
OUTCOMES = {name: hd.sr.CodedConcept(f"CLF-{name.upper()}", SCHEME, name)
            for name in ("positive", "negative", "abstained")}


def contribution_concept(modality: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(f"CLF-CONTRIB-{modality.upper()}", SCHEME, f"Contribution of {modality}")


def availability_concept(modality: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(f"CLF-AVAIL-{modality.upper()}", SCHEME, f"Availability of {modality}")


def sr_uids(result: PatientResult) -> tuple[str, str]:
    """(Series, SOP Instance) UIDs of the result's SR: one series per patient and model, one instance per result."""
    series = hashed_uid("clinfuse-sr-series", result.patient_id, result.model_name, result.model_version)
    return series, hashed_uid("clinfuse-sr", result.key)


def _evidence(result: PatientResult) -> list[Dataset]:
    """Minimal datasets standing for the referenced images (highdicom reads patient, study and UIDs from them)."""
    refs = list(result.references) or [ImageRef(result.patient_id, hashed_uid("clinfuse-study", result.patient_id),
                                                "", "", COMPREHENSIVE_SR, "SR")]
    out = []
    for ref in refs:
        ds = Dataset()
        ds.PatientID, ds.PatientName = result.patient_id, f"{result.patient_id}^"  # a one-component name
        ds.PatientBirthDate = ds.PatientSex = ""
        ds.StudyInstanceUID, ds.AccessionNumber, ds.StudyID = ref.study_uid, "", ""
        ds.StudyDate = ds.StudyTime = ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID = ref.series_uid, ref.sop_uid, ref.sop_class_uid
        ds.Modality = ref.modality
        out.append(ds)
    return out


def _content(result: PatientResult) -> hd.sr.ContainerContentItem:
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[hd.sr.ContentItem] = [
        hd.sr.TextContentItem(ALGORITHM_NAME, result.model_name, relationship_type=contains),
        hd.sr.TextContentItem(ALGORITHM_VERSION, result.model_version, relationship_type=contains),
        hd.sr.NumContentItem(RISK, result.risk, NO_UNITS, relationship_type=contains),
        hd.sr.NumContentItem(RISK_LOW, result.risk_low, NO_UNITS, relationship_type=contains),
        hd.sr.NumContentItem(RISK_HIGH, result.risk_high, NO_UNITS, relationship_type=contains),
        hd.sr.CodeContentItem(OUTCOME, OUTCOMES[result.outcome], relationship_type=contains),
    ]
    if result.outcome == "abstained" and result.abstain_reason:
        items.append(hd.sr.TextContentItem(ABSTAIN_REASON, result.abstain_reason[:1024], relationship_type=contains))
    for modality, value in result.contributions.items():
        items.append(hd.sr.NumContentItem(contribution_concept(modality), value, NO_UNITS, relationship_type=contains))
    for modality, state in result.mask.items():
        items.append(hd.sr.TextContentItem(availability_concept(modality), state, relationship_type=contains))
    for ref in result.references:
        items.append(hd.sr.ImageContentItem(SOURCE_IMAGE, ref.sop_class_uid, ref.sop_uid, relationship_type=contains))
    root = hd.sr.ContainerContentItem(TITLE)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def build_sr(result: PatientResult) -> hd.sr.ComprehensiveSR:
    """The patient's Comprehensive SR; same result, same Series and SOP Instance UIDs."""
    series_uid, sop_uid = sr_uids(result)
    sr = hd.sr.ComprehensiveSR(
        evidence=_evidence(result), content=_content(result), series_instance_uid=series_uid, series_number=9901,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        record_evidence=bool(result.references), series_description=f"clinfuse risk ({result.model_name})")
    if not result.references:  # the stand-in evidence only placed the SR in the patient's own study
        for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
            if keyword in sr:
                delattr(sr, keyword)
    when = result.predicted_at
    sr.ContentDate, sr.ContentTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    return sr


def sr_bytes(result: PatientResult) -> bytes:
    """The SR as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    build_sr(result).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read_risk(ds: Dataset) -> dict[str, object]:
    """Risk, interval, class and algorithm read back from an SR written by :func:`build_sr` (for checks and tools)."""
    found: dict[str, object] = {}
    for item in ds.ContentSequence:
        concept = item.ConceptNameCodeSequence[0]
        code = concept.get("CodeValue") or concept.get("LongCodeValue")
        if item.ValueType == "NUM":
            found[code] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "TEXT":
            found[code] = str(item.TextValue)
        elif item.ValueType == "CODE":
            found[code] = str(item.ConceptCodeSequence[0].CodeMeaning)
    return {"risk": found.get(RISK.value), "risk_low": found.get(RISK_LOW.value),
            "risk_high": found.get(RISK_HIGH.value), "outcome": found.get(OUTCOME.value),
            "model_name": found.get(ALGORITHM_NAME.value), "model_version": found.get(ALGORITHM_VERSION.value)}
