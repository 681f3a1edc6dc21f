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


class IdentityCalibrator(BaseEstimator):
    """``sigmoid(logit)`` unchanged: kept when no fitted map beats it on the cross-fitted folds."""

    temperature_ = 1.0  # the identity is temperature 1, bias 0 (read by the stage summary and the report)
    bias_ = 0.0

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "IdentityCalibrator":
        _fit_inputs(logits, labels)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(np.asarray(logits, float))

    def to_dict(self) -> dict:
        return {"kind": "identity"}


class VennAbersCalibrator(BaseEstimator):
    """Inductive Venn-Abers (Vovk & Petej, 2014): isotonic regression on the calibration scores with the new
    patient's score added once as a negative (``p0``) and once as a positive (``p1``).

    ``[p0, p1]`` is the multiprobability prediction: it contains a calibrated probability whenever the
    calibration and new patients are exchangeable, and its width shrinks as ~1/n. The point risk merges the
    two as ``p1 / (1 - p0 + p1)`` (minimises the worst-case log loss). Both are step functions of the score
    that change only at calibration scores, so ``fit`` evaluates them once between every pair of adjacent
    (at most ``max_grid``) calibration scores and ``transform`` is a lookup: a patient's value depends on
    its own score alone.
    """

    temperature_ = float("nan")  # not a temperature map: the stage summary reads NaN
    bias_ = float("nan")

    def __init__(self, max_grid: int = 500) -> None:
        self.max_grid = max_grid

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "VennAbersCalibrator":
        from sklearn.isotonic import isotonic_regression

        z, y = _fit_inputs(logits, labels)
        order = np.argsort(z, kind="mergesort")
        zs, ys = z[order], y[order]
        knots = np.unique(z)
        if len(knots) > self.max_grid:
            knots = np.unique(np.quantile(z, np.linspace(0, 1, self.max_grid)))
        mids = np.r_[knots[0] - 1.0, (knots[1:] + knots[:-1]) / 2, knots[-1] + 1.0]
        p0, p1 = np.empty(len(mids)), np.empty(len(mids))
        for i, s in enumerate(mids):  # PAVA on the scores in order with the new patient inserted at its rank
            at = int(np.searchsorted(zs, s))
            p0[i] = isotonic_regression(np.insert(ys, at, 0.0), y_min=0.0, y_max=1.0)[at]
            p1[i] = isotonic_regression(np.insert(ys, at, 1.0), y_min=0.0, y_max=1.0)[at]
        self.knots_, self.p0_, self.p1_ = knots, p0, p1
        return self

    def bounds(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p0, p1)`` per score: the Venn-Abers multiprobability range."""
        if not hasattr(self, "knots_"):
            raise RuntimeError("VennAbersCalibrator is not fitted: call fit(logits, labels) first")
        z = np.asarray(logits, float)
        cell = np.searchsorted(self.knots_, z, side="left")  # between knots[cell-1] and knots[cell]
        return self.p0_[cell], self.p1_[cell]

    def transform(self, logits: np.ndarray) -> np.ndarray:
        p0, p1 = self.bounds(logits)
        return p1 / (1.0 - p0 + p1)

    def to_dict(self) -> dict:
        return {"kind": "venn_abers", "knots": self.knots_.tolist(), "p0": self.p0_.tolist(),
                "p1": self.p1_.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "VennAbersCalibrator":
        out = cls()
        out.knots_, out.p0_, out.p1_ = (np.asarray(data[k], float) for k in ("knots", "p0", "p1"))
        return out


CALIBRATORS = {"identity": IdentityCalibrator, "platt": PlattScaler, "temperature": TemperatureScaler,
               "venn_abers": VennAbersCalibrator}


def calibrator_from_dict(data: dict):
    """A saved calibrator of any kind (``to_dict`` output); a bare temperature is a TemperatureScaler."""
    kind = data.get("kind", "temperature")
    if kind == "platt":
        return PlattScaler.from_dict(data)
    if kind == "venn_abers":
        return VennAbersCalibrator.from_dict(data)
    if kind == "identity":
        return IdentityCalibrator()
    out = TemperatureScaler()
    out.temperature_ = float(data["temperature"])
    return out


def calibrator_to_dict(cal) -> dict:
    return cal.to_dict() if hasattr(cal, "to_dict") else {"kind": "temperature", "temperature": cal.temperature_}


def cross_calibrated(kind: str, logits: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each fold's risks from a ``kind`` calibrator fitted on the other folds (honest out-of-fold calibration)."""
    z, y = np.asarray(logits, float), np.asarray(labels, float)
    out = np.empty(len(z))
    for f in np.unique(folds):
        rest = folds != f
        out[~rest] = CALIBRATORS[kind]().fit(z[rest], y[rest]).transform(z[~rest])
    return out


CALIBRATION_BOOT = 200
"""Patient bootstrap resamples of the cross-fitted folds that test a calibrator's ECE gain over none."""
CALIBRATION_ALPHA = 0.05
"""A fitted map is kept only when the one-sided (1 - alpha) upper bound of its paired ECE change is below 0."""


def paired_ece_change(labels: np.ndarray, risk: np.ndarray, reference: np.ndarray, n_boot: int, seed: int,
                      n_bins: int = 10) -> np.ndarray:
    """``n_boot`` patient-bootstrap draws of ``ECE(risk) - ECE(reference)`` on the same resampled patients."""
    y, r, ref = np.asarray(labels), np.asarray(risk, float), np.asarray(reference, float)
    rng = np.random.default_rng([int(seed), 24])
    out = np.empty(n_boot)
    for b in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        out[b] = expected_calibration_error(y[i], r[i], n_bins) - expected_calibration_error(y[i], ref[i], n_bins)
    return out


def choose_calibrator(logits: np.ndarray, labels: np.ndarray, folds: np.ndarray, preferred: str,
                      n_bins: int = 10, n_boot: int = CALIBRATION_BOOT, alpha: float | None = None,
                      seed: int = 0) -> tuple[object, dict, np.ndarray]:
    """``(calibrator fitted on all, record, out-of-fold calibrated risks)``: ``preferred`` or Venn-Abers only
    when it beats no calibration on the cross-fitted folds by more than its own bootstrap noise, else none.

    Why: picking the lowest of three cross-fitted ECEs on a few hundred patients picks noise (the winner's
    curse): on 166 patients whose scores are already calibrated, a fitted map had the lowest cross-fitted
    ECE on 4 of 6 draws (tests/models/test_abstain_uncertain.py), and a map kept for noise can make held-out
    ECE worse than none. A fitted map now has to earn its place: the one-sided ``1 - alpha`` upper bound of the
    patient-bootstrap ECE change against none (same resampled patients, :func:`paired_ece_change`) must be
    below zero; among the maps that pass, the lowest cross-fitted ECE is kept. So calibration is never kept
    when it is worse than none on the folds, and a gain within the folds' noise keeps none. The record (each
    candidate's ECE and bound, the choice and why) goes into the model's metrics and the report.
    ``alpha`` defaults to :data:`CALIBRATION_ALPHA` (read at call time); ``alpha >= 1`` drops the noise test,
    which is the previous rule (lowest cross-fitted ECE), kept for the before/after benchmark.
    """
    alpha = CALIBRATION_ALPHA if alpha is None else float(alpha)
    y = np.asarray(labels).astype(int)
    candidates = dict.fromkeys([preferred, "venn_abers", "identity"])
    risks = {k: cross_calibrated(k, logits, y, folds) for k in candidates}
    ece = {k: expected_calibration_error(y, r, n_bins) for k, r in risks.items()}
    bound = {k: float(np.quantile(paired_ece_change(y, risks[k], risks["identity"], n_boot, seed, n_bins),
                                  max(1 - alpha, 0.0)))
             for k in candidates if k != "identity"}
    passed = [k for k in bound if (alpha >= 1 or bound[k] < 0) and ece[k] < ece["identity"]]
    chosen = min(passed, key=lambda k: (ece[k], k)) if passed else "identity"
    if chosen == "identity":
        best = min(bound, key=lambda k: ece[k])
        why = (f"none kept: the best fitted map ({best}, cross-fitted ECE {ece[best]:.3f} vs {ece['identity']:.3f} "
               f"uncalibrated) does not beat no calibration beyond bootstrap noise (upper {1 - alpha:.0%} bound of "
               f"its ECE change {bound[best]:+.3f})")
    else:
        why = (f"{chosen} kept: cross-fitted ECE {ece[chosen]:.3f} vs {ece['identity']:.3f} uncalibrated, upper "
               f"{1 - alpha:.0%} bound of the ECE change {bound[chosen]:+.3f} < 0")
    record = {"chosen": chosen, "ece_cross_fitted": ece, "ece_change_upper": bound, "reason": why,
              "n_patients": int(len(y)), "folds": int(len(np.unique(folds))), "n_boot": int(n_boot),
              "alpha": float(alpha)}
    return CALIBRATORS[chosen]().fit(logits, y), record, risks[chosen]
