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

Abstain: a patient is not given a class when the evidence cannot say which side of the threshold its risk
is on, in the order the rules are checked (:data:`RULES`), among the rules the model's :class:`AbstainPolicy`
keeps:

1. no modality was available (the risk comes from covariates alone); always applied;
2. the imputed modalities decide: the class flips when they are removed (``imputed_flip``), or they carry
   more than ``abstain_share`` of the Shapley contribution (``imputed_share``);
3. atypical: the conformal set is empty (the risk is atypical of both classes' calibration patients);
   always applied;
4. uncertain calibration: the Venn-Abers range at the patient's own scores (``Spread.calibration_low`` /
   ``calibration_high``) straddles the threshold. The calibration data are consistent with a calibrated
   risk on either side, so they cannot say which class the patient is in. The range shrinks as the
   calibration data grow (width ~1/n), so with more patients only risks truly at the threshold abstain;
5. uncertain imputation: more than the policy's tolerance of the imputation redraws put the calibrated risk
   on the other side of the threshold. A share, not the extreme of the redraws: the union over draws
   (``risk_low`` / ``risk_high``, shown to the clinician) widens with every extra draw, so a rule on it would
   abstain more the more draws one took (20 when evaluating, 30 when predicting).

Rules 2, 4 and 5 must earn their place: ``train`` keeps one only when, on out-of-fold training patients, the
patients it flags have a higher Brier score than the rest beyond bootstrap noise, and fits rule 5's tolerance
the same way (:mod:`models.training.abstain_policy`). Measured before that (bench_calibration, simulator, 800
training patients): "imputed modalities decide" abstained on 45 of 600 held-out patients whose Brier score
(0.176) was that of the answered ones (0.170), and removing them left the AUROC unchanged (0.806). The
unfitted default (every rule, tolerance ``1 - level``) is what inner fits of a selection and older models use.

Why not "abstain when the conformal set holds both classes" (the previous rule): a Mondrian set at 90 %
holds both classes whenever the risk is typical of at least 10 % of each class's calibration patients,
which for any model of moderate AUROC is most patients (72 % of the demo's 47 held-out patients
abstained at AUROC 0.65, and the answered ones ranked worse, 0.57). That
measures where a risk sits among the two classes' score distributions, not whether the evidence about
this patient is uncertain. The set is still computed and reported ("90 % nominal", its coverage measured
against real labels); only its empty form is an abstain reason. A one-class set that differs from the
thresholded risk is not a reason either: class-conditional sets exclude a class when the risk is rare
*for that class*, which at an unequal prevalence is not the same as that class being improbable, while
the answer is the calibrated risk against the threshold. No rule has a rate it aims at; none was set
by looking at held-out patients. Every random draw is seeded by the patient's own id, so nothing depends
on the batch a patient arrives in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Spread:
    """Per patient: the shown range (``low``/``high``: union over redraws and members), the Venn-Abers range at
    the scores in hand (``calibration_low``/``calibration_high``) and the share of imputation redraws whose
    calibrated risk has the other class (0 for a patient with nothing imputed)."""

    low: np.ndarray
    high: np.ndarray
    calibration_low: np.ndarray
    calibration_high: np.ndarray
    redraw_flip: np.ndarray


def straddles(low: np.ndarray, high: np.ndarray, threshold: float) -> np.ndarray:
    """True where ``[low, high]`` holds risks on both sides of the threshold (a class is ``risk >= threshold``)."""
    return (np.asarray(low, float) < threshold) & (np.asarray(high, float) >= threshold)


RULES = ("no_modality", "imputed_flip", "imputed_share", "empty_set", "calibration_range", "redraws")
"""The abstain rules in the order they are checked (the docstring's 1-5; rule 2 is two rules here)."""
SAFETY_RULES = ("no_modality", "empty_set")
"""Always applied: no measured evidence at all, or a risk atypical of both classes. Not tested on the folds
(both are rare, so a test has no power, and neither is a statement about the risk being near a side)."""


@dataclass(frozen=True)
class AbstainPolicy:
    """Which rules a model applies and the redraw-flip tolerance, as fitted on out-of-fold training patients
    (:mod:`models.training.abstain_policy`). The default (every rule, tolerance ``1 - level``) is the unfitted
    rule: inner fits of a selection and models saved before the policy existed."""

    rules: tuple[str, ...] = RULES
    redraw_tolerance: float | None = None  # None: 1 - interval_level
    record: dict = field(default_factory=dict)

    def tolerance(self, level: float) -> float:
        return 1 - level if self.redraw_tolerance is None else float(self.redraw_tolerance)

    def to_dict(self) -> dict:
        return {"rules": list(self.rules), "redraw_tolerance": self.redraw_tolerance, "record": self.record}

    @classmethod
    def from_dict(cls, data: dict | None) -> "AbstainPolicy":
        if not data:
            return cls()
        tol = data.get("redraw_tolerance")
        return cls(tuple(data.get("rules", RULES)), None if tol is None else float(tol), data.get("record") or {})


def rule_flags(*, risk: np.ndarray, spread: Spread, in_set: tuple[np.ndarray, np.ndarray], present: np.ndarray,
               imputed: np.ndarray, contrib: np.ndarray, no_imputed_risk: np.ndarray, threshold: float,
               share: float, redraw_tolerance: float) -> dict[str, np.ndarray]:
    """Each rule's condition per patient, on its own (not in order): what the out-of-fold test judges."""
    c = np.nan_to_num(np.asarray(contrib, float))
    imp = np.asarray(imputed, bool)
    total = np.abs(c).sum(1)
    frac = np.divide(np.abs((c * imp).sum(1)), total, out=np.zeros(len(risk)), where=total > 0)
    cls = np.asarray(risk) >= threshold
    has_neg, has_pos = (np.asarray(a, bool) for a in in_set)
    any_imp = imp.any(1)
    return {"no_modality": ~np.asarray(present, bool).any(1),
            "imputed_flip": any_imp & ((np.asarray(no_imputed_risk) >= threshold) != cls),
            "imputed_share": any_imp & (frac > share),
            "empty_set": ~(has_neg | has_pos),
            "calibration_range": straddles(spread.calibration_low, spread.calibration_high, threshold),
            "redraws": np.asarray(spread.redraw_flip, float) > redraw_tolerance}


def abstain_decisions(*, risk: np.ndarray, spread: Spread,
                      in_set: tuple[np.ndarray, np.ndarray], present: np.ndarray, imputed: np.ndarray,
                      contrib: np.ndarray, no_imputed_risk: np.ndarray, modalities: Sequence[str],
                      threshold: float, share: float, level: float,
                      policy: AbstainPolicy | None = None) -> tuple[np.ndarray, list[str]]:
    """(abstain flags, reasons): the first of the policy's rules that applies to each patient, in the order
    of the docstring (:data:`RULES`); rules the policy dropped are not checked."""
    policy = policy or AbstainPolicy()
    tol = policy.tolerance(level)
    flags = rule_flags(risk=risk, spread=spread, in_set=in_set, present=present, imputed=imputed, contrib=contrib,
                       no_imputed_risk=no_imputed_risk, threshold=threshold, share=share, redraw_tolerance=tol)
    n = len(risk)
    abstain, reasons = np.zeros(n, bool), [""] * n
    c = np.nan_to_num(contrib)
    lo, hi, flip = spread.calibration_low, spread.calibration_high, np.asarray(spread.redraw_flip, float)
    for i in range(n):
        rule = next((r for r in RULES if r in policy.rules and flags[r][i]), None)
        if rule is None:
            continue
        names = ", ".join(m for m, f in zip(modalities, imputed[i]) if f)
        if rule == "no_modality":
            reason = "no modality available: prediction from covariates only"
        elif rule == "imputed_flip":
            reason = f"class flips when imputed modalities ({names}) are removed"
        elif rule == "imputed_share":
            total = np.abs(c[i]).sum()
            frac = abs(c[i][imputed[i]].sum()) / total if total > 0 else 0.0
            reason = f"imputed modalities ({names}) carry {frac:.0%} of the contribution (> {share:.0%})"
        elif rule == "empty_set":
            reason = f"atypical: the {level_text(level)} conformal set is empty"
        elif rule == "calibration_range":
            reason = (f"uncertain: the calibration range {lo[i]:.1%}-{hi[i]:.1%} straddles the threshold "
                      f"{threshold:.0%}")
        else:
            reason = (f"uncertain: {flip[i]:.0%} of the imputation redraws give the other class "
                      f"(> {tol:.0%}" + (f" at {level_text(level)})" if policy.redraw_tolerance is None else
                                         ", the tolerance fitted on the training folds)"))
        abstain[i], reasons[i] = True, reason
    return abstain, reasons
