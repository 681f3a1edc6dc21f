"""Metrics with bootstrap intervals, and the held-out evaluation of one trained model.

``bootstrap_metrics`` resamples patients (seeded) and reports percentile 95 %
intervals for AUROC, AUPRC, Brier and ECE; ``paired_auroc_difference`` does the
same for the difference of two models on the same patients, which is what
"A beats B by a margin outside the bootstrap interval" means here.
``evaluate_model`` is what ``clinfuse evaluate`` and the train flow call on a
held-out split: it writes ``report.md`` with PNG plots into a folder. The
multi-model study (fusion types, unimodal baselines, missingness sweeps) lives
in :mod:`models.evaluation.study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.features.feature_set import FeatureSet
from models.training.calibration import expected_calibration_error, reliability_curve

METRICS = ("auroc", "auprc", "brier", "ece")


@dataclass(frozen=True)
class MetricCI:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _ranking_metrics(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(AUROC, average precision) from one sort, with sklearn's tie handling.

    Written out because the bootstrap calls it thousands of times and sklearn's
    per-call input validation dominates at that scale; ``test_evaluation``
    checks it against ``roc_auc_score`` / ``average_precision_score``.
    """
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[last].astype(float)
    fps = (last + 1) - tps
    pos, neg = tps[-1], fps[-1]
    if pos == 0 or neg == 0:
        return float("nan"), float("nan")
    tpr, fpr = np.r_[0.0, tps / pos], np.r_[0.0, fps / neg]
    auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    ap = float(np.sum(np.diff(tpr) * (tps / (tps + fps))))
    return auroc, ap


def binary_metrics(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """AUROC, AUPRC (average precision), Brier, ECE; ranking metrics are NaN with one class only."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, float)
    auroc, ap = _ranking_metrics(y, p)
    return {"auroc": auroc, "auprc": ap, "brier": float(np.mean((p - y) ** 2)),
            "ece": expected_calibration_error(y, p, n_bins)}


def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_metrics(labels: np.ndarray, probs: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, MetricCI]:
    """Point metrics on all patients, percentile intervals over ``n_boot`` patient resamples."""
    y, p = np.asarray(labels).astype(int), np.asarray(probs, float)
    point = binary_metrics(y, p)
    draws = {k: [] for k in METRICS}
    for idx in _boot_indices(len(y), n_boot, seed):
        if len(np.unique(y[idx])) < 2:
            continue
        for k, v in binary_metrics(y[idx], p[idx]).items():
            draws[k].append(v)
    q = (1 - level) / 2
    out = {}
    for k in METRICS:
        d = np.asarray(draws[k])
        lo, hi = (np.quantile(d, [q, 1 - q]) if len(d) else (np.nan, np.nan))
        out[k] = MetricCI(point[k], float(lo), float(hi))
    return out


def flat(metrics: dict[str, MetricCI], prefix: str = "") -> dict[str, float]:
    """``{"auroc": .., "auroc_low": .., "auroc_high": ..}`` for MLflow and tables."""
    out = {}
    for k, ci in metrics.items():
        out[f"{prefix}{k}"], out[f"{prefix}{k}_low"], out[f"{prefix}{k}_high"] = ci.value, ci.low, ci.high
    return out


def paired_auroc_difference(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray,
                            n_boot: int = 1000, seed: int = 0,
                            quantiles: tuple[float, float] = (0.025, 0.975)) -> MetricCI:
    """AUROC(a) - AUROC(b) on the same patients with a paired bootstrap interval.

    ``quantiles`` are the bootstrap quantiles reported as (low, high): the champion gate asks for a
    one-sided lower bound at ``alpha / looks`` (every comparison on the same patients counted).
    """
    y = np.asarray(labels).astype(int)
    a, b = np.asarray(probs_a, float), np.asarray(probs_b, float)
    diffs = []
    for idx in _boot_indices(len(y), n_boot, seed):
        if len(np.unique(y[idx])) == 2:
            diffs.append(_ranking_metrics(y[idx], a[idx])[0] - _ranking_metrics(y[idx], b[idx])[0])
    lo, hi = np.quantile(diffs, list(quantiles))
    return MetricCI(float(roc_auc_score(y, a) - roc_auc_score(y, b)), float(lo), float(hi))


def cohort_split_metrics(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray, n_boot: int,
                         seed: int) -> dict[str, dict[str, MetricCI]]:
    """Metrics on the paired cohort (every modality present) and the partial one (some missing)."""
    paired = np.asarray(mask).all(1)
    out = {}
    for name, rows in (("all", np.ones_like(paired)), ("paired", paired), ("partial", ~paired)):
        if rows.sum() >= 10 and len(np.unique(np.asarray(labels)[rows])) == 2:
            out[name] = bootstrap_metrics(np.asarray(labels)[rows], np.asarray(probs)[rows], n_boot, seed)
    return out


def oracle_ratio(labels: np.ndarray, probs: np.ndarray, oracle_risk: np.ndarray) -> float:
    """Model AUROC / oracle AUROC on the same patients (how close to the best possible)."""
    return float(roc_auc_score(labels, probs) / roc_auc_score(labels, oracle_risk))


def align_answers(patient_ids: tuple[str, ...], answers: pd.DataFrame | None) -> pd.DataFrame | None:
    """Answers rows in ``patient_ids`` order (evaluation only); None when absent or not matching."""
    if answers is None:
        return None
    table = answers.set_index("patient_id")
    missing = [p for p in patient_ids if p not in table.index]
    if missing:
        raise ValueError(f"answers table lacks {len(missing)} evaluated patients (e.g. {missing[0]}): "
                         "are both keyed by the same pseudonyms?")
    return table.loc[list(patient_ids)].reset_index()


def set_coverage(labels: np.ndarray, in_set: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Share of patients whose true class is in their conformal set (all, and per class), and set sizes."""
    y = np.asarray(labels).astype(int)
    has_neg, has_pos = (np.asarray(a, bool) for a in in_set)
    hit = np.where(y == 1, has_pos, has_neg)
    size = has_neg.astype(int) + has_pos.astype(int)
    out = {"set_coverage": float(hit.mean()), "set_both_rate": float((size == 2).mean()),
           "set_empty_rate": float((size == 0).mean())}
    for cls, name in ((0, "negative"), (1, "positive")):
        if (y == cls).any():
            out[f"set_coverage_{name}"] = float(hit[y == cls].mean())
    return out


def review_agreement(patient_ids: tuple[str, ...], predicted_class: np.ndarray, cohort_labels: np.ndarray,
                     confirmed: Mapping[str, int]) -> dict[str, float]:
    """Agreement of clinician-confirmed outcomes with the model's class and with the cohort's label.

    Reported beside the evaluation, never inside it: the confirmed outcomes of held-out patients are not
    their labels here (the clinician may have seen the model's output: incorporation bias).
    """
    rows = [i for i, p in enumerate(patient_ids) if p in confirmed]
    out = {"review_n": float(len(rows))}
    if rows:
        truth = np.array([confirmed[patient_ids[i]] for i in rows])
        out["review_agree_model"] = float((np.asarray(predicted_class)[rows] == truth).mean())
        out["review_agree_cohort"] = float((np.asarray(cohort_labels)[rows] == truth).mean())
    return out


def evaluate_model(model: Any, held_out: FeatureSet, out_dir: str | Path, answers: pd.DataFrame | None = None,
                   n_boot: int = 500, seed: int = 0, confirmed: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Evaluate a TrainedModel on labelled held-out patients; write ``report.md`` + PNGs into ``out_dir``.

    Returns ``{"metrics": flat numbers, "out_dir": str, "report": path}``; the
    metrics include paired/partial cohorts, ECE before and after calibration
    (and which calibrator the cross-fitted folds kept), the conformal set's
    coverage of the true class at ``interval_level`` ("NN % nominal"), the
    abstain rate and answered AUROC, mean |Shapley| per modality and, with an
    answers table, model/oracle AUROC, the range's coverage of the best
    possible risk and the interaction subset. ``held_out`` carries the cohort's
    labels; clinician-confirmed outcomes (``confirmed``) are reported as
    agreement only (:func:`review_agreement`).
    """
    from models.evaluation.report import write_model_report
    from models.training.uncertainty import RULES

    if held_out.labels is None:
        raise ValueError("evaluation needs labels; the held-out FeatureSet has none")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(held_out.labels).astype(int)
    pred = model.predict(held_out, n_mc=20, seed=seed)
    risk = pred["risk"].to_numpy()
    raw = 1.0 / (1.0 + np.exp(-model.logits(held_out)))
    metrics = flat(bootstrap_metrics(y, risk, n_boot, seed))
    metrics["ece_uncalibrated"] = expected_calibration_error(y, raw)
    metrics["temperature"] = float(model.calibrator.temperature_)
    metrics["calibration_bias"] = float(getattr(model.calibrator, "bias_", 0.0))
    metrics["interval_level"] = float(model.config.interval_level)
    cal = getattr(model, "metrics", {}).get("calibration", {})
    for kind, value in cal.get("ece_cross_fitted", {}).items():  # what the folds compared, and kept
        metrics[f"ece_cross_fitted_{kind}"] = float(value)
    for kind, value in cal.get("ece_change_upper", {}).items():  # the bootstrap bound each fitted map had to beat
        metrics[f"ece_change_upper_{kind}"] = float(value)
    if "chosen" in cal:
        metrics["calibration_kept_identity"] = float(cal["chosen"] == "identity")
        for kind in cal.get("ece_cross_fitted", {}):
            metrics[f"calibration_kept_{kind}"] = float(cal["chosen"] == kind)
    metrics.update(set_coverage(y, model.class_sets(risk)))
    if getattr(model, "shapley_baseline", None) is not None:
        metrics["shapley_baseline"] = float(model.shapley_baseline)
    metrics["interval_width_mean"] = float((pred["risk_high"] - pred["risk_low"]).mean())
    metrics["n"] = float(len(y))
    metrics["abstain_rate"] = float(pred["abstain"].mean())
    policy = getattr(model, "abstain_policy", None)
    if policy is not None:  # which rules the training folds kept (models.training.abstain_policy)
        for rule in RULES:
            metrics[f"abstain_rule_{rule}"] = float(rule in policy.rules)
        metrics["abstain_redraw_tolerance"] = float(policy.tolerance(model.config.interval_level))
    kept = ~pred["abstain"].to_numpy()
    if kept.sum() >= 10 and len(np.unique(y[kept])) == 2:
        metrics["auroc_not_abstained"] = float(roc_auc_score(y[kept], risk[kept]))
    for name, ms in cohort_split_metrics(y, risk, held_out.mask, n_boot, seed).items():
        if name != "all":
            metrics.update(flat({"auroc": ms["auroc"]}, prefix=f"{name}_"))
            metrics[f"n_{name}"] = float(held_out.mask.all(1).sum() if name == "paired" else (~held_out.mask.all(1)).sum())
    for m in model.modalities:
        metrics[f"shapley_abs_{m}"] = float(np.nanmean(np.abs(pred[f"contrib_{m}"]))) if pred[f"contrib_{m}"].notna().any() else float("nan")
    ans = align_answers(held_out.patient_ids, answers)
    if ans is not None:
        metrics["oracle_auroc"] = float(roc_auc_score(y, ans["oracle_risk"]))
        metrics["auroc_over_oracle"] = oracle_ratio(y, risk, ans["oracle_risk"].to_numpy())
        truth = ans["oracle_risk_available" if "oracle_risk_available" in ans else "oracle_risk"].to_numpy()
        metrics["interval_coverage"] = float(((pred["risk_low"] <= truth) & (truth <= pred["risk_high"])).mean())
        inter = ans["interaction"].to_numpy(bool)
        if inter.sum() >= 10 and len(np.unique(y[inter])) == 2:
            metrics["interaction_auroc"] = float(roc_auc_score(y[inter], risk[inter]))
    if confirmed:
        metrics.update(review_agreement(tuple(held_out.patient_ids), pred["predicted_class"].to_numpy(), y, confirmed))
    curve = reliability_curve(y, risk), reliability_curve(y, raw)
    report = write_model_report(out, model.config.as_dict(), metrics, pred, curve)
    pred.drop(columns=["donors_json"]).to_csv(out / "predictions.csv", index=False)
    return {"metrics": metrics, "out_dir": str(out), "report": str(report), "predictions": pred}
