"""Phantom cohort generator: a hospital-style export (DICOM, EDF, notes) whose right answer is known.

``generate_cohort`` writes files; ``sample_latents`` draws the latent model
alone (fast, for oracle and missingness studies without files).
"""

from ingestion.phantom.cohort import PhantomSummary, generate_cohort
from ingestion.phantom.signal_model import SignalModel, oracle_risk, sample_latents

__all__ = ["PhantomSummary", "SignalModel", "generate_cohort", "oracle_risk", "sample_latents"]
