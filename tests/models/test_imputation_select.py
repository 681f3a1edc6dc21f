"""``--impute auto`` and complete-case training: nested choice on training patients, recorded with the model."""

from __future__ import annotations

import numpy as np
import pytest

from models.features.synthetic import synthetic_cohort
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
