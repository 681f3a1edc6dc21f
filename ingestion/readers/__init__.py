"""Readers, one per modality (CT series, radiograph, EEG, notes), and the DICOM plumbing they share."""
