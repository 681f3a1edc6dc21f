"""Training beats chance clearly; the TrainedModel bundle round-trips and predicts the contract's table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.features.feature_set import FeatureSet
from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.training.train import TrainConfig, modality_dropout, patient_split, train
from models.training.trained_model import TrainedModel, prediction_columns


@pytest.fixture(scope="module")
def trained():
    cohort = synthetic_cohort(260, dim=8, seed=11, interaction_fraction=0.0)
    fs = apply_missingness(cohort.features, 0.3, "mcar", 4)
    train_fs, test_fs = fs.subset(np.arange(200)), fs.subset(np.arange(200, 260))
    model = train(train_fs, TrainConfig(fusion="early", impute="cross_profile", epochs=40, hidden=16, patience=10))
    return model, test_fs


def test_short_training_beats_chance(trained) -> None:
    model, test_fs = trained
    assert roc_auc_score(test_fs.labels, model.predict_risk(test_fs)) > 0.7
    assert 1 <= len(model.history) <= 40
    assert model.metrics["calibration"]["chosen"] in {"platt", "venn_abers", "identity"}


def test_predict_returns_contract_table(trained) -> None:
    model, test_fs = trained
    pred = model.predict(test_fs, n_mc=8)
    assert list(pred.columns) == prediction_columns(test_fs.modalities)
    assert pred["patient_id"].tolist() == list(test_fs.patient_ids)
    assert ((pred["risk_low"] <= pred["risk"]) & (pred["risk"] <= pred["risk_high"])).all()
    assert pred["risk"].between(0, 1).all() and set(pred["predicted_class"]) <= {0, 1}
    for j, m in enumerate(test_fs.modalities):
        assert (pred.loc[test_fs.mask[:, j], f"mask_{m}"] == "present").all()
        assert (pred.loc[~test_fs.mask[:, j], f"mask_{m}"] == "imputed").all()  # cross-profiling fills all
        assert pred[f"contrib_{m}"].notna().all()
    imputed_rows = (~test_fs.mask).any(1)
    assert (pred.loc[imputed_rows, "risk_high"] - pred.loc[imputed_rows, "risk_low"] > 0).any()
    donors = json.loads(pred.loc[np.flatnonzero(imputed_rows)[0], "donors_json"])
    assert donors and all("patient_id" in d and "weight" in d for v in donors.values() for d in v)
    assert (pred.loc[pred["abstain"], "abstain_reason"].str.len() > 0).all()
    assert (pred.loc[~pred["abstain"], "abstain_reason"] == "").all()
    # Shapley contributions sum to risk minus the in-distribution reference (mean training risk)
    assert model.shapley_baseline is not None and 0 < model.shapley_baseline < 1
    contrib = pred[[f"contrib_{m}" for m in test_fs.modalities]].to_numpy()
    np.testing.assert_allclose(contrib.sum(1), pred["risk"] - model.shapley_baseline, atol=1e-5)


def test_save_load_round_trip(trained, tmp_path) -> None:
    model, test_fs = trained
    model.save(tmp_path / "m")
    again = TrainedModel.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_risk(test_fs), model.predict_risk(test_fs), atol=1e-6)
    meta = (tmp_path / "m" / "model.json").read_text()
    assert str(tmp_path) not in meta and "/" not in json.loads(meta)["config"]["device"]
    with pytest.raises(FileNotFoundError, match="TrainedModel"):
        TrainedModel.load(tmp_path / "nothing")


def test_zero_fill_model_reports_missing_not_imputed(trained) -> None:
    _, test_fs = trained
    model = train(test_fs, TrainConfig(fusion="late", impute="zero", epochs=2, hidden=8, val_fraction=0.3))
    pred = model.predict(test_fs, n_mc=4)
    j = int(np.argmax((~test_fs.mask).sum(0)))
    m = test_fs.modalities[j]
    assert (pred.loc[~test_fs.mask[:, j], f"mask_{m}"] == "missing").all()
    assert pred.loc[~test_fs.mask[:, j], f"contrib_{m}"].isna().all()
    # nothing imputed, yet the range is not a point: it carries the calibration uncertainty (Venn-Abers)
    assert ((pred["risk_low"] <= pred["risk"]) & (pred["risk"] <= pred["risk_high"])).all()
    assert (pred["risk_high"] > pred["risk_low"]).all()


def test_split_is_patient_level_and_stratified() -> None:
    fs = synthetic_cohort(100, dim=4, seed=2).features
    tr, va = patient_split(fs, 0.25, 0)
    assert not set(tr) & set(va) and len(tr) + len(va) == 100
    assert abs(fs.labels[va].mean() - fs.labels.mean()) < 0.06
    dup = FeatureSet(fs.patient_ids[:50] * 2, {m: np.vstack([v[:50]] * 2) for m, v in fs.embeddings.items()},
                     np.vstack([fs.mask[:50]] * 2), np.vstack([fs.covariates[:50]] * 2),
                     np.concatenate([fs.labels[:50]] * 2))
    tr, va = patient_split(dup, 0.3, 0)
    assert not {dup.patient_ids[i] for i in tr} & {dup.patient_ids[i] for i in va}


def test_modality_dropout_keeps_one_and_never_adds() -> None:
    import torch

    mask = torch.rand(500, 4, generator=torch.Generator().manual_seed(0)) > 0.3
    out = modality_dropout(mask, 0.9, torch.Generator().manual_seed(1))
    assert not (out & ~mask).any()
    assert (out.any(1) == mask.any(1)).all()
    assert out.sum() < mask.sum()


def test_unsupported_strategy_and_bad_config_are_refused() -> None:
    fs = synthetic_cohort(40, dim=4, seed=0).features
    with pytest.raises(ValueError, match="not implemented"):
        train(fs, TrainConfig(strategy="joint"))
    with pytest.raises(ValueError, match="fusion"):
        train(fs, TrainConfig(fusion="transformer"))
    assert TrainConfig(fusion="attention").as_dict()["fusion"] == "attention"
