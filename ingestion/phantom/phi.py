"""Fake identities planted in the phantom cohort's files, so de-identification can be tested.

Every string here is invented; names are drawn from lists of distinctive
surnames (six letters or more) so that a test looking for a leaked name does
not match an ordinary English word by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

FIRST_NAMES = {
    "F": ("Amelia", "Beatrix", "Cordelia", "Delphine", "Evangeline", "Florence", "Georgina", "Henrietta",
          "Isadora", "Josephine", "Katarina", "Leonora", "Marguerite", "Natalia", "Ottilie", "Philippa"),
    "M": ("Alistair", "Benedikt", "Cornelius", "Dmitri", "Evander", "Fitzgerald", "Gideon", "Horatio",
          "Ignatius", "Jeremiah", "Leopold", "Maximilian", "Nathaniel", "Octavius", "Percival", "Rupert"),
}
LAST_NAMES = (
    "Abernathy", "Blackwood", "Castellano", "Drummond", "Eastwick", "Fairbanks", "Gallagher", "Hawthorne",
    "Illingworth", "Jankowski", "Kowalczyk", "Lindqvist", "Montgomery", "Nakashima", "Okonkwo", "Pemberton",
    "Quintero", "Rasmussen", "Sutherland", "Thornbury", "Underhill", "Vasquez", "Whitmore", "Yamamoto",
)
STREETS = ("Maple Avenue", "Juniper Lane", "Harbor View Road", "Chestnut Street", "Willow Creek Drive",
           "Foxglove Court", "Larkspur Way", "Quarry Hill Road")
CITIES = (("Springfield", "IL", "62704"), ("Riverton", "WY", "82501"), ("Brookhaven", "GA", "30319"),
          ("Fairmont", "WV", "26554"), ("Lakewood", "CO", "80226"), ("Greenville", "SC", "29601"))
INSTITUTIONS = ("Saint Aldric General Hospital", "Northbrook University Medical Center",
                "Vale County Memorial Hospital", "Harborside Regional Clinic")
PHYSICIANS = (("Whitfield", "Eleanor"), ("Castellanos", "Miguel"), ("Oyelaran", "Adebayo"),
              ("Brennan", "Siobhan"), ("Halvorsen", "Ingrid"), ("Moreau", "Lucien"))


@dataclass(frozen=True)
class FakeIdentity:
    """One invented patient: who they are, where they live, and when they were seen."""

    mrn: str
    first_name: str
    last_name: str
    sex: str
    birth_date: date
    visit_date: date
    phone: str
    address: str
    institution: str
    physician_last: str
    physician_first: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def dicom_name(self) -> str:
        """DICOM person-name form ``LAST^FIRST``."""
        return f"{self.last_name}^{self.first_name}"

    @property
    def physician_dicom_name(self) -> str:
        return f"{self.physician_last}^{self.physician_first}"

    @property
    def physician_name(self) -> str:
        return f"Dr. {self.physician_first} {self.physician_last}"


def make_identity(rng: np.random.Generator, mrn: str, sex: str, age: int) -> FakeIdentity:
    """Draw a fake identity consistent with the cohort's ``age`` and ``sex`` at the visit."""
    visit = date(2019, 1, 1) + timedelta(days=int(rng.integers(0, 6 * 365)))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    had_birthday = (month, day) <= (visit.month, visit.day)  # keeps the age exact on the visit date
    birth = date(visit.year - age - (0 if had_birthday else 1), month, day)
    city, state, zip_code = CITIES[int(rng.integers(len(CITIES)))]
    doctor = PHYSICIANS[int(rng.integers(len(PHYSICIANS)))]
    return FakeIdentity(
        mrn=mrn,
        first_name=str(rng.choice(FIRST_NAMES[sex])),
        last_name=str(rng.choice(LAST_NAMES)),
        sex=sex,
        birth_date=birth,
        visit_date=visit,
        phone=f"({rng.integers(201, 990)}) 555-{rng.integers(0, 10000):04d}",
        address=f"{rng.integers(10, 9999)} {rng.choice(STREETS)}, {city}, {state} {zip_code}",
        institution=str(rng.choice(INSTITUTIONS)),
        physician_last=doctor[0],
        physician_first=doctor[1],
    )


def random_token(rng: np.random.Generator, n_bytes: int = 8) -> str:
    """A random hex token for file and folder names: carries no PHI, sorts in no meaningful order."""
    return rng.bytes(n_bytes).hex()


@dataclass(frozen=True)
class PlantedItem:
    """What one writer put on disk for one patient: the files and the PHI strings planted in them."""

    modality: str
    files: tuple[Path, ...]
    planted_phi: tuple[str, ...]
