"""De-identification: DICOM and note scrubbing, keyed pseudonyms, authorised re-identification."""
