"""The real-data sections' trust table: coverage against nominal with a Wilson interval, abstention verdicts,
and several study splits pooled as one arm."""

from __future__ import annotations

import math

import pytest

from benchmarks import realdata_trust as trust


def _fig(**kw: float) -> dict[str, float]:
    base = {"n": 100.0, "auroc": 0.80, "ece": 0.05, "ece_uncalibrated": 0.08, "interval_level": 0.9,
            "set_coverage": 0.9, "set_both_rate": 0.2, "abstain_rate": 0.05, "auroc_not_abstained": 0.82}
    return {**base, **kw}


def test_wilson_interval_matches_scipy() -> None:
    from scipy.stats import binomtest

    ci = binomtest(45, 50).proportion_ci(0.95, method="wilson")
    assert trust.wilson(0.9, 50) == pytest.approx((ci.low, ci.high), abs=1e-3)
    assert trust.wilson(1.0, 13)[1] == 1.0 and trust.wilson(1.0, 13)[0] < 0.8  # few patients: wide
    assert all(math.isnan(v) for v in trust.wilson(0.5, 0))


def test_coverage_verdict_separates_a_miss_from_too_few_patients() -> None:
    assert trust.coverage_verdict(_fig(set_coverage=0.92)) == "met"
    assert trust.coverage_verdict(_fig(set_coverage=1.0, n=13)) == "missed, within sampling error"
    assert trust.coverage_verdict(_fig(set_coverage=0.70, n=500)) == "**missed**"


def test_abstain_verdict_reads_rate_and_answered_ranking() -> None:
    assert trust.abstain_verdict(_fig()) == "met"
    assert trust.abstain_verdict(_fig(abstain_rate=0.0, auroc_not_abstained=float("nan"))) == "met (none abstained)"
    assert trust.abstain_verdict(_fig(abstain_rate=0.2)).startswith("**missed** (over")
    assert trust.abstain_verdict(_fig(auroc_not_abstained=0.7)).startswith("**missed** (answered")


def test_pooled_weights_rates_by_patients_and_skips_missing_aurocs() -> None:
    rows = [_fig(n=10.0, set_coverage=1.0, abstain_rate=0.0, auroc=float("nan")),
            _fig(n=30.0, set_coverage=0.8, abstain_rate=0.1, auroc=0.7)]
    p = trust.pooled(rows)
    assert p["n"] == 40 and p["set_coverage"] == pytest.approx(0.85) and p["abstain_rate"] == pytest.approx(0.075)
    assert p["auroc"] == pytest.approx(0.7) and p["auroc_splits"] == 1 and p["splits"] == 2


def test_table_row_states_every_figure() -> None:
    lines = trust.table([("ECG", _fig())])
    assert lines[2] == ("| ECG | 100 | 0.080 -> 0.050 | 90.0 % [82.6 %, 94.5 %] | 90 % | met | 20.0 % | 5.0 % | "
                        "0.820 / 0.800 | met |")
