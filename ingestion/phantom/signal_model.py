"""The latent model behind the phantom cohort, and its Bayes-optimal oracle in closed form.

Why a latent model: every benchmark should be able to say how close a model gets
to the best possible AUROC, which needs labels whose exact conditional
probability is known. The generative story, per patient:

* disease severity ``z ~ N(0, 1)``;
* each evidence channel ``k`` (CT lesion contrast, X-ray opacity, EEG focal
  slowing, note findings, and three labs) observes ``e_k = z + sigma_k * n_k``
  with independent standard normal noise: weak evidence of the label;
* CT lesion side and EEG focal-slowing side are independent fair coins; their
  concordance ``c = +1`` (same side) or ``-1`` (different sides);
* label ``y = 1[a + b*z + g*c + eps > 0]`` with ``eps ~ N(0, 1)`` (a probit).

``z | e`` is Gaussian (conjugate), so ``P(y = 1 | e, c)`` is a probit in closed
form: :func:`oracle_risk`. Because the sides are fair independent coins and the
concordance term is symmetric, ``c`` is independent of either side alone: the
interaction carries no marginal signal in CT or EEG alone, and an oracle that
sees only one of them averages over ``c = +-1``.

The files render each ``e_k`` monotonically (lesion HU contrast, opacity
density, delta-power gain, number of positive findings); the oracle conditions
on the planted values themselves, so it is an upper bound for any model that
reads the files.

``SignalModel.shared`` (default 0: the story above exactly) makes the
modalities share what real ones share -- one lesion seen by every modality, an
X-ray opacity and a note that report the lesion's side, EEG slowing that
follows it in some patients; see :mod:`ingestion.phantom.sharing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from ingestion.modalities import PHANTOM_MODALITIES as MODALITIES  # the phantom's draws, not ECG
from ingestion.phantom.sharing import (MAX_SHARED, NOTE_SIDE_ERROR, concordance_posterior, concordance_prior,
                                       eeg_follow_share, gaussian_posterior, mixture_risk, mnar_risk, noise_cov)

Mechanism = Literal["mcar", "mnar"]

LAB_CHANNELS: tuple[str, ...] = ("crp", "wbc", "lactate")
EVIDENCE_CHANNELS: tuple[str, ...] = (*MODALITIES, *LAB_CHANNELS)
"""Every evidence channel; the modality ones are missing when the modality is."""


@dataclass(frozen=True)
class SignalModel:
    """Parameters of the latent model (defaults tuned: full oracle AUROC ~0.89, one modality ~0.70-0.73).

    ``noise_sd[k]`` is the noise sd of channel ``k`` around ``z``; larger is
    weaker evidence. ``mnar_strength`` is the slope of the missingness logit on
    ``-z``: under MNAR sicker patients get fuller work-ups, so they miss less.
    """

    intercept: float = -0.6
    severity_weight: float = 2.0
    interaction_weight: float = 1.0
    noise_sd: dict[str, float] = field(default_factory=lambda: {
        "ct": 1.3, "xray": 1.3, "eeg": 1.3, "note": 1.5, "crp": 2.5, "wbc": 2.5, "lactate": 2.5})
    mnar_strength: float = 1.2
    shared: float = 0.0
    """How much the modalities share beyond severity, in [0, 0.9] (:mod:`ingestion.phantom.sharing`):
    the correlation of their evidence noise (one lesion), the share of X-rays and notes that show the
    lesion's side, twice the share of EEGs whose slowing follows it. 0 = conditionally independent."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.shared <= MAX_SHARED:
            raise ValueError(f"shared must be in [0, {MAX_SHARED}], got {self.shared}")

    def posterior(self, evidence: pd.DataFrame, channels: Iterable[str],
                  present: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``z`` given the channels named (and, per row, present).

        ``evidence`` holds columns ``ev_<channel>``; ``present`` optional bool
        columns ``present_<channel>`` (absent column = always present). The
        modality channels' noise is correlated by ``shared``.
        """
        channels = tuple(channels)
        n = len(evidence)
        seen = np.ones((n, len(channels)), bool)
        for j, k in enumerate(channels):
            if present is not None and f"present_{k}" in present:
                seen[:, j] = present[f"present_{k}"].to_numpy(bool)
        sd = np.array([self.noise_sd[k] for k in channels])
        cov = noise_cov(sd, np.array([k in MODALITIES for k in channels]), self.shared)
        values = np.column_stack([evidence[f"ev_{k}"].to_numpy(float) for k in channels]) if channels \
            else np.zeros((n, 0))
        return gaussian_posterior(values, seen, cov)

    def risk(self, mean: np.ndarray, var: np.ndarray, concordance: np.ndarray | None) -> np.ndarray:
        """``P(y=1)`` given ``z ~ N(mean, var)`` and the concordance (+-1; a probability in [0, 1] is
        read as ``P(concordant)`` only via :meth:`risk_p`; None = unknown, its prior)."""
        if concordance is None:
            return self.risk_p(mean, var, np.full(len(mean), concordance_prior(self.shared)))
        return self.risk_p(mean, var, (np.asarray(concordance) > 0).astype(float))

    def risk_p(self, mean: np.ndarray, var: np.ndarray, p_concordant: np.ndarray) -> np.ndarray:
        """``P(y=1)`` given ``z ~ N(mean, var)`` and ``P(concordant)`` per row."""
        return mixture_risk(self.intercept, self.severity_weight, self.interaction_weight, mean, var, p_concordant)

    def missing_offset(self, missing_rate: float, slope: float) -> float:
        """Logit intercept making the final per-modality missing rate average ``missing_rate`` over ``z``.

        "Final" counts the rescue of patients who would miss every modality
        (one modality is put back): per ``z`` the rate is ``p - p**4 / 4``.
        """
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        weights = weights / weights.sum()
        n_mod = len(MODALITIES)

        def mean_rate(alpha: float) -> float:
            p = expit(alpha - slope * nodes)
            return float(np.sum(weights * (p - p**n_mod / n_mod))) - missing_rate

        return float(brentq(mean_rate, -40.0, 40.0))


SIDE_REPORTS = {"ct": "ct_side", "xray": "xray_side", "note": "note_side", "eeg": "eeg_side"}


def _side_reports(frame: pd.DataFrame, channels: tuple[str, ...], use_present: bool) -> dict:
    """Per modality among ``channels``: its side report per row ('' where the modality is absent), or None."""
    reports: dict[str, np.ndarray | None] = {}
    for m, col in SIDE_REPORTS.items():
        if m not in channels or col not in frame:
            reports[m] = None
            continue
        side = frame[col].to_numpy(object)
        if use_present and f"present_{m}" in frame:
            side = np.where(frame[f"present_{m}"].to_numpy(bool), side, "")
        reports[m] = side
    return reports


def oracle_risk(model: SignalModel, frame: pd.DataFrame, channels: Iterable[str] = EVIDENCE_CHANNELS,
                use_present: bool = False, mechanism: Mechanism | None = None,
                missing_rate: float = 0.0) -> np.ndarray:
    """Bayes-optimal ``P(y=1 | evidence and side reports of channels)`` for each row of ``frame``.

    The concordance is known exactly only when CT and EEG are both seen; the
    X-ray and the note report the lesion side with errors (``model.shared``),
    and without EEG the concordance stays at its prior. ``use_present``
    conditions on the modalities each row has; with ``mechanism="mnar"`` (and
    its ``missing_rate``) it also conditions on the missingness pattern itself,
    which under MNAR says something about severity -- exact in both cases.
    """
    channels = tuple(channels)
    mean, var = model.posterior(frame, channels, frame if use_present else None)
    reports = _side_reports(frame, channels, use_present)
    p_conc = concordance_posterior(model.shared, reports["ct"], reports["xray"], reports["note"], reports["eeg"])
    if not (use_present and mechanism == "mnar" and missing_rate > 0):
        return model.risk_p(mean, var, p_conc)
    slope = model.mnar_strength
    present = np.column_stack([frame[f"present_{m}"].to_numpy(bool) for m in MODALITIES])
    return mnar_risk(model.intercept, model.severity_weight, model.interaction_weight, mean, var, p_conc,
                     present, model.missing_offset(missing_rate, slope), slope)


def draw_missingness(rng: np.random.Generator, z: np.ndarray, model: SignalModel, missing_rate: float,
                 mechanism: Mechanism) -> np.ndarray:
    """Bool ``(n, 4)`` present mask; every patient keeps at least one modality."""
    n = len(z)
    if not 0.0 <= missing_rate <= 0.7:
        raise ValueError(f"missing_rate must be in [0, 0.7] (every patient keeps a modality), got {missing_rate}")
    if mechanism not in ("mcar", "mnar"):
        raise ValueError(f"mechanism must be 'mcar' or 'mnar', got {mechanism!r}")
    if missing_rate == 0.0:
        return np.ones((n, len(MODALITIES)), bool)
    slope = model.mnar_strength if mechanism == "mnar" else 0.0
    p_missing = expit(model.missing_offset(missing_rate, slope) - slope * z)[:, None]
    present = rng.random((n, len(MODALITIES))) >= p_missing
    nothing = ~present.any(axis=1)
    keep = rng.integers(0, len(MODALITIES), n)
    present[nothing, keep[nothing]] = True
    return present


def sample_latents(n_patients: int, seed: int = 7, missing_rate: float = 0.0, mechanism: Mechanism = "mcar",
                   model: SignalModel | None = None) -> pd.DataFrame:
    """Draw the latent table of a cohort, without writing any file (fast: 10^5 patients in well under a second).

    Columns: ``patient_id`` (MRN), ``label``, ``z``, ``ev_<channel>``,
    ``ct_side``/``eeg_side``/``xray_side`` ('L'/'R'), ``note_side`` ('L'/'R' or '' when the note
    does not state it), ``lesion_load`` (the shared factor ``w``), ``concordant``, ``interaction`` (the
    label differs from what it would be without the concordance term),
    ``age``, ``sex``, ``present_<modality>``, ``oracle_risk`` (all channels),
    ``oracle_risk_<channel group>`` restricted to one modality or the labs,
    ``oracle_risk_no_sides`` (all evidence but no side information) and
    ``oracle_risk_available`` (present modalities only, plus labs, and under MNAR the pattern itself).
    The shared-information draws use their own stream ``(seed, 2)``: with ``shared=0`` every other
    column is the same as without them.
    """
    model = model or SignalModel()
    rng = np.random.default_rng([seed, 0])
    z = rng.standard_normal(n_patients)
    frame = pd.DataFrame({
        "patient_id": [f"MRN{v:08d}" for v in rng.choice(90_000_000, n_patients, replace=False) + 10_000_000],
        "z": z,
    })
    noise = {k: rng.standard_normal(n_patients) for k in EVIDENCE_CHANNELS}
    ct_side = np.where(rng.random(n_patients) < 0.5, "L", "R")
    eeg_coin = np.where(rng.random(n_patients) < 0.5, "L", "R")
    shared = _shared_draws(np.random.default_rng([seed, 2]), n_patients, model.shared, ct_side, eeg_coin)
    rho = model.shared
    for k in EVIDENCE_CHANNELS:
        n_k = np.sqrt(rho) * shared["lesion_load"] + np.sqrt(1 - rho) * noise[k] if k in MODALITIES else noise[k]
        frame[f"ev_{k}"] = z + model.noise_sd[k] * n_k
    frame["ct_side"] = ct_side
    for col in ("eeg_side", "xray_side", "note_side", "lesion_load"):
        frame[col] = shared[col]
    frame["concordant"] = frame["ct_side"] == frame["eeg_side"]
    conc = frame["concordant"].to_numpy(bool) * 2.0 - 1.0
    eps = rng.standard_normal(n_patients)
    base = model.intercept + model.severity_weight * z + eps
    frame["label"] = (base + model.interaction_weight * conc > 0).astype(np.int64)
    frame["interaction"] = frame["label"].to_numpy(bool) != (base > 0)
    frame["age"] = np.clip(np.round(rng.normal(58, 16, n_patients)), 18, 95).astype(np.int64)
    frame["sex"] = np.where(rng.random(n_patients) < 0.5, "F", "M")
    present = draw_missingness(rng, z, model, missing_rate, mechanism)
    for i, m in enumerate(MODALITIES):
        frame[f"present_{m}"] = present[:, i]
    frame["oracle_risk"] = oracle_risk(model, frame)
    for m in MODALITIES:
        frame[f"oracle_risk_{m}"] = oracle_risk(model, frame, (m,))
    frame["oracle_risk_labs"] = oracle_risk(model, frame, LAB_CHANNELS)
    frame["oracle_risk_no_sides"] = model.risk(*model.posterior(frame, EVIDENCE_CHANNELS), None)
    frame["oracle_risk_available"] = oracle_risk(model, frame, use_present=True, mechanism=mechanism,
                                                 missing_rate=missing_rate)
    return frame


def _shared_draws(rng: np.random.Generator, n: int, rho: float, ct_side: np.ndarray,
                  eeg_coin: np.ndarray) -> dict[str, np.ndarray]:
    """The lesion-load factor and the side reports of X-ray, note and EEG (see :mod:`ingestion.phantom.sharing`)."""
    flip = {"L": "R", "R": "L"}
    load = rng.standard_normal(n)
    xray_coin = np.where(rng.random(n) < 0.5, "L", "R")
    xray_side = np.where(rng.random(n) < rho, ct_side, xray_coin)
    wrong = rng.random(n) < NOTE_SIDE_ERROR
    stated = np.where(wrong, [flip[s] for s in ct_side], ct_side)
    note_side = np.where(rng.random(n) < rho, stated, "")
    eeg_side = np.where(rng.random(n) < eeg_follow_share(rho), ct_side, eeg_coin)
    return {"lesion_load": load, "xray_side": xray_side.astype(object), "note_side": note_side.astype(object),
            "eeg_side": eeg_side.astype(object)}


def lab_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Render lab evidence as lab values (log-linear, so each is a monotone function of its evidence)."""
    return pd.DataFrame({
        "crp": np.round(np.exp(np.log(6.0) + 0.45 * frame["ev_crp"].to_numpy()), 2),       # mg/L
        "wbc": np.round(np.exp(np.log(8.0) + 0.12 * frame["ev_wbc"].to_numpy()), 2),       # 10^9/L
        "lactate": np.round(np.exp(np.log(1.4) + 0.15 * frame["ev_lactate"].to_numpy()), 2),  # mmol/L
    }, index=frame.index)
