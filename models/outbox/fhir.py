"""A FHIR RiskAssessment per patient, one transaction Bundle per batch (fhir.resources, R4 line).

``fhir.resources`` 8 ships FHIR R5 by default; the R4 line is its ``R4B``
package (4.3), whose RiskAssessment is R4's. Every resource is built as a
plain dict, then validated by parsing it with the model class, and the whole
bundle is parsed back before it is written: an invalid bundle never reaches
the outbox. Entries are ``PUT RiskAssessment/<id>`` with an id derived from
the result, so posting the same bundle twice leaves one resource per result.
The subject is ``Patient/<pseudonym>``: no PHI.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.riskassessment import RiskAssessment

from models.outbox.result import PatientResult

SYSTEM = "https://clinfuse.invalid/fhir"
"""Base of clinfuse's own code systems and extension URLs (a reserved, never-resolving host)."""
DICOM_UID_SYSTEM = "urn:dicom:uid"
FHIR_JSON = "application/fhir+json"


def resource_id(result: PatientResult) -> str:
    """The RiskAssessment's id (FHIR ids: 64 characters at most, letters, digits, '-' and '.')."""
    return f"clinfuse-{result.key[:40]}"


def _extension(name: str, **value: Any) -> dict[str, Any]:
    return {"url": f"{SYSTEM}/StructureDefinition/{name}", **value}


def risk_assessment(result: PatientResult) -> dict[str, Any]:
    """The RiskAssessment of one result, as a dict validated by ``fhir.resources``."""
    prediction: dict[str, Any] = {
        "outcome": {"text": "diagnosis predicted by the fusion model"},
        "probabilityDecimal": round(float(result.risk), 6),
        "qualitativeRisk": {"coding": [{"system": f"{SYSTEM}/CodeSystem/outcome", "code": result.outcome,
                                        "display": result.outcome}], "text": result.outcome},
        "extension": [_extension("risk-interval", valueRange={"low": {"value": round(float(result.risk_low), 6)},
                                                              "high": {"value": round(float(result.risk_high), 6)}})],
    }
    if result.outcome == "abstained" and result.abstain_reason:
        prediction["rationale"] = f"abstained: {result.abstain_reason}"[:1000]
    extensions = [_extension(f"contribution-{m}", valueDecimal=round(float(v), 6)) for m, v in result.contributions.items()]
    extensions += [_extension(f"availability-{m}", valueCode=state) for m, state in result.mask.items()]
    studies = sorted({ref.study_uid for ref in result.references})
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment", "id": resource_id(result), "status": "final",
        "subject": {"reference": f"Patient/{result.patient_id}"},
        "occurrenceDateTime": result.predicted_at.isoformat(timespec="seconds"),
        "method": {"coding": [{"system": f"{SYSTEM}/CodeSystem/model", "code": result.model_name,
                               "version": result.model_version}],
                   "text": f"{result.model_name} v{result.model_version} (run {result.run_id})"},
        "prediction": [prediction],
        "extension": extensions,
    }
    if studies:
        resource["basis"] = [{"type": "ImagingStudy", "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{uid}"}}
                             for uid in studies]
    RiskAssessment.model_validate(resource)
    return resource


def bundle_id(results: Sequence[PatientResult]) -> str:
    """A batch bundle's id: a hash of its results' keys (same results, same bundle)."""
    return "clinfuse-" + hashlib.sha256("".join(sorted(r.key for r in results)).encode()).hexdigest()[:40]


def build_bundle(results: Sequence[PatientResult]) -> dict[str, Any]:
    """A transaction Bundle with one ``PUT`` RiskAssessment entry per result, validated."""
    entries = []
    for result in results:
        resource = risk_assessment(result)
        entries.append({"fullUrl": f"urn:uuid:{_uuid(resource['id'])}", "resource": resource,
                        "request": {"method": "PUT", "url": f"RiskAssessment/{resource['id']}"}})
    bundle = {"resourceType": "Bundle", "id": bundle_id(results), "type": "transaction", "entry": entries}
    validate_bundle(json.dumps(bundle))
    return bundle


def _uuid(text: str) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def validate_bundle(text: str | bytes) -> Bundle:
    """Parse a bundle's JSON with ``fhir.resources`` (raises ``pydantic.ValidationError`` when invalid)."""
    bundle = Bundle.model_validate_json(text)
    for entry in bundle.entry or []:
        if entry.resource is None or entry.resource.get_resource_type() != "RiskAssessment":
            raise ValueError("a clinfuse bundle holds RiskAssessment entries only")
    return bundle
