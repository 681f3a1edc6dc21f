"""The predict stage scores on the model's own encoder versions, whatever the newest encoders are.

Before the stage, the pipeline scored the champion on the embeddings of the encoders the pipeline had just
run, while the predict flow pinned the champion's: one model, two inputs. Here a model is trained on EEG
encoder version X, pretraining then saves version Y, and new patients arrive: ``models.stages.predict``
must encode them with X (never Y) and score every cohort patient on X's embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.cohort import write_cohort
from ingestion.home_layout import HomeLayout
from ingestion.manifest import write_manifest
from models.features.stage_inputs import as_encoder_keys, home_features
from models.stages import (
    EncodeConfig, PredictConfig, PretrainStageConfig, TrainStageConfig, encode, predict, pretrain, train,
)
from models.stores.embeddings import EmbeddingStore
from models.stores.predictions import read_latest_batch
from models.training.pretrain_config import PretrainConfig
from models.training.trained_model import TrainedModel
from tests.models.synthetic_arrays import write_synthetic_home

MODS = ("eeg", "note")


def _write_home(home: Path, manifest: pd.DataFrame, cohort: pd.DataFrame) -> None:
    write_manifest(manifest.reset_index(drop=True), home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}).reset_index(drop=True), home / "cohort.parquet")


@pytest.mark.slow
def test_predict_pins_the_models_encoders_after_pretrain_and_for_new_patients(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=30, seed=5, missing_rate=0.0, modalities=MODS)
    manifest = manifest[manifest["status"] == "ok"]
    new_ids = list(cohort["patient_id"].iloc[27:])
    cohort.loc[27:, "label"] = np.nan  # the prediction batch: no label
    known = ~manifest["patient_id"].isin(new_ids)
    _write_home(home, manifest[known], cohort.iloc[:27])

    keys = encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf", seed=7)).encoder_keys
    trained = train(TrainStageConfig(home=home, encoder_keys=as_encoder_keys(dict(keys)), epochs=3, hidden=8,
                                     impute="zero", seed=7))
    pretrain(PretrainStageConfig(home=home, pretrain=PretrainConfig(epochs=1, batch_size=8, seed=7),
                                 note_encoder="tfidf"))
    newest = encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf", seed=7)).encoder_keys
    assert newest["eeg"] != keys["eeg"], "pretraining saved a newer EEG encoder version"
    _write_home(home, manifest, cohort)  # the new patients' items and rows arrive

    result = predict(PredictConfig(home=home, model_dir=trained.model_dir, model_name="clinfuse",
                                   model_version="3", run_id="run-x", n_mc=0, seed=7))

    assert dict(result.encoder_keys) == {m: tuple(k) for m, k in keys.items()}
    batch = read_latest_batch(HomeLayout.at(home).predictions_dir).set_index("patient_id")
    assert set(batch.index) == set(cohort["patient_id"]) and result.n == 30
    assert set(batch["model_version"]) == {"3"} and set(batch["run_id"]) == {"run-x"}
    # the new patients' EEG items were encoded with the model's version only, never with the newest
    index = EmbeddingStore(HomeLayout.at(home).embeddings_dir).index()
    new_shas = set(manifest.loc[manifest["patient_id"].isin(new_ids) & (manifest["modality"] == "eeg"),
                                "content_sha256"])
    versions = set(index.loc[index["content_sha256"].isin(new_shas), "encoder_version"])
    assert versions == {keys["eeg"][1]}, versions
    # and every patient was scored on the model's embeddings: the stored risk is the model's on them
    model = TrainedModel.load(trained.model_dir)
    pinned = model.predict(home_features(HomeLayout.at(home), dict(keys)), n_mc=0).set_index("patient_id")
    np.testing.assert_allclose(batch.loc[pinned.index, "risk"].astype(float), pinned["risk"], atol=1e-6)
    on_newest = home_features(HomeLayout.at(home), dict(newest))
    assert not np.allclose(on_newest.embeddings["eeg"], home_features(HomeLayout.at(home), dict(keys)).embeddings["eeg"])


def test_a_model_without_encoder_versions_cannot_score_a_home(tmp_path: Path) -> None:
    from models.predict_stage import recorded_encoder_keys

    class Synthetic:
        encoder_keys = {"ct": None, "eeg": None}

    with pytest.raises(ValueError, match="recorded no encoder versions"):
        recorded_encoder_keys(Synthetic())
