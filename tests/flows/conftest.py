"""Fixtures of the flows tests: a trained model on synthetic features, an isolated MLflow store (the shared Prefect
server, ``prefect_api``, is tests/conftest.py's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def synthetic_features():
    """120 synthetic patients with 30 % MCAR missingness (a known-answer FeatureSet, 8-dim embeddings)."""
    from models.simulation.phantom_features import synthetic_cohort

    return synthetic_cohort(n=160, dim=8, missing_rate=0.3, seed=3).features


@pytest.fixture(scope="session")
def good_and_bad_models(tmp_path_factory, synthetic_features):
    """Two saved TrainedModels: one trained on real labels, one on shuffled labels (worse by construction)."""
    from models.features.feature_set import FeatureSet
    from models.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("models")
    fs = synthetic_features.subset(np.arange(120))
    good = train(fs, TrainConfig(epochs=60, hidden=16, patience=60, seed=1)).save(root / "good")
    shuffled = np.random.default_rng(0).permutation(fs.labels)
    bad_fs = FeatureSet(fs.patient_ids, fs.embeddings, fs.mask, fs.covariates, shuffled, fs.modalities)
    bad = train(bad_fs, TrainConfig(epochs=3, hidden=4, patience=3, seed=2)).save(root / "bad")
    return Path(good), Path(bad)


@pytest.fixture
def held_out(synthetic_features):
    return synthetic_features.subset(np.arange(120, 160))


@pytest.fixture
def mlflow_local(settings):
    """MLflow pointed at the test's own SQLite store; restored afterwards."""
    import mlflow

    from flows.tracking.runs import configure_mlflow

    before = mlflow.get_tracking_uri()
    configure_mlflow(settings)
    yield settings
    mlflow.set_tracking_uri(before)
    mlflow.set_registry_uri(before)


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    """A fresh CLINFUSE_HOME for CLI tests (settings re-read before and after)."""
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()
