"""``--impute auto`` and complete-case training: nested choice on training patients, recorded with the model."""

from __future__ import annotations

import numpy as np
import pytest

from models.simulation.phantom_features import synthetic_cohort
from models.imputation.baselines import CompleteCaseImputer, complete_rows
from models.imputation.select import CANDIDATES, select_imputer
from models.training.train import TrainConfig, train
import models.training.train as train_module
from models.training.trained_model import TrainedModel

QUICK = dict(epochs=4, patience=2, hidden=8, n_calibrators=0)


@pytest.fixture(scope="module")
def cohort():
    return synthetic_cohort(150, dim=4, seed=21, missing_rate=0.4, shared=0.6).features


def test_complete_case_learns_from_complete_patients_and_fills_the_rest(cohort) -> None:
    imp = CompleteCaseImputer().fit(cohort)
    rows = imp.training_rows(cohort)
    assert rows.sum() == int(imp.n_complete_) == complete_rows(cohort).sum() and 20 <= rows.sum() < len(cohort)
    assert cohort.mask[rows].all()
    out = imp.transform(cohort)
    assert (out.imputed == ~cohort.mask).all() and out.features.mask.all()
    complete_mean = cohort.embeddings["ct"][rows].mean(0)
    np.testing.assert_allclose(out.features.embeddings["ct"][~cohort.mask[:, 0]][0], complete_mean, rtol=1e-5)


def test_auto_picks_by_nested_validation_on_training_patients_only(cohort, monkeypatch, tmp_path) -> None:
    train_fs, held_out = cohort.subset(np.arange(120)), cohort.subset(np.arange(120, 150))
    seen: set[str] = set()
    real = train_module.train

    def spy(features, config, progress=None):  # noqa: ANN001
        seen.update(features.patient_ids)
        return real(features, config, progress)

    monkeypatch.setattr(train_module, "train", spy)
    model = train(train_fs, TrainConfig(impute="auto", **QUICK))
    assert seen and seen <= set(train_fs.patient_ids) and not seen & set(held_out.patient_ids)
    record = model.metrics["impute_selection"]
    assert record["requested"] == "auto" and record["chosen"] == model.config.impute
    assert [r["method"] for r in record["table"]] == list(CANDIDATES)
    best = max(record["table"], key=lambda r: r["mean_auroc"])
    assert best["method"] == record["chosen"] and best["chosen"]
    loaded = TrainedModel.load(model.save(tmp_path / "m"))
    assert loaded.metrics["impute_selection"]["chosen"] == record["chosen"]
    assert loaded.predict_risk(held_out).shape == (30,)


def test_select_imputer_table_has_one_row_per_candidate(cohort) -> None:
    chosen, table = select_imputer(cohort.subset(np.arange(90)), TrainConfig(**QUICK), train, ("zero", "mean"),
                                  folds=2)
    assert list(table["method"]) == ["zero", "mean"] and chosen in ("zero", "mean")
    assert table["fold1_auroc"].between(0, 1).all() and table["chosen"].sum() == 1


def test_a_complete_training_cohort_is_not_a_tie_that_zero_fill_wins() -> None:
    """Regression: with every modality present, every candidate scored the same and zero-fill won the tie."""
    complete = synthetic_cohort(150, dim=4, seed=22, missing_rate=0.0, shared=0.9).features
    assert complete.mask.all()
    chosen, table = select_imputer(complete, TrainConfig(**QUICK), train, ("zero", "mean", "cross_profile"), folds=2)
    assert table["mean_auroc_as_is"].nunique() == 1  # nothing is missing: the folds as they are cannot tell
    assert table["mean_auroc_hidden"].nunique() == 3  # hiding modalities tells the methods apart
    np.testing.assert_allclose(table["mean_auroc"], (table["mean_auroc_as_is"] + table["mean_auroc_hidden"]) / 2)
    assert chosen == table.loc[table["mean_auroc"].idxmax(), "method"]


def test_hidden_modalities_keep_one_per_patient() -> None:
    from models.imputation.select import hide_modalities

    mask = np.ones((500, 4), bool)
    mask[:50, 1:] = False
    out = hide_modalities(mask, 0.5, 3)
    assert out.any(1).all() and not (out & ~mask).any() and 0.3 < out[50:].mean() < 0.7
    assert (out[:50, 0]).all() and (hide_modalities(mask, 0.5, 3) == out).all()
