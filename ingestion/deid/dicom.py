"""De-identify DICOM datasets before anything derived from them is stored.

dicognito applies the PS3.15 basic confidentiality profile (names, ids, UIDs,
addresses, institutions, equipment); on top of it clinfuse pins the two things
that must agree with the other modalities of the same patient: the patient id
becomes the keyed pseudonym of :func:`ingestion.deid.pseudonym.pseudonymise`, and
every date moves back by the patient's :func:`date_shift_days`, so intervals
between a CT, an EEG and a note survive de-identification.
"""

from __future__ import annotations

import copy
from pathlib import Path

from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from dicognito.fixedvalueanonymizer import FixedValueAnonymizer
from pydicom.dataset import Dataset

from ingestion.deid.pseudonym import date_shift_days, pseudonymise
from ingestion.readers.dicom_source import read_dataset

__all__ = ["date_shift_days", "deidentify_dataset", "deidentify_file", "patient_anonymizer"]


def patient_anonymizer(original_id: str, secret: str) -> Anonymizer:
    """A dicognito anonymizer seeded by the site secret, with clinfuse's id and date rules first.

    Handlers added with ``add_element_handler`` run before dicognito's own,
    so they win for PatientID, PatientName, PatientBirthDate and dates.
    Seeding by the secret keeps replacement UIDs consistent across files, so
    a de-identified series still holds together.
    """
    pseudonym = pseudonymise(original_id, secret)
    anonymizer = Anonymizer(seed=secret)
    anonymizer.add_element_handler(DateTimeAnonymizer(-24 * date_shift_days(original_id, secret)))
    anonymizer.add_element_handler(FixedValueAnonymizer("PatientBirthDate", ""))
    anonymizer.add_element_handler(FixedValueAnonymizer("PatientName", pseudonym))
    anonymizer.add_element_handler(FixedValueAnonymizer("PatientID", pseudonym))
    return anonymizer


def deidentify_dataset(ds: Dataset, secret: str) -> Dataset:
    """A de-identified copy of ``ds``; the input is left untouched.

    PatientID and PatientName become the pseudonym, the birth date is
    emptied, every DA/DT moves back by the patient's shift, private tags are
    removed (the basic profile's default) and dicognito replaces the other
    identifying elements. PatientIdentityRemoved becomes YES only when
    BurnedInAnnotation is NO: text burned into pixels is not removed here.
    """
    original_id = str(ds.get("PatientID", "") or "")
    out = copy.deepcopy(ds)
    out.remove_private_tags()
    patient_anonymizer(original_id, secret).anonymize(out)
    return out


def deidentify_file(src: Path | str, dst: Path, secret: str) -> str:
    """Write a de-identified copy of the DICOM file ``src`` (zip members allowed) to ``dst``.

    For keeping an inspectable copy of a quarantined or ingested file without
    its PHI. Returns the pseudonymous patient id written into the copy.
    """
    ds = deidentify_dataset(read_dataset(src), secret)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=False)
    return str(ds.PatientID)
