"""The generated cohort's answers table: evaluation only, never a feature.

Why apart from ``models.features``: the answers (labels' oracles and latents) of a
phantom cohort must not reach anything a model is fitted on; only evaluation and
benchmarks read them, keyed by the same pseudonyms as the features.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_answers(path: Path, secret: str) -> pd.DataFrame:
    """The phantom's answers table keyed by pseudonym (its ids are original MRNs; evaluation only)."""
    from ingestion.deid.pseudonym import is_pseudonym, pseudonymise

    answers = pd.read_parquet(path)
    answers["patient_id"] = [p if is_pseudonym(p) else pseudonymise(str(p), secret) for p in answers["patient_id"]]
    return answers
