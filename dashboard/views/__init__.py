"""Per-modality viewers and the prediction panel of the patient page."""
