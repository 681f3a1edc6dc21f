"""Which modalities each patient has (the availability mask), and how files and cohort table join.

The mask is first-class data (see docs/CONTRACTS.md): models take it as input
and later mark modalities ``imputed``. Here it is built from the manifest's
latest ``ok`` version of every source item.

Patients found in files but absent from the cohort table keep their items
``ok`` in the manifest (their data is fine; the table may be late) but are
not in the mask, which is indexed by the cohort; :func:`cohort_join` names
them, and the cohort patients without any file, so neither is lost silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ingestion.manifest import latest_per_source
from ingestion.modalities import MODALITIES

PRESENT, MISSING, IMPUTED = "present", "missing", "imputed"


def _present_pairs(manifest: pd.DataFrame) -> pd.DataFrame:
    latest = latest_per_source(manifest)
    ok = latest[(latest["status"] == "ok") & latest["patient_id"].notna() & latest["modality"].isin(MODALITIES)]
    return ok[["patient_id", "modality"]].drop_duplicates()


def availability_mask(manifest: pd.DataFrame, cohort: pd.DataFrame | None = None) -> pd.DataFrame:
    """Index ``patient_id``, one column per modality (``MODALITIES`` order), values ``present``/``missing``.

    Rows are the cohort's patients in cohort order; without a cohort (or an
    empty one), every patient with an ``ok`` item, sorted.
    """
    pairs = _present_pairs(manifest)
    if cohort is not None and not cohort.empty:
        patients = pd.Index(cohort["patient_id"].astype(str), name="patient_id")
    else:
        patients = pd.Index(sorted(pairs["patient_id"].unique()), name="patient_id", dtype=object)
    mask = pd.DataFrame(MISSING, index=patients, columns=list(MODALITIES))
    for modality in MODALITIES:
        have = set(pairs.loc[pairs["modality"] == modality, "patient_id"])
        mask.loc[mask.index.isin(have), modality] = PRESENT
    mask.columns.name = None
    return mask


@dataclass(frozen=True)
class CohortJoin:
    """How the patients found in files meet the cohort table (pseudonyms only)."""

    n_cohort: int
    n_with_files: int
    in_files_not_in_cohort: tuple[str, ...]
    in_cohort_without_files: tuple[str, ...]
    complete: int
    """Cohort patients with every modality present."""


def cohort_join(manifest: pd.DataFrame, cohort: pd.DataFrame) -> CohortJoin:
    """Report patients present in files but not in the cohort, and cohort patients without any file."""
    with_files = set(_present_pairs(manifest)["patient_id"])
    in_cohort = list(cohort["patient_id"].astype(str))
    mask = availability_mask(manifest, cohort)
    return CohortJoin(
        n_cohort=len(in_cohort),
        n_with_files=len(with_files),
        in_files_not_in_cohort=tuple(sorted(with_files - set(in_cohort))),
        in_cohort_without_files=tuple(p for p in in_cohort if p not in with_files),
        complete=int((mask == PRESENT).all(axis=1).sum()) if len(mask) else 0,
    )
