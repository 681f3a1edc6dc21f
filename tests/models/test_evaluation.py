"""Metrics against hand-computed values, bootstrap intervals, calibration, and the written report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.training.calibration import TemperatureScaler, expected_calibration_error
from models.evaluation.metrics import (binary_metrics, bootstrap_metrics, evaluate_model, oracle_ratio,
                               paired_auroc_difference)
from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.training.train import TrainConfig, train


def test_auroc_matches_hand_computation() -> None:
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 1 + 2 + ... = (0.35>0.1) + (0.8>0.1) + (0.8>0.4) = 3 of 4
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    m = binary_metrics(y, p)
    assert m["auroc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # AUPRC (average precision): ranks 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision 1 at recall .5, 2/3 at recall 1
    assert m["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ece_hand_computed() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.95])  # bin 0: conf .05 freq .5; bin 9: conf .95 freq 1
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.45 + 2 * 0.05) / 4)


def test_bootstrap_interval_brackets_point_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    a = bootstrap_metrics(y, p, n_boot=200, seed=1)
    b = bootstrap_metrics(y, p, n_boot=200, seed=1)
    for k in ("auroc", "auprc", "brier", "ece"):
        assert a[k].low <= a[k].value <= a[k].high, k
        assert a[k] == b[k]
    assert a["auroc"].high - a["auroc"].low < 0.2


def test_paired_difference_and_oracle_ratio() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    good, bad = y + rng.normal(0, 0.5, 300), rng.random(300)
    d = paired_auroc_difference(y, good, bad, n_boot=200)
    assert d.low > 0.2 and d.low <= d.value <= d.high
    assert oracle_ratio(y, good, good) == pytest.approx(1.0)


def test_temperature_scaling_lowers_ece_on_overconfident_logits() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    logits = 3.0 * z  # overconfident
    raw = 1 / (1 + np.exp(-logits))
    scaler = TemperatureScaler().fit(logits[:2000], y[:2000])
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.15)
    cal = scaler.transform(logits[2000:])
    assert expected_calibration_error(y[2000:], cal) < 0.5 * expected_calibration_error(y[2000:], raw[2000:])
    assert binary_metrics(y[2000:], cal)["auroc"] == pytest.approx(binary_metrics(y[2000:], raw[2000:])["auroc"])


def test_platt_removes_a_constant_logit_shift_that_temperature_cannot() -> None:
    """A class-weighted loss adds log(neg/pos) to every logit; only a fitted bias undoes it."""
    from models.training.calibration import PlattScaler

    rng = np.random.default_rng(4)
    z = rng.normal(-0.4, 1.2, 6000)
    y = (rng.random(6000) < 1 / (1 + np.exp(-z))).astype(int)
    shifted = z + np.log((1 - y.mean()) / y.mean())  # what pos_weight = neg/pos does to perfect logits
    temp = TemperatureScaler().fit(shifted[:3000], y[:3000]).transform(shifted[3000:])
    platt = PlattScaler().fit(shifted[:3000], y[:3000])
    assert platt.temperature_ == pytest.approx(1.0, abs=0.1)
    assert platt.bias_ == pytest.approx(-np.log((1 - y.mean()) / y.mean()), abs=0.15)
    ece_platt = expected_calibration_error(y[3000:], platt.transform(shifted[3000:]))
    assert ece_platt < 0.03 < expected_calibration_error(y[3000:], temp)
    again = PlattScaler.from_dict(platt.to_dict())
    np.testing.assert_allclose(again.transform(shifted[:5]), platt.transform(shifted[:5]))


@pytest.mark.slow
def test_evaluate_model_writes_report_and_plots(tmp_path: Path) -> None:
    cohort = synthetic_cohort(240, dim=8, seed=5)
    fs = apply_missingness(cohort.features, 0.3, "mcar", 1)
    model = train(fs.subset(np.arange(180)), TrainConfig(fusion="early", epochs=25, hidden=16, patience=8))
    result = evaluate_model(model, fs.subset(np.arange(180, 240)), tmp_path / "rep", answers=cohort.answers,
                            n_boot=50)
    m = result["metrics"]
    assert 0.5 < m["auroc"] <= 1 and m["auroc_low"] <= m["auroc"] <= m["auroc_high"]
    assert 0 < m["auroc_over_oracle"] <= 1.2
    n_inter = int(cohort.answers["interaction"].iloc[180:].sum())
    assert ("interaction_auroc" in m) == (n_inter >= 10)  # reported only on >= 10 interaction patients
    assert 0 <= m["abstain_rate"] <= 1
    assert m["ece_low"] <= m["ece"] <= m["ece_high"] and 0 <= m["interval_coverage"] <= 1
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "AUROC" in report.upper() and "reliability.png" in report
    assert f"ECE {m['ece']:.3f} (95 % bootstrap interval {m['ece_low']:.3f} - {m['ece_high']:.3f})" in report
    assert f"mean calibrated risk over the training patients, {model.shapley_baseline:.3f}" in report
    for png in ("reliability.png", "shapley.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fast_ranking_metrics_match_sklearn_with_ties() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.6 + y * 0.2, 2)  # many ties
    m = binary_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert m["auprc"] == pytest.approx(average_precision_score(y, p))
    assert np.isnan(binary_metrics(np.ones(5, int), p[:5])["auroc"])


@pytest.mark.slow
def test_small_study_writes_tables_plots_and_checks(tmp_path: Path) -> None:
    from dataclasses import replace

    from models.evaluation.study import StudyConfig, run_study, write_study_report

    cohort = synthetic_cohort(160, dim=6, seed=9)
    config = StudyConfig(fusions=("early", "late"), sweep_methods=("zero", "cross_profile"), rates=(0.0, 0.5),
                         n_boot=20, seed=1)
    config.train = replace(config.train, epochs=5, hidden=8)
    result = run_study(cohort.features, cohort.answers, config)
    assert list(result.fusion_table["model"]) == ["early", "late"]
    assert len(result.unimodal_table) == 4
    assert len(result.sweep_table) == 2 * 2 * 2  # mechanisms x rates x methods
    assert {"best_fusion_over_oracle", "cross_profile_mcar50_over_full", "cp_minus_zero_mcar50"} <= set(result.checks)
    report = write_study_report(result, tmp_path / "study")
    text = report.read_text()
    for png in ("fusion_comparison.png", "sweep_mcar.png", "sweep_mnar.png", "reliability.png"):
        assert png in text and (tmp_path / "study" / png).stat().st_size > 1000


@pytest.mark.realdata
def test_bootstrap_auroc_on_real_radiology_reports(realdata: Path) -> None:
    """TF-IDF + LR on real Indiana reports: normal vs abnormal, a clearly learnable real task."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    df = pd.read_csv(realdata / "notes" / "indiana_reports_subset.csv")
    text = (df["findings"].fillna("") + " " + df["impression"].fillna("")).to_numpy()
    y = (df["Problems"].fillna("") != "normal").to_numpy(int)
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[: len(y) * 7 // 10], order[len(y) * 7 // 10:]
    vec = TfidfVectorizer(min_df=2)
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(text[tr]), y[tr])
    m = bootstrap_metrics(y[te], clf.predict_proba(vec.transform(text[te]))[:, 1], n_boot=200)
    assert m["auroc"].value > 0.8 and m["auroc"].low < m["auroc"].value < m["auroc"].high
