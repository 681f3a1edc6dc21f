"""The risk range, the conformal class set and the abstain rule of a trained model, all per patient.

Range (``risk_low``/``risk_high``): the Venn-Abers multiprobability range ``[p0, p1]`` of the
calibration fitted on cross-fitted (out-of-fold) scores of every training patient; for a patient
with an imputed modality, the union of that range over Monte-Carlo redraws of the imputed
embeddings (each from its estimate plus Gaussian noise of its reported uncertainty); with an
ensemble (``TrainConfig.ensemble``), the members' risks are included too. It says how far the
calibrated risk can move with the calibration data and the imputation; it is *not* a confidence
interval for the best possible risk (the model's own error is not identifiable from labels).

Class set: label-conditional (Mondrian) split-conformal prediction at ``interval_level``: a class
is in the set when the patient's calibrated risk is at least as typical of that class as a
``1 - level`` share of the training patients of that class (their out-of-fold risks). Under
exchangeability the set contains the true class with probability >= ``level`` for each class;
that is the stated, measured coverage ("NN % nominal").

Abstain: a patient is not given a class when no modality was available, when the imputed
modalities flip the class or carry most of the contribution, when the conformal set holds both
classes (the data cannot tell them apart at the stated level), when it holds none, or when its
one class disagrees with the thresholded risk; the reason says which. Every random draw is seeded
by the patient's own id, so nothing depends on the batch a patient arrives in.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np


def level_text(level: float) -> str:
    """The one wording of the set/range level: "90 % nominal" (dashboard, report, pyfunc, docs)."""
    return f"{level * 100:.0f} % nominal"


def patient_rng(seed: int, patient_id: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the patient (not on its row in a batch)."""
    return np.random.default_rng([int(seed), int(hashlib.sha256(str(patient_id).encode()).hexdigest()[:12], 16)])


def imputation_draws(patient_ids: Sequence[str], rows: np.ndarray, embeddings: dict[str, np.ndarray],
                     uncertainty: np.ndarray, modalities: Sequence[str], n_mc: int,
                     seed: int) -> dict[str, np.ndarray]:
    """``{modality: (n_mc * len(rows), dim)}`` redrawn embeddings, draw-major, patient-seeded noise."""
    out = {m: np.zeros((n_mc, len(rows), embeddings[m].shape[1]), np.float32) for m in modalities}
    for r, row in enumerate(rows):
        rng = patient_rng(seed, patient_ids[row])
        for j, m in enumerate(modalities):
            x = embeddings[m][row]
            sd = float(np.nan_to_num(uncertainty[row, j]))
            out[m][:, r] = x + sd * rng.standard_normal((n_mc, x.shape[0]))
    return {m: v.reshape(n_mc * len(rows), -1) for m, v in out.items()}


def risk_range(bounds: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], risk: np.ndarray,
               logit_samples: np.ndarray, member_risks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per patient: the union of the Venn-Abers ranges of ``logit_samples`` (S, N), widened to
    contain the point risk and any ensemble member's risk (``member_risks`` (K, N))."""
    lows, highs = bounds(np.asarray(logit_samples, float))
    low, high = np.minimum(lows.min(axis=0), risk), np.maximum(highs.max(axis=0), risk)
    if member_risks is not None and len(member_risks):
        low, high = np.minimum(low, np.min(member_risks, axis=0)), np.maximum(high, np.max(member_risks, axis=0))
    return low, high


class ConformalSets:
    """Label-conditional split-conformal class sets over calibrated risks.

    ``fit(risk, labels)`` keeps the sorted out-of-fold calibrated risks of each class; ``sets(risk, level)``
    gives ``(negative in set, positive in set)``. Nonconformity of "positive" is ``-risk``, of "negative"
    ``risk``; the p-value counts the class's calibration patients at least as nonconforming, plus one.
    """

    def fit(self, risk: np.ndarray, labels: np.ndarray) -> "ConformalSets":
        r, y = np.asarray(risk, float), np.asarray(labels).astype(int)
        # A class without calibration patients (an inner fold of a small cohort) has p-value 1 for everyone:
        # nothing can rule it out, so it is in every set and those patients abstain rather than the run failing.
        self.negatives_, self.positives_ = np.sort(r[y == 0]), np.sort(r[y == 1])
        return self

    def p_values(self, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p of "negative", p of "positive") per patient."""
        r = np.asarray(risk, float)
        neg, pos = self.negatives_, self.positives_
        p_neg = (len(neg) - np.searchsorted(neg, r, side="left") + 1) / (len(neg) + 1)  # negatives with risk >= r
        p_pos = (np.searchsorted(pos, r, side="right") + 1) / (len(pos) + 1)  # positives with risk <= r
        return p_neg, p_pos

    def sets(self, risk: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        p_neg, p_pos = self.p_values(risk)
        return p_neg > 1 - level, p_pos > 1 - level

    def to_dict(self) -> dict:
        return {"negatives": self.negatives_.tolist(), "positives": self.positives_.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "ConformalSets":
        out = cls()
        out.negatives_, out.positives_ = np.asarray(data["negatives"], float), np.asarray(data["positives"], float)
        return out


def set_label(has_negative: bool, has_positive: bool) -> str:
    """The conformal set in words, as the report and the abstain reason print it."""
    return {(True, True): "{negative, positive}", (True, False): "{negative}", (False, True): "{positive}",
            (False, False): "{}"}[(bool(has_negative), bool(has_positive))]


def abstain_decisions(*, risk: np.ndarray, in_set: tuple[np.ndarray, np.ndarray], present: np.ndarray,
                      imputed: np.ndarray, contrib: np.ndarray, no_imputed_risk: np.ndarray,
                      modalities: Sequence[str], threshold: float, share: float,
                      level: float) -> tuple[np.ndarray, list[str]]:
    """(abstain flags, reasons): the first rule that applies to each patient, in the order of the docstring."""
    n = len(risk)
    abstain, reasons = np.zeros(n, bool), [""] * n
    c = np.nan_to_num(contrib)
    cls = risk >= threshold
    has_neg, has_pos = in_set
    for i in range(n):
        reason = ""
        if not present[i].any():
            reason = "no modality available: prediction from covariates only"
        elif imputed[i].any():
            total = np.abs(c[i]).sum()
            frac = abs(c[i][imputed[i]].sum()) / total if total > 0 else 0.0
            names = ", ".join(m for m, f in zip(modalities, imputed[i]) if f)
            if (no_imputed_risk[i] >= threshold) != cls[i]:
                reason = f"class flips when imputed modalities ({names}) are removed"
            elif frac > share:
                reason = f"imputed modalities ({names}) carry {frac:.0%} of the contribution (> {share:.0%})"
        label = set_label(has_neg[i], has_pos[i])
        if not reason and has_neg[i] and has_pos[i]:
            reason = f"uncertain: the {level_text(level)} conformal set is {label} (both classes)"
        if not reason and not (has_neg[i] or has_pos[i]):
            reason = f"atypical: the {level_text(level)} conformal set is empty"
        if not reason and bool(has_pos[i]) != bool(cls[i]):
            reason = (f"the {level_text(level)} conformal set {label} disagrees with risk {risk[i]:.1%} "
                      f"at threshold {threshold:.0%}")
        abstain[i], reasons[i] = bool(reason), reason
    return abstain, reasons
