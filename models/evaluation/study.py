"""The comparative study: every fusion type, unimodal baselines, MCAR/MNAR sweeps per imputation method.

The held-out test patients are the run's study's (:mod:`models.study_definition`:
the stage passes the home's study, so the comparison never trains on the
patients the registered models are judged on); every model is trained on the
study's training patients (with its own validation split inside ``train``) and
scored on the same test patients, so their intervals and paired differences
are comparable. Missingness sweeps hide modalities of the whole cohort (train
and test alike: a hospital's missingness does not stop at the split) and
retrain per method. The answers table (oracle risk, interaction flag), when
given, is read for evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.evaluation.metrics import align_answers, bootstrap_metrics, flat, paired_auroc_difference
from models.features.feature_set import FeatureSet
from models.features.missingness import apply_missingness
from models.training.calibration import expected_calibration_error, reliability_curve
from models.study_definition import Study, study_for_features
from models.training.train import TrainConfig, train

SWEEP_METHODS = {  # name -> (imputer, modality dropout override or None for the template's)
    "zero": ("zero", 0.0),
    "dropout": ("zero", None),
    "mean": ("mean", None),
    "cross_profile": ("cross_profile", None),
}


@dataclass
class StudyConfig:
    fusions: tuple[str, ...] = ("early", "late", "hybrid", "cross_attention")
    impute: str = "cross_profile"
    sweep_fusion: str = "early"
    sweep_methods: tuple[str, ...] = ("zero", "dropout", "mean", "cross_profile")
    rates: tuple[float, ...] = (0.0, 0.25, 0.5, 0.7)
    mechanisms: tuple[str, ...] = ("mcar", "mnar")
    unimodal: bool = True
    test_fraction: float = 0.3
    n_boot: int = 500
    seed: int = 7
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class StudyResult:
    fusion_table: pd.DataFrame
    unimodal_table: pd.DataFrame
    sweep_table: pd.DataFrame
    shapley_table: pd.DataFrame
    checks: dict[str, float]
    reliability: dict[str, tuple] = field(default_factory=dict)


def _score(model, test: FeatureSet, n_boot: int, seed: int, answers: pd.DataFrame | None,
           name: str) -> tuple[dict, np.ndarray]:
    y = np.asarray(test.labels).astype(int)
    risk = model.predict_risk(test)
    row = {"model": name, **flat(bootstrap_metrics(y, risk, n_boot, seed)),
           "ece_uncalibrated": expected_calibration_error(y, 1 / (1 + np.exp(-model.logits(test))))}
    if answers is not None:
        row["auroc_over_oracle"] = row["auroc"] / roc_auc_score(y, answers["oracle_risk"])
        inter = answers["interaction"].to_numpy(bool)
        if inter.sum() >= 10 and len(np.unique(y[inter])) == 2:
            row["interaction_auroc"] = roc_auc_score(y[inter], risk[inter])
            row["interaction_over_oracle"] = row["interaction_auroc"] / roc_auc_score(y[inter], answers["oracle_risk"][inter])
    return row, risk


def run_study(features: FeatureSet, answers: pd.DataFrame | None = None, config: StudyConfig | None = None,
              progress: Callable[[str], None] | None = None, study: Study | None = None) -> StudyResult:
    """Train and score every model of the study; see the module docstring.

    ``study`` (default: :func:`models.study_definition.study_for_features` at ``config.test_fraction``) says
    which patients train and which are scored.
    """
    config = config or StudyConfig()
    say = progress or (lambda _msg: None)
    study = study or study_for_features(features, held_out_fraction=config.test_fraction, seed=config.seed)
    train_fs, test_fs = study.training_features(features), study.held_out_features(features)
    test_ans = align_answers(test_fs.patient_ids, answers)
    y = np.asarray(test_fs.labels).astype(int)
    tpl = config.train

    rows, shap_rows, reliability = [], [], {}
    for kind in config.fusions:
        say(f"fusion {kind}")
        model = train(train_fs, replace(tpl, fusion=kind, impute=config.impute, pool=tpl.pool))
        row, risk = _score(model, test_fs, config.n_boot, config.seed, test_ans, kind)
        rows.append(row)
        reliability[kind] = reliability_curve(y, risk)
        pred = model.predict(test_fs, n_mc=0)
        for m in features.modalities:
            col = pred[f"contrib_{m}"]
            shap_rows.append({"model": kind, "modality": m,
                              "mean_abs_contribution": float(np.nanmean(np.abs(col))) if col.notna().any() else np.nan,
                              "mean_contribution": float(np.nanmean(col)) if col.notna().any() else np.nan})
        rows[-1]["abstain_rate"] = float(pred["abstain"].mean())
    fusion_table = pd.DataFrame(rows)

    uni_rows = []
    if config.unimodal:
        for j, m in enumerate(features.modalities):
            say(f"unimodal {m}")
            only = np.zeros(len(features.modalities), bool)
            only[j] = True
            tr = train_fs.with_mask(train_fs.mask & only).subset(train_fs.mask[:, j])
            te_rows = test_fs.mask[:, j]
            te = test_fs.with_mask(test_fs.mask & only).subset(te_rows)
            model = train(tr, replace(tpl, fusion="early", impute="zero", modality_dropout=0.0))
            ans = None if test_ans is None else test_ans[te_rows].reset_index(drop=True)
            row, _ = _score(model, te, config.n_boot, config.seed, ans, f"{m} only")
            uni_rows.append(row)
    unimodal_table = pd.DataFrame(uni_rows)

    sweep_rows, sweep_risk = [], {}
    for mech in config.mechanisms:
        for rate in config.rates:
            hidden = apply_missingness(features, rate, mech, config.seed + 2) if rate > 0 else features
            tr, te = study.training_features(hidden), study.held_out_features(hidden)
            for method in config.sweep_methods:
                imputer, dropout = SWEEP_METHODS[method]
                if rate == 0 and mech != config.mechanisms[0]:  # identical to the first mechanism's rate 0
                    prev = next(r for r in sweep_rows if r["rate"] == 0 and r["method"] == method)
                    sweep_rows.append({**prev, "mechanism": mech})
                    continue
                say(f"{mech} {int(rate * 100)}% {method}")
                cfg = replace(tpl, fusion=config.sweep_fusion, impute=imputer,
                              modality_dropout=tpl.modality_dropout if dropout is None else dropout)
                model = train(tr, cfg)
                risk = model.predict_risk(te)
                sweep_risk[(mech, rate, method)] = risk
                sweep_rows.append({"mechanism": mech, "rate": rate, "method": method,
                                   **flat({"auroc": bootstrap_metrics(y, risk, config.n_boot, config.seed)["auroc"]})})
    sweep_table = pd.DataFrame(sweep_rows)
    checks = _checks(fusion_table, sweep_table, sweep_risk, y, config)
    return StudyResult(fusion_table, unimodal_table, sweep_table, pd.DataFrame(shap_rows), checks, reliability)


def _checks(fusion: pd.DataFrame, sweep: pd.DataFrame, sweep_risk: dict, y: np.ndarray,
            config: StudyConfig) -> dict[str, float]:
    """The benchmark's target figures, computed from the tables (NaN where not measurable)."""
    out: dict[str, float] = {}
    if "auroc_over_oracle" in fusion:
        out["best_fusion_over_oracle"] = float(fusion["auroc_over_oracle"].max())
    if "interaction_over_oracle" in fusion:
        by = fusion.set_index("model")["interaction_over_oracle"]
        for kind in ("late", "cross_attention", "early"):
            if kind in by:
                out[f"interaction_{kind}_over_oracle"] = float(by[kind])
        out.update({f"interaction_auroc_{k}": float(v) for k, v in fusion.set_index("model")["interaction_auroc"].items()})
    out["max_ece_calibrated"] = float(fusion["ece"].max())
    out["max_ece_uncalibrated"] = float(fusion["ece_uncalibrated"].max())
    key0, key50 = ("mcar", 0.0, "cross_profile"), ("mcar", 0.5, "cross_profile")
    if key0 in sweep_risk and key50 in sweep_risk:
        a0, a50 = roc_auc_score(y, sweep_risk[key0]), roc_auc_score(y, sweep_risk[key50])
        out["cross_profile_mcar50_over_full"] = float(a50 / a0)
        if ("mcar", 0.5, "zero") in sweep_risk:
            d = paired_auroc_difference(y, sweep_risk[key50], sweep_risk[("mcar", 0.5, "zero")],
                                        config.n_boot, config.seed)
            out.update({"cp_minus_zero_mcar50": d.value, "cp_minus_zero_mcar50_low": d.low,
                        "cp_minus_zero_mcar50_high": d.high})
    return out


def write_study_report(result: StudyResult, out_dir: str | Path, title: str = "clinfuse study") -> Path:
    """``report.md`` + PNGs (fusion comparison, unimodal, sweeps, reliability) in ``out_dir``."""
    from models.evaluation.report import md_table, plot_comparison, plot_reliability, plot_sweep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = [f"# {title}", "", "Test split fixed for every model; intervals are patient-bootstrap 95 %.", ""]
    cols = [c for c in ("model", "auroc", "auroc_low", "auroc_high", "auprc", "brier", "ece_uncalibrated", "ece",
                        "auroc_over_oracle", "interaction_auroc", "abstain_rate") if c in result.fusion_table]
    plot_comparison(pd.concat([result.fusion_table, result.unimodal_table], ignore_index=True),
                    out / "fusion_comparison.png", "Fusion types and unimodal baselines")
    text += ["## Fusion types", "", md_table(result.fusion_table[cols]), "",
             "![fusion comparison](fusion_comparison.png)", ""]
    if len(result.unimodal_table):
        ucols = [c for c in cols if c in result.unimodal_table]
        text += ["## Unimodal baselines (patients having the modality)", "", md_table(result.unimodal_table[ucols]), ""]
    for mech in sorted(result.sweep_table["mechanism"].unique()) if len(result.sweep_table) else []:
        plot_sweep(result.sweep_table, mech, out / f"sweep_{mech}.png")
        sub = result.sweep_table[result.sweep_table["mechanism"] == mech]
        text += [f"## {mech.upper()} missingness sweep", "", md_table(sub), "", f"![{mech}](sweep_{mech}.png)", ""]
    plot_reliability(result.reliability, out / "reliability.png")
    text += ["## Calibration (after temperature scaling)", "", "![reliability](reliability.png)", "",
             "## Mean per-modality Shapley contributions", "", md_table(result.shapley_table), "",
             "## Target checks", "", md_table(pd.DataFrame([{"check": k, "value": v}
                                                            for k, v in result.checks.items()])), ""]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return path
