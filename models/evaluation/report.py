"""Writing evaluation results: ``report.md`` with PNG plots (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_reliability(curves: dict[str, tuple], path: Path) -> Path:
    """Reliability diagram: observed frequency vs mean predicted risk per bin, one line per curve."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, (conf, freq, count) in curves.items():
        ax.plot(conf, freq, "o-", label=name)
    ax.set(xlabel="mean predicted risk", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title="Reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(labels: np.ndarray, risk: np.ndarray, path: Path, title: str = "ROC") -> Path:
    """ROC curve of one model on one split, with the chance diagonal (the model card's plot)."""
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    if len(np.unique(labels)) == 2:
        fpr, tpr, _ = roc_curve(labels, risk)
        ax.plot(fpr, tpr, "-", color="tab:blue", lw=2, label="model")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_shapley(pred: pd.DataFrame, modalities: tuple[str, ...], path: Path) -> Path:
    """Mean |Shapley| per modality over patients who had it (present or imputed)."""
    vals = [float(np.nanmean(np.abs(pred[f"contrib_{m}"]))) if pred[f"contrib_{m}"].notna().any() else 0.0
            for m in modalities]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar(modalities, vals, color="tab:blue")
    ax.set(ylabel="mean |contribution| (risk)", title="Per-modality Shapley contributions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(sweep: pd.DataFrame, mechanism: str, path: Path) -> Path:
    """AUROC vs missing rate per imputation method, with bootstrap 95 % bands."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, grp in sweep[sweep["mechanism"] == mechanism].groupby("method"):
        grp = grp.sort_values("rate")
        ax.plot(grp["rate"] * 100, grp["auroc"], "o-", label=method)
        ax.fill_between(grp["rate"] * 100, grp["auroc_low"], grp["auroc_high"], alpha=0.15)
    ax.set(xlabel="missing rate per modality (%)", ylabel="test AUROC", title=f"{mechanism.upper()} sweep")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_comparison(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Horizontal AUROC bars with intervals, one per model."""
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))
    err = np.vstack([table["auroc"] - table["auroc_low"], table["auroc_high"] - table["auroc"]])
    ax.barh(y, table["auroc"], xerr=err, color="tab:green", alpha=0.8)
    ax.set_yticks(y, table["model"])
    ax.set(xlabel="test AUROC (95 % bootstrap CI)", xlim=(0.4, 1.0), title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def md_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table without the optional ``tabulate`` dependency."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_text(config: dict[str, Any], metrics: dict[str, float]) -> str:
    """ECE before/after the calibrator the cross-fitted folds kept; the conformal set's coverage at its level."""
    from models.training.uncertainty import level_text

    ece = metrics.get("ece", float("nan"))
    folds = {k.removeprefix("ece_cross_fitted_"): v for k, v in metrics.items() if k.startswith("ece_cross_fitted_")}
    flags = [k.removeprefix("calibration_kept_") for k, v in metrics.items()
             if k.startswith("calibration_kept_") and v == 1.0]
    kind = flags[0] if flags else str(config.get("calibration", "platt"))
    kept = "no calibration" if kind == "identity" else f"{kind} calibration"
    text = (f"ECE {ece:.3f} (95 % bootstrap interval {metrics.get('ece_low', float('nan')):.3f} - "
            f"{metrics.get('ece_high', float('nan')):.3f}) after {kept}; "
            f"{metrics.get('ece_uncalibrated', float('nan')):.3f} before. ")
    if folds:
        bounds = {k.removeprefix("ece_change_upper_"): v for k, v in metrics.items()
                  if k.startswith("ece_change_upper_")}
        compared = ", ".join(f"{k} {v:.3f}" + (f" (bound {bounds[k]:+.3f})" if k in bounds else "")
                             for k, v in folds.items())
        text += ("A fitted map is kept only when it beats no calibration on the cross-fitted out-of-fold scores "
                 "by more than its patient-bootstrap noise (upper 95 % bound of its ECE change below 0), else "
                 f"none is kept. Cross-fitted ECE: {compared}. ")
    level = level_text(float(metrics.get("interval_level", config.get("interval_level", 0.9))))
    if "set_coverage" in metrics:
        text += (f"Conformal class set ({level}) contains the true class for {metrics['set_coverage']:.1%} of "
                 f"held-out patients; it holds both classes for {metrics.get('set_both_rate', float('nan')):.1%}. ")
    if "interval_coverage" in metrics:
        text += (f"The Venn-Abers range (no nominal level: not a confidence interval of the true risk) contains "
                 f"the best possible risk of {metrics['interval_coverage']:.1%} of held-out patients. ")
    rules = [k[len("abstain_rule_"):] for k, v in metrics.items() if k.startswith("abstain_rule_") and v]
    dropped = [k[len("abstain_rule_"):] for k, v in metrics.items() if k.startswith("abstain_rule_") and not v]
    applied = (f"rules applied: {', '.join(rules)}" + (f" (redraws > {metrics['abstain_redraw_tolerance']:.0%})"
                                                       if "redraws" in rules else "")
               + (f"; dropped on the training folds (flagged patients no harder there): {', '.join(dropped)}"
                  if dropped else "") if rules else
               "risk range straddling the threshold, imputed modalities deciding the class, no modality, or an "
               "empty set")
    text += (f"Abstained on {metrics.get('abstain_rate', float('nan')):.1%} ({applied}; a set holding both "
             "classes is not by itself a reason); AUROC of the answered patients "
             f"{metrics.get('auroc_not_abstained', float('nan')):.3f}.")
    return text


def write_model_report(out: Path, config: dict[str, Any], metrics: dict[str, float], pred: pd.DataFrame,
                       curves: tuple) -> Path:
    """``report.md`` for one model on a held-out split, with reliability and Shapley PNGs."""
    modalities = tuple(c[len("contrib_"):] for c in pred.columns if c.startswith("contrib_"))
    plot_reliability({"calibrated": curves[0], "uncalibrated": curves[1]}, out / "reliability.png")
    plot_shapley(pred, modalities, out / "shapley.png")
    rows = pd.DataFrame([{"metric": k, "value": v} for k, v in metrics.items()])
    text = [f"# Evaluation: {config.get('fusion')} fusion, {config.get('impute')} imputation", "",
            f"Held-out patients: {int(metrics.get('n', len(pred)))}. Intervals: patient bootstrap, 95 %.", "",
            "## Metrics", "", md_table(rows, 4), "",
            "## Calibration", "", calibration_text(config, metrics), "", "![reliability](reliability.png)", "",
            "## Per-modality Shapley contributions", "",
            "Exact Shapley values over the 16 modality coalitions. Reference (the empty coalition): the mean "
            f"calibrated risk over the training patients, {metrics.get('shapley_baseline', float('nan')):.3f}, "
            "not the network's output with every modality masked (a state training never shows it); each "
            "patient's contributions sum to their risk minus this reference.", "", "![shapley](shapley.png)", "",
            "## Configuration", "", md_table(pd.DataFrame([{"key": k, "value": str(v)} for k, v in config.items()])),
            ""]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return path
