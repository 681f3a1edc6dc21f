"""The latent model: oracle quality, the interaction's lack of marginal signal, calibration, missingness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ingestion.modalities import PHANTOM_MODALITIES as MODALITIES  # what the phantom draws
from ingestion.phantom import SignalModel, oracle_risk, sample_latents
from ingestion.phantom.signal_model import EVIDENCE_CHANNELS, lab_values

N = 40_000


@pytest.fixture(scope="module")
def latents() -> pd.DataFrame:
    return sample_latents(N, seed=5)


def test_full_oracle_auroc_in_target_band_and_beats_every_single_modality(latents: pd.DataFrame) -> None:
    full = roc_auc_score(latents["label"], latents["oracle_risk"])
    assert 0.85 <= full <= 0.92
    for m in (*MODALITIES, "labs"):
        single = roc_auc_score(latents["label"], latents[f"oracle_risk_{m}"])
        assert 0.6 < single < full - 0.1, (m, single, full)
    no_sides = roc_auc_score(latents["label"], latents["oracle_risk_no_sides"])
    assert no_sides < full - 0.03  # the CT x EEG interaction carries real signal


def test_interaction_has_no_marginal_signal_in_either_side_alone(latents: pd.DataFrame) -> None:
    label = latents["label"].to_numpy(float)
    for col in ("ct_side", "eeg_side"):
        r = np.corrcoef(label, (latents[col] == "L").to_numpy(float))[0, 1]
        assert abs(r) < 0.025, (col, r)  # ~4 standard errors at N = 40k
    conc = np.corrcoef(label, latents["concordant"].to_numpy(float))[0, 1]
    assert conc > 0.2
    # the restricted oracles of one modality do not move with the side either
    for m in ("ct", "eeg"):
        side = latents[f"{m}_side"] == "L"
        assert abs(latents.loc[side, f"oracle_risk_{m}"].mean() - latents.loc[~side, f"oracle_risk_{m}"].mean()) < 0.01
    assert 0.05 < latents["interaction"].mean() < 0.4


@pytest.mark.parametrize("column", ["oracle_risk", "oracle_risk_ct", "oracle_risk_eeg", "oracle_risk_note",
                                    "oracle_risk_labs", "oracle_risk_no_sides"])
def test_oracle_risks_are_calibrated(latents: pd.DataFrame, column: str) -> None:
    """An exact conditional probability matches label frequencies in every risk decile."""
    bins = pd.qcut(latents[column], 10, labels=False, duplicates="drop")
    table = latents.groupby(bins).agg(risk=(column, "mean"), rate=("label", "mean"), n=("label", "size"))
    tolerance = 4 * np.sqrt(table["rate"] * (1 - table["rate"]) / table["n"]) + 0.005
    assert (abs(table["risk"] - table["rate"]) <= tolerance).all(), table


def test_no_fitted_model_beats_the_oracle(latents: pd.DataFrame) -> None:
    """A logistic regression on every observable (incl. concordance) cannot beat the Bayes rule out of sample."""
    features = latents[[f"ev_{k}" for k in EVIDENCE_CHANNELS]].to_numpy()
    features = np.column_stack([features, latents["concordant"].to_numpy(float)])
    half = N // 2
    fitted = LogisticRegression(max_iter=1000).fit(features[:half], latents["label"][:half])
    test = latents.iloc[half:]
    model_auc = roc_auc_score(test["label"], fitted.predict_proba(features[half:])[:, 1])
    oracle_auc = roc_auc_score(test["label"], test["oracle_risk"])
    assert model_auc <= oracle_auc + 0.002
    assert model_auc > oracle_auc - 0.02  # and the latent model is learnable


def test_oracle_restricted_to_present_modalities_equals_full_oracle_when_nothing_is_missing() -> None:
    frame = sample_latents(500, seed=1)
    np.testing.assert_allclose(frame["oracle_risk_available"], frame["oracle_risk"])
    np.testing.assert_allclose(oracle_risk(SignalModel(), frame, ("ct",)), frame["oracle_risk_ct"])


def test_mcar_rate_holds_and_does_not_depend_on_label() -> None:
    frame = sample_latents(N, seed=2, missing_rate=0.3, mechanism="mcar")
    for m in MODALITIES:
        missing = ~frame[f"present_{m}"]
        assert abs(missing.mean() - 0.3) < 0.015, m
        by_label = missing.groupby(frame["label"]).mean()
        assert abs(by_label[1] - by_label[0]) < 0.03, (m, by_label)
    assert frame[[f"present_{m}" for m in MODALITIES]].any(axis=1).all()


def test_mnar_rate_holds_on_average_and_differs_by_label() -> None:
    frame = sample_latents(N, seed=3, missing_rate=0.3, mechanism="mnar")
    for m in MODALITIES:
        missing = ~frame[f"present_{m}"]
        assert abs(missing.mean() - 0.3) < 0.015, m
        by_label = missing.groupby(frame["label"]).mean()
        assert by_label[0] - by_label[1] > 0.15, (m, by_label)  # sicker patients miss less
    assert frame[[f"present_{m}" for m in MODALITIES]].any(axis=1).all()


def test_same_seed_same_latents_and_different_seed_differs() -> None:
    a, b, c = sample_latents(300, seed=9), sample_latents(300, seed=9), sample_latents(300, seed=10)
    pd.testing.assert_frame_equal(a, b)
    assert not a["patient_id"].equals(c["patient_id"])
    assert a["patient_id"].is_unique and a["patient_id"].str.fullmatch(r"MRN\d{8}").all()


def test_labs_are_monotone_in_their_evidence_and_plausible() -> None:
    frame = sample_latents(2000, seed=4)
    labs = lab_values(frame)
    for lab in ("crp", "wbc", "lactate"):
        order = np.argsort(frame[f"ev_{lab}"].to_numpy())
        assert (np.diff(labs[lab].to_numpy()[order]) >= 0).all()
        assert (labs[lab] > 0).all()
    assert 3 < labs["wbc"].median() < 15 and 0.5 < labs["lactate"].median() < 3


@pytest.mark.parametrize("kwargs", [{"missing_rate": 0.9}, {"missing_rate": -0.1}, {"mechanism": "mar"}])
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        sample_latents(10, **kwargs)
