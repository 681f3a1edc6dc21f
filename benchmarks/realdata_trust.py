"""What a clinician is told beside each real-data AUROC: calibration, the conformal set's coverage, abstention.

Why its own table: on the phantom these are measured against the best possible risk (bench_calibration.py),
but a real set has no such answer; its labels are the only truth. So each real-data section reports, from
the evaluation the stage functions wrote on the study's held-out patients (``EvaluationResult.metrics``,
the names of the evaluation report): ECE before and after the calibrator the training folds kept, how often
the conformal class set holds the true label against its nominal level (a Wilson interval, since the
held-out sets are small), how often a set holds both classes, the abstain rate and the AUROC of the answered
patients beside all patients'. Targets (issue 24): coverage within 3 points of nominal, abstain at most
10 % with answered AUROC at least all patients'.
"""

from __future__ import annotations

import math

KEYS = ("n", "auroc", "ece", "ece_uncalibrated", "interval_level", "set_coverage", "set_both_rate",
        "abstain_rate", "auroc_not_abstained")
COVERAGE_TOLERANCE = 0.03
ABSTAIN_BUDGET = 0.10


def trust_figures(metrics: dict) -> dict[str, float]:
    """The evaluation's figures this table reads (NaN where the evaluation had none, e.g. too few answered)."""
    return {k: float(metrics.get(k, float("nan"))) for k in KEYS}


def pooled(rows: list[dict[str, float]]) -> dict[str, float]:
    """Several held-out sets of one arm (repeated study splits) as one: rates weighted by patients, ECE and
    AUROCs averaged over the splits that have them (they overlap, so this is a mean, not a bigger sample)."""
    n = sum(r["n"] for r in rows)
    out = {"n": n, "interval_level": rows[0]["interval_level"], "splits": float(len(rows))}
    for key in ("set_coverage", "set_both_rate", "abstain_rate"):
        out[key] = sum(r[key] * r["n"] for r in rows) / n
    for key in ("auroc", "ece", "ece_uncalibrated", "auroc_not_abstained"):
        values = [r[key] for r in rows if math.isfinite(r[key])]
        out[key] = sum(values) / len(values) if values else float("nan")
        out[f"{key}_splits"] = float(len(values))
    return out


def wilson(share: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``share`` of ``n`` patients."""
    if n <= 0:
        return float("nan"), float("nan")
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def coverage_verdict(t: dict[str, float]) -> str:
    """Met when the observed coverage is within the tolerance of nominal; 'consistent' when only the interval
    reaches that band (too few patients to tell)."""
    nominal, cov = t["interval_level"], t["set_coverage"]
    low, high = wilson(cov, t["n"])
    if abs(cov - nominal) <= COVERAGE_TOLERANCE:
        return "met"
    if low <= nominal + COVERAGE_TOLERANCE and high >= nominal - COVERAGE_TOLERANCE:
        return "missed, within sampling error"
    return "**missed**"


def abstain_verdict(t: dict[str, float]) -> str:
    rate, answered, everyone = t["abstain_rate"], t["auroc_not_abstained"], t["auroc"]
    if rate > ABSTAIN_BUDGET:
        return "**missed** (over 10 %)"
    if rate == 0:
        return "met (none abstained)"
    if not math.isfinite(answered):
        return "not measurable (too few answered of a class)"
    return "met" if answered >= everyone - 1e-9 else "**missed** (answered rank worse)"


def pct(share: float, digits: int = 1) -> str:
    return f"{100 * share:.{digits}f} %"


def table(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
    """Markdown rows: one per arm (``label``, figures from :func:`trust_figures` or :func:`pooled`)."""
    lines = ["| arm | held-out patients | ECE before -> after calibration | class set holds the true label "
             "[95 % CI] | nominal | coverage target (+-3 points) | set holds both classes | abstained | AUROC "
             "answered / all | abstention target |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, t in rows:
        low, high = wilson(t["set_coverage"], t["n"])
        splits = f" over {t['splits']:.0f} splits" if "splits" in t else ""
        lines.append(
            f"| {label} | {t['n']:.0f}{splits} | {t['ece_uncalibrated']:.3f} -> {t['ece']:.3f} | "
            f"{pct(t['set_coverage'])} [{pct(low)}, {pct(high)}] | {pct(t['interval_level'], 0)} | "
            f"{coverage_verdict(t)} | {pct(t['set_both_rate'])} | {pct(t['abstain_rate'])} | "
            f"{t['auroc_not_abstained']:.3f} / {t['auroc']:.3f} "
            f"| {abstain_verdict(t)} |")
    return lines


INTRO = ("What the model says beside its risk, on the same held-out patients (from the evaluation the stages "
         "wrote; `benchmarks/realdata_trust.py`): ECE before and after the calibrator the training folds kept; "
         "how often the conformal class set holds the true label, against its nominal level (Wilson 95 % "
         "interval); how often the set holds both classes; the abstain rate and the AUROC of the answered "
         "patients beside all patients'. Targets: coverage within 3 points of nominal; abstain at most 10 % "
         "with the answered ranking no worse.")
