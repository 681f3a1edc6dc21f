"""The shared-information parameter: modalities share a lesion, side reports, and the oracle stays exact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ingestion.modalities import PHANTOM_MODALITIES as MODALITIES  # what the phantom draws
from ingestion.phantom import SignalModel, generate_cohort, sample_latents
from ingestion.phantom.sharing import NOTE_SIDE_ERROR, concordance_prior
from ingestion.phantom.signal_model import EVIDENCE_CHANNELS

N = 30_000


def _calibrated(frame: pd.DataFrame, column: str) -> None:
    bins = pd.qcut(frame[column], 10, labels=False, duplicates="drop")
    table = frame.groupby(bins).agg(risk=(column, "mean"), rate=("label", "mean"), n=("label", "size"))
    tolerance = 4 * np.sqrt(table["rate"] * (1 - table["rate"]) / table["n"]) + 0.005
    assert (abs(table["risk"] - table["rate"]) <= tolerance).all(), (column, table)


def test_zero_shared_is_the_conditionally_independent_model() -> None:
    plain, zero = sample_latents(3000, seed=4), sample_latents(3000, seed=4, model=SignalModel(shared=0.0))
    pd.testing.assert_frame_equal(plain, zero)
    assert (zero["note_side"] == "").all()
    agree = (zero["xray_side"] == zero["ct_side"]).mean()
    assert abs(agree - 0.5) < 0.05 and abs(zero["concordant"].mean() - 0.5) < 0.05
    corr = np.corrcoef(zero["ev_ct"] - zero["z"], zero["ev_eeg"] - zero["z"])[0, 1]
    assert abs(corr) < 0.06


@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_modalities_share_the_lesion_in_the_documented_amounts(rho: float) -> None:
    f = sample_latents(N, seed=6, model=SignalModel(shared=rho))
    noise = {m: f[f"ev_{m}"] - f["z"] for m in MODALITIES}
    assert abs(np.corrcoef(noise["ct"], noise["xray"])[0, 1] - rho) < 0.03
    assert abs(np.corrcoef(noise["ct"], f["ev_crp"] - f["z"])[0, 1]) < 0.03  # labs share nothing
    assert abs((f["xray_side"] == f["ct_side"]).mean() - (1 + rho) / 2) < 0.02
    stated = f["note_side"] != ""
    assert abs(stated.mean() - rho) < 0.02
    assert abs((f.loc[stated, "note_side"] != f.loc[stated, "ct_side"]).mean() - NOTE_SIDE_ERROR) < 0.02
    assert abs(f["concordant"].mean() - concordance_prior(rho)) < 0.02
    # what they share carries no label signal of its own: sides alone stay uninformative
    for col in ("ct_side", "xray_side", "eeg_side"):
        assert abs(np.corrcoef(f["label"], (f[col] == "L").astype(float))[0, 1]) < 0.03, col


@pytest.mark.parametrize("mechanism", ["mcar", "mnar"])
def test_oracles_stay_exact_and_calibrated_with_sharing_and_missingness(mechanism: str) -> None:
    f = sample_latents(N, seed=8, missing_rate=0.5, mechanism=mechanism, model=SignalModel(shared=0.6))
    for column in ("oracle_risk", "oracle_risk_available", "oracle_risk_xray", "oracle_risk_no_sides"):
        _calibrated(f, column)
    # a model fitted on every observable the available oracle conditions on cannot beat it out of sample
    obs = [np.where(f[f"present_{m}"], f[f"ev_{m}"], 0.0) for m in MODALITIES]
    obs += [f[f"present_{m}"].astype(float) for m in MODALITIES] + [f[f"ev_{k}"] for k in ("crp", "wbc", "lactate")]
    sides = {m: np.where(f[f"present_{m}"], (f[f"{m}_side"] == "L") * 2.0 - 1.0, 0.0) for m in ("ct", "xray", "eeg")}
    note = np.where(f["present_note"], (f["note_side"] == "L") * 1.0 - (f["note_side"] == "R"), 0.0)
    obs += [sides["ct"] * sides["eeg"], sides["xray"] * sides["eeg"], note * sides["eeg"]]
    x = np.column_stack(obs)
    half = N // 2
    fitted = LogisticRegression(max_iter=2000).fit(x[:half], f["label"][:half])
    test = f.iloc[half:]
    model_auc = roc_auc_score(test["label"], fitted.predict_proba(x[half:])[:, 1])
    assert model_auc <= roc_auc_score(test["label"], test["oracle_risk_available"]) + 0.003


def test_xray_and_eeg_side_reports_tell_the_concordance_without_ct() -> None:
    f = sample_latents(N, seed=9, model=SignalModel(shared=0.8))
    model = SignalModel(shared=0.8)
    from ingestion.phantom import oracle_risk

    no_ct = [k for k in EVIDENCE_CHANNELS if k != "ct"]
    with_sides = roc_auc_score(f["label"], oracle_risk(model, f, no_ct))
    no_sides = roc_auc_score(f["label"], model.risk(*model.posterior(f, no_ct), None))
    assert with_sides > no_sides + 0.01  # the X-ray's and the note's sides stand in for the missing CT
    with pytest.raises(ValueError):
        SignalModel(shared=0.95)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_files_show_the_shared_lesion_and_are_byte_identical_per_seed(tmp_path: Path) -> None:
    model = SignalModel(shared=0.9)
    kwargs = dict(n_patients=6, seed=3, eeg_seconds=(4, 5), model=model)
    generate_cohort(tmp_path / "a", **kwargs)
    generate_cohort(tmp_path / "b", **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    answers = pd.read_parquet(tmp_path / "a" / "answers.parquet")
    words = {"L": "left", "R": "right"}
    for _, row in answers.iterrows():
        text = (tmp_path / "a" / row["files_note"][0]).read_text(encoding="utf-8")
        if row["note_side"]:
            assert f"{words[row['note_side']]} hemispheric lesion" in text
        else:
            assert "hemispheric lesion" not in text
        ds = pydicom.dcmread(tmp_path / "a" / row["files_xray"][0])
        img = ds.pixel_array.astype(float)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            img = img.max() - img
        half = img.shape[1] // 2
        brighter_right_of_image = img[:, half:].mean() > img[:, :half].mean()
        assert brighter_right_of_image == (row["xray_side"] == "L"), row["patient_id"]  # PA: patient left = image right
