"""A patient's score depends on that patient alone: alone, in a batch, in a shuffled or a biased batch.

The model carries its training statistics (covariate scaler, imputer, calibrator,
Shapley reference), takes raw covariates (units as in cohort.csv, NaN unknown),
and seeds every random draw by the patient id.
"""

from __future__ import annotations

from dataclasses import replace

import json

import numpy as np
import pandas as pd
import pytest

from models.features.covariates import COVARIATE_COLUMNS, CovariateScaler, covariate_matrix
from models.features.feature_set import FeatureSet
from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.training.train import TrainConfig, train
from models.training.trained_model import TrainedModel

COMPARED = ["risk", "risk_low", "risk_high", "predicted_class", "abstain", "abstain_reason"]


def raw_features(n: int, seed: int) -> FeatureSet:
    """Synthetic patients whose covariates look like a cohort table's: years, M/F, mg/L, 10^9/L, mmol/L, gaps."""
    fs = apply_missingness(synthetic_cohort(n, dim=8, seed=seed).features, 0.3, "mcar", seed + 1)
    z = fs.covariates
    table = pd.DataFrame({"age": 62 + 12 * z[:, 0], "sex": np.where(z[:, 1] > 0, "M", "F"),
                          "crp": 40 + 25 * z[:, 2], "wbc": 9 + 3 * z[:, 3], "lactate": 1.8 + 0.7 * z[:, 4]})
    table.loc[::7, "lactate"] = np.nan  # unknown values
    return replace(fs, covariates=covariate_matrix(table), covariate_names=COVARIATE_COLUMNS)


@pytest.fixture(scope="module")
def model_and_patients():
    fs = raw_features(240, seed=21)
    model = train(fs.subset(np.arange(200)), TrainConfig(epochs=25, hidden=16, patience=10, seed=3, ensemble=2))
    return model, fs.subset(np.arange(200, 240))


def _rows(pred: pd.DataFrame) -> pd.DataFrame:
    return pred.set_index("patient_id").sort_index()


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same patients, and every number equal to 1e-6, every decision and reason identical."""
    a, b = _rows(a), _rows(b).loc[_rows(a).index]
    for col in a.columns:
        if col == "donors_json":  # same donors, weights equal to 1e-5 (they are stored rounded to 1e-6)
            for x, y in zip(a[col], b[col]):
                dx, dy = json.loads(x), json.loads(y)
                assert dx.keys() == dy.keys()
                for m in dx:
                    assert [d["patient_id"] for d in dx[m]] == [d["patient_id"] for d in dy[m]]
                    np.testing.assert_allclose([d["weight"] for d in dx[m]], [d["weight"] for d in dy[m]], atol=1e-5)
        elif a[col].dtype.kind == "f":
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), atol=1e-6, err_msg=col, equal_nan=True)
        else:
            assert a[col].tolist() == b[col].tolist(), col


def test_score_alone_equals_score_in_any_batch(model_and_patients) -> None:
    model, patients = model_and_patients
    batch = model.predict(patients, n_mc=10)
    alone = pd.concat([model.predict(patients.subset(np.array([i])), n_mc=10) for i in range(len(patients))])
    assert_same(alone, batch)
    order = np.random.default_rng(0).permutation(len(patients))
    assert_same(model.predict(patients.subset(order), n_mc=10), batch)
    sick = np.argsort(-batch["risk"].to_numpy())[:8]  # a batch of only the sickest patients is not re-centred
    assert_same(model.predict(patients.subset(sick), n_mc=10), batch.iloc[sick])
    assert batch["risk_high"].gt(batch["risk_low"]).all()


def test_saved_model_carries_its_scaler_and_scores_raw_covariates(model_and_patients, tmp_path) -> None:
    model, patients = model_and_patients
    again = TrainedModel.load(model.save(tmp_path / "m"))
    assert again.covariate_names == COVARIATE_COLUMNS
    np.testing.assert_allclose(again.scaler.mean_, model.scaler.mean_)
    assert 50 < again.scaler.mean_[0] < 75  # fitted on training patients' raw ages (years), not on a batch
    one = patients.subset(np.array([3]))
    np.testing.assert_allclose(again.prepare(one).covariates, model.prepare(patients).covariates[[3]], atol=1e-6)
    assert np.abs(again.prepare(one).covariates).sum() > 0  # alone, its labs are not all set to 0
    assert_same(again.predict(one, n_mc=10), model.predict(patients, n_mc=10).iloc[[3]])
    # the bootstrap ensemble travels with the model (interval); a small cohort's linear head has none
    assert len(again.members) == len(model.members) == (2 if model.head == "network" else 0)


def test_scaler_uses_training_statistics_and_unknown_is_the_mean() -> None:
    train_cov = np.array([[50.0, 1.0], [70.0, 0.0], [np.nan, 1.0]])
    scaler = CovariateScaler().fit(train_cov)
    np.testing.assert_allclose(scaler.mean_, [60.0, 2 / 3])
    out = scaler.transform(np.array([[80.0, np.nan]]))
    np.testing.assert_allclose(out, [[2.0, 0.0]], atol=1e-6)
    table = pd.DataFrame({"sex": ["m", "F", None], "age": ["61", "x", 40]})
    np.testing.assert_array_equal(covariate_matrix(table, ("age", "sex", "crp"))[:, 1], [1.0, 0.0, np.nan])
    assert np.isnan(covariate_matrix(table, ("age", "sex", "crp"))[:, 2]).all()  # absent column: unknown
