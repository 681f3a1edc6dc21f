"""Calibration: Platt scaling (temperature + bias) of logits, expected calibration error, reliability curves.

Temperature scaling (Guo et al., 2017) divides logits by one scalar ``T``; it can
rescale over-confidence but cannot remove a constant shift of every logit (what a
class-weighted loss or a prevalence change produces). :class:`PlattScaler` fits
``sigmoid(z / T + b)`` (a temperature *and* a bias) by minimising the negative
log-likelihood on validation patients only. Both are monotone, so AUROC is untouched.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from sklearn.base import BaseEstimator


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _fit_inputs(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat float logits and labels, refused when empty or of different lengths (both scalers fit on these)."""
    z = np.asarray(logits, float).ravel()
    y = np.asarray(labels, float).ravel()
    if len(z) != len(y) or len(z) == 0:
        raise ValueError("logits and labels must be non-empty and the same length")
    return z, y


class TemperatureScaler(BaseEstimator):
    """``fit(logits, labels)`` learns ``temperature_``; ``transform(logits)`` returns calibrated probabilities."""

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)) -> None:
        self.bounds = bounds

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "TemperatureScaler":
        z, y = _fit_inputs(logits, labels)

        def nll(log_t: float) -> float:
            p = np.clip(_sigmoid(z / np.exp(log_t)), 1e-12, 1 - 1e-12)
            return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

        res = minimize_scalar(nll, bounds=tuple(np.log(self.bounds)), method="bounded")
        self.temperature_ = float(np.exp(res.x))
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        if not hasattr(self, "temperature_"):
            raise RuntimeError("TemperatureScaler is not fitted: call fit(logits, labels) first")
        return _sigmoid(np.asarray(logits, float) / self.temperature_)

    def fit_transform(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.fit(logits, labels).transform(logits)


class PlattScaler(BaseEstimator):
    """``fit(logits, labels)`` learns ``temperature_`` and ``bias_``; ``transform`` gives ``sigmoid(z/T + b)``.

    A weak Gaussian prior on ``log T`` and ``b`` (``prior_sd``) keeps the fit finite
    when the validation split is small or separable.
    """

    def __init__(self, prior_sd: float = 10.0) -> None:
        self.prior_sd = prior_sd

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "PlattScaler":
        z, y = _fit_inputs(logits, labels)

        def nll(theta: np.ndarray) -> float:
            a = z / np.exp(theta[0]) + theta[1]
            # log(1 + e^a) - y a, computed stably; plus the prior
            return float(np.mean(np.logaddexp(0.0, a) - y * a) + (theta ** 2).sum() / (2 * self.prior_sd ** 2 * len(z)))

        res = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 2000})
        self.temperature_ = float(np.exp(res.x[0]))
        self.bias_ = float(res.x[1])
        return self

    def logit(self, logits: np.ndarray) -> np.ndarray:
        if not hasattr(self, "temperature_"):
            raise RuntimeError("PlattScaler is not fitted: call fit(logits, labels) first")
        return np.asarray(logits, float) / self.temperature_ + self.bias_

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logit(logits))

    def to_dict(self) -> dict:
        return {"kind": "platt", "temperature": self.temperature_, "bias": self.bias_}

    @classmethod
    def from_dict(cls, data: dict) -> "PlattScaler":
        out = cls()
        out.temperature_, out.bias_ = float(data["temperature"]), float(data.get("bias", 0.0))
        return out


def reliability_curve(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10):
    """Equal-width bins: (mean predicted, observed frequency, count) per non-empty bin."""
    y, p = np.asarray(labels, float), np.asarray(probs, float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf = np.bincount(bins, p, n_bins)
    freq = np.bincount(bins, y, n_bins)
    keep = count > 0
    return conf[keep] / count[keep], freq[keep] / count[keep], count[keep]


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """Count-weighted mean |observed - predicted| over equal-width probability bins."""
    conf, freq, count = reliability_curve(labels, probs, n_bins)
    return float((count * np.abs(freq - conf)).sum() / count.sum())
