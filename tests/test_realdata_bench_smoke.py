"""The real-data benchmark's Bonn section on a small subset: every segment arrives, the figures are real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_realdata as bench

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_bonn_edf_conversion_keeps_samples_and_patient(realdata: Path, tmp_path: Path) -> None:
    import mne

    seg = bench.bonn_segments(realdata, subset=1)[0]
    bench.write_edf(bench.read_segment(seg.path), seg.patient, tmp_path / "x.edf")
    raw = mne.io.read_raw_edf(tmp_path / "x.edf", preload=True, verbose="error")
    assert raw.ch_names == ["EEG"] and raw.n_times == 4097
    assert raw.info["sfreq"] == pytest.approx(bench.BONN_SFREQ, abs=0.01)
    assert raw.info["subject_info"]["his_id"] == seg.patient
    np.testing.assert_allclose(raw.get_data(units="uV")[0], bench.read_segment(seg.path), atol=1.0)


def test_bonn_subset_loses_no_segment(realdata: Path, tmp_path: Path) -> None:
    result = bench.run_bonn(realdata, tmp_path, subset=10, n_boot=100)
    assert result["n_items"] == 50  # 10 of each of sets A-E
    # F009 (set D) sits at the 12-bit ceiling 2047 for 1.3 % of its samples: quarantined as clipped, with a reason
    assert result["lost"] == 0 and result["n_ok"] + result["n_quarantined"] == 50 and result["n_ok"] >= 48
    assert all("EEG file" in reason for reason in result["quarantine_reasons"])
    assert result["n_train"] + result["n_held_out"] == 50  # the cohort: a quarantined file keeps its label
    # the evaluate stage and the benchmark's own scoring of the saved model agree on the same patients
    assert result["clinfuse_auroc"] == pytest.approx(result["clinfuse_auroc_recomputed"], nan_ok=True)
    assert 0.0 <= result["baseline_auroc"] <= 1.0 or np.isnan(result["baseline_auroc"])
    assert "Target" in bench.bonn_markdown(result)
    trust = result["trust"]  # what the evaluation told beside the risk, on the same held-out patients
    assert trust["n"] == result["n_held_out"] and 0.0 <= trust["abstain_rate"] <= 1.0
    assert 0.0 <= trust["set_coverage"] <= 1.0 and trust["interval_level"] == pytest.approx(0.9)
    assert "class set holds the true label" in bench.bonn_markdown(result)
