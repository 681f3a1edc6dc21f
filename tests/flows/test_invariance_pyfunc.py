"""The registered champion, loaded with mlflow.pyfunc.load_model, scores a patient the same alone or in any batch.

Callers send raw covariates (named columns, units as in cohort.csv); the pyfunc
applies the scaler fitted on the training patients, carried in the bundle.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.test_invariance import assert_same, raw_features


@pytest.mark.slow
def test_registered_champion_is_batch_invariant_and_matches_the_model(mlflow_local, tmp_path) -> None:
    import mlflow

    from flows.tracking import registry, runs as tracking
    from flows.tracking.pyfunc_model import features_to_frame
    from models.training.train import TrainConfig, train

    fs = raw_features(150, seed=5)
    model = train(fs.subset(np.arange(120)), TrainConfig(epochs=10, hidden=8, patience=5, seed=1))
    patients = fs.subset(np.arange(120, 150))
    with tracking.stage_run("train", mlflow_local):
        info = registry.log_pyfunc(model.save(tmp_path / "m"), patients)
        decision = registry.register_with_gate(info.model_uri, None, patients)
    assert decision.alias == "champion"
    champion = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}")
    frame = features_to_frame(patients)
    assert {"age", "sex", "crp", "wbc", "lactate"} <= set(frame.columns) and set(frame["sex"]) <= {"M", "F"}
    params = {"n_mc": 10, "seed": 0}
    batch = champion.predict(frame, params=params)
    assert_same(batch, model.predict(patients, n_mc=10))  # the pyfunc is exactly the validated model
    alone = [champion.predict(frame.iloc[[i]].reset_index(drop=True), params=params) for i in range(0, 30, 7)]
    for i, row in zip(range(0, 30, 7), alone):
        assert_same(row, batch.iloc[[i]])
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert_same(champion.predict(shuffled, params=params), batch)
