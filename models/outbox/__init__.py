"""Results back where clinicians look: a DICOM Comprehensive SR per patient for the PACS, a FHIR R4
RiskAssessment bundle per batch for the EHR, written into the home's outbox and sent from there."""
