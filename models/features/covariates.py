"""Covariates from the cohort table, and their standardisation fitted on training patients only.

Why this module exists: a patient's score must depend on that patient alone. The
covariates therefore travel *raw* (units as in ``cohort.csv``; unknown = NaN)
from :func:`covariate_matrix` to the saved model, and the model's own
:class:`CovariateScaler` (fitted once, on training patients, saved with the
model) turns them into z-scores. Scoring a patient alone, in any batch, or in a
shuffled batch gives the same numbers.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

COVARIATE_COLUMNS: tuple[str, ...] = ("age", "sex", "crp", "wbc", "lactate")
SEX_CODES = {"M": 1.0, "F": 0.0}


def covariate_matrix(frame: pd.DataFrame, columns: Sequence[str] = COVARIATE_COLUMNS) -> np.ndarray:
    """(N, len(columns)) float64 of raw values; ``sex`` M=1/F=0; absent column or unknown value = NaN.

    Every column is always present, in ``columns`` order, so the width never depends
    on which values a batch happens to contain.
    """
    out = np.full((len(frame), len(columns)), np.nan)
    for j, c in enumerate(columns):
        if c not in frame.columns:
            continue
        s = frame[c]
        if c == "sex" and not pd.api.types.is_numeric_dtype(s):
            s = s.astype("string").str.strip().str.upper().str[0].map(SEX_CODES)
        out[:, j] = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    return out


class CovariateScaler(BaseEstimator):
    """z-score per column with the training patients' mean and sd; unknown values become 0 (the mean).

    A column with no known value in training gets mean 0, sd 1 (so it is 0 for everyone).
    """

    def fit(self, covariates: np.ndarray) -> "CovariateScaler":
        x = np.asarray(covariates, float)
        known = np.isfinite(x)
        counts = known.sum(0)
        with np.errstate(invalid="ignore"):
            mean = np.where(counts > 0, np.nansum(np.where(known, x, 0), 0) / np.maximum(counts, 1), 0.0)
            var = np.where(counts > 0, np.nansum(np.where(known, (x - mean) ** 2, 0), 0) / np.maximum(counts, 1), 1.0)
        sd = np.sqrt(var)
        self.mean_ = mean.astype(np.float64)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float64)
        return self

    def transform(self, covariates: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise RuntimeError("CovariateScaler is not fitted: call fit(training covariates) first")
        x = np.asarray(covariates, float)
        if x.shape[1] != len(self.mean_):
            raise ValueError(f"{x.shape[1]} covariate columns, the scaler was fitted on {len(self.mean_)}")
        return np.nan_to_num((x - self.mean_) / self.scale_, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": [float(v) for v in self.mean_], "scale": [float(v) for v in self.scale_]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CovariateScaler":
        out = cls()
        out.mean_ = np.asarray(data["mean"], float)
        out.scale_ = np.asarray(data["scale"], float)
        return out
