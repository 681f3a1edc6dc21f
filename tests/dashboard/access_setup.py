"""A fixture home with named users, a re-identification key and its encrypted map (for role tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.access.reviews import access_db
from flows.access.users import UserStore
from ingestion.deid.pseudonym import pseudonymise
from ingestion.deid.reidentify import add_to_map, generate_key
from tests.dashboard.fixtures import SECRET, FixtureHome, build_home

PASSWORDS = {"c.clinician": "clinician-pass-1", "a.analyst": "analyst-pass-22", "d.admin": "admin-pass-333"}
ROLES = {"c.clinician": "clinician", "a.analyst": "analyst", "d.admin": "admin"}


@dataclass(frozen=True)
class AccessHome:
    fixture: FixtureHome
    key: bytes
    mrns: dict[str, str]  # pseudonym -> original id written into the encrypted map


def build_access_home(home: Path, n_patients: int = 8) -> AccessHome:
    """``build_home`` plus one user per role and the pseudonym -> MRN map the fixture's ids came from."""
    fh = build_home(home, n_patients=n_patients)
    mrns = {pseudonymise(f"MRN{100000 + i:08d}", SECRET): f"MRN{100000 + i:08d}" for i in range(n_patients)}
    assert set(mrns) == set(fh.patient_ids)
    key = generate_key()
    add_to_map(home / "reidentify.fernet", mrns.items(), key)
    store = UserStore(access_db(home / "access"))
    for name, password in PASSWORDS.items():
        store.add(name, ROLES[name], password)
    return AccessHome(fh, key, mrns)
