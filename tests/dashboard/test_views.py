"""The viewers' pure transforms: CT windowing, X-ray contrast, EEG layout, note highlighting, contributions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dashboard.views.ct_viewer import WINDOW_PRESETS, apply_window
from dashboard.views.eeg_viewer import continuous, stacked_traces
from dashboard.views.note_viewer import highlight_findings
from dashboard.views.prediction_panel import contributions_figure
from dashboard.views.xray_viewer import adjust_contrast
from ingestion.modalities import STANDARD_1020


def test_window_maps_level_to_mid_grey_and_clips() -> None:
    hu = np.array([-2000.0, -600.0 - 750.0, -600.0, -600.0 + 750.0, 3000.0])
    level, width = WINDOW_PRESETS["lung"]
    out = apply_window(hu, level, width)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 255, 255]
    bone = apply_window(np.array([0.0, 400.0]), *WINDOW_PRESETS["bone"])
    brain = apply_window(np.array([0.0, 400.0]), *WINDOW_PRESETS["brain"])
    assert bone[0] < bone[1] < 255 and brain.tolist() == [0, 255]
    with pytest.raises(ValueError, match="positive"):
        apply_window(hu, 0, 0)


def test_contrast_stretches_range_and_gamma() -> None:
    img = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]])
    assert adjust_contrast(img, 0.25, 0.75).tolist() == [[0, 0, 128, 255, 255]]
    assert adjust_contrast(img, 0.0, 1.0, gamma=2.0)[0, 2] == 64
    with pytest.raises(ValueError):
        adjust_contrast(img, 0.5, 0.5)


def test_eeg_windows_join_and_traces_scale_per_channel() -> None:
    sfreq = 128.0
    windows = np.zeros((3, 19, 256), np.float32)
    windows[:, 0, :] = 100.0 * np.sin(np.linspace(0, 20, 256))  # Fp1 loud
    windows[:, 1, :] = 1.0 * np.sin(np.linspace(0, 20, 256))  # Fp2 quiet
    sig = continuous(windows)
    assert sig.shape == (19, 768)
    fig = stacked_traces(sig, sfreq, ["Fp1", "Fp2", "O2"], STANDARD_1020, start_s=1.0, duration_s=2.0)
    assert [t.name for t in fig.data] == ["Fp1", "Fp2", "O2"]
    assert len(fig.data[0].x) == 256 and fig.data[0].x[0] == pytest.approx(1.0)
    amp = [np.ptp(np.asarray(t.y)) for t in fig.data[:2]]
    assert amp[0] == pytest.approx(amp[1], rel=0.2), "per-channel scaling equalises amplitudes"
    assert np.allclose(np.asarray(fig.data[2].y), -2)  # a flat (missing) channel sits on its baseline
    with pytest.raises(ValueError):
        continuous(np.zeros((19, 10)))


def test_findings_highlighted_negated_marked_and_text_escaped() -> None:
    text = "Denies chest pain. <b>Pain</b> in knee.\nNo fever."
    out = highlight_findings(text, [{"text": "pain", "negated": False}, {"text": "chest pain", "negated": True},
                                    {"text": "fever", "negated": True}])
    assert 'title="negated finding">chest pain</mark>' in out
    assert 'title="finding">Pain</mark>' in out
    assert out.count("<mark") == 3  # "pain" inside "chest pain" is not marked twice
    assert "&lt;b&gt;" in out and "<b>" not in out and "<br>" in out


def test_contributions_label_missing_modalities() -> None:
    row = pd.Series({"contrib_ct": 0.2, "contrib_xray": float("nan"), "contrib_eeg": -0.1, "contrib_note": 0.0,
                     "mask_ct": "imputed", "mask_xray": "missing", "mask_eeg": "present", "mask_note": "present"})
    bar = contributions_figure(row).data[0]
    assert list(bar.y) == ["ct (imputed)", "xray (missing)", "eeg (present)", "note (present)"]
    assert list(bar.text) == ["+0.200", "missing", "-0.100", "+0.000"]
    assert not any(math.isnan(v) for v in bar.x)
