"""The champion gate rescores the champion on embeddings of the encoder versions the champion was trained on.

A champion trained on EEG encoder version X, then pretraining saves Y and a candidate is trained on Y's
embeddings (same dimension). The gate is given the train flow's ``features_for``
(:class:`models.study_inputs.HeldOutPatients`) and real registered pyfuncs: the champion must be scored on
the held-out patients' X embeddings, the candidate on Y's. Before, the train flow gave no ``features_for``,
so the champion was never rescored once the encoders moved (and before that, silently on Y's embeddings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ingestion.cohort import write_cohort
from ingestion.manifest import write_manifest
from models.features.stage_inputs import as_encoder_keys
from models.stages import EncodeConfig, PretrainStageConfig, TrainStageConfig, encode, pretrain, train
from models.study_inputs import HeldOutPatients
from models.training.pretrain_config import PretrainConfig
from models.training.trained_model import TrainedModel
from tests.models.synthetic_arrays import write_synthetic_home

MODS = ("eeg", "note")


def _home_with_two_encoder_versions(home: Path):
    """A home whose store holds EEG embeddings of X (trained on by model A) and Y (model B)."""
    manifest, cohort = write_synthetic_home(home, n_patients=40, seed=3, missing_rate=0.0, modalities=MODS)
    write_manifest(manifest[manifest["status"] == "ok"].reset_index(drop=True), home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")
    old = as_encoder_keys(dict(encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf")).encoder_keys))
    first = train(TrainStageConfig(home=home, encoder_keys=old, epochs=3, hidden=8, impute="zero"))
    pretrain(PretrainStageConfig(home=home, pretrain=PretrainConfig(epochs=1, batch_size=8, seed=7),
                                 note_encoder="tfidf"))
    new = as_encoder_keys(dict(encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf")).encoder_keys))
    second = train(TrainStageConfig(home=home, encoder_keys=new, epochs=3, hidden=8, impute="zero"))
    assert dict(old)["eeg"] != dict(new)["eeg"]
    return first, second, old, new


@pytest.mark.slow
def test_champion_on_version_x_is_rescored_on_x_when_the_candidate_uses_y(mlflow_local, tmp_path: Path) -> None:
    import mlflow

    from flows.tracking import registry

    home = tmp_path / "data"
    first, second, old, new = _home_with_two_encoder_versions(home)
    features_for = HeldOutPatients(home, synthetic=0, seed=7, study=first.study)  # the study train made
    seen: list[tuple[str, dict]] = []

    def scorer(uri: str, features):
        seen.append((uri, dict(features.encoder_keys)))
        return registry.held_out_risk(uri, features)

    decisions = []
    for trained, keys in ((first, old), (second, new)):
        held_out = features_for(keys)
        with mlflow.start_run():
            info = registry.log_pyfunc(trained.model_dir, held_out)
            decisions.append(registry.register_with_gate(info.model_uri, None, held_out, scorer=scorer,
                                                         features_for=features_for, n_boot=200))
    assert decisions[0].alias == "champion"
    champion_uri = f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}"
    rescored = [keys for uri, keys in seen if uri == champion_uri]
    assert rescored == [{m: k for m, k in old}], rescored  # X's embeddings, not the candidate's Y
    assert [keys for uri, keys in seen if uri != champion_uri][-1] == {m: k for m, k in new}
    assert "could not be re-scored" not in decisions[1].reason and decisions[1].champion_auroc is not None
    # the champion's figure is its own model on X's embeddings of the same held-out patients
    held_x = features_for(old)
    risk = TrainedModel.load(first.model_dir).predict(held_x, n_mc=0)["risk"].to_numpy()
    labels = np.asarray(held_x.labels).astype(int)
    if len(np.unique(labels)) == 2:
        assert decisions[1].champion_auroc == pytest.approx(roc_auc_score(labels, risk), abs=1e-9)
    assert tuple(held_x.patient_ids) == tuple(features_for(new).patient_ids)


@pytest.mark.slow
def test_train_flow_gives_the_gate_the_champions_own_encoders(settings, small_phantom) -> None:
    """The wiring, on the product path: train, pretrain (newer EEG/CT/X-ray versions), train again. Before,
    the train flow gave the gate no ``features_for``, so the second run said the champion "could not be
    re-scored" and kept it without a comparison."""
    from mlflow import MlflowClient

    from flows.flows.ingest import ingest_flow
    from flows.flows.train import train_flow
    from flows.prefect_env import prefect_settings
    from flows.tracking.runs import configure_mlflow

    with prefect_settings(settings):
        ingest_flow(source=str(small_phantom), cohort_csv=str(small_phantom / "cohort.csv"), home=str(settings.home))
        first = train_flow(home=str(settings.home), epochs=2)
        pretrain(PretrainStageConfig(home=settings.home, pretrain=PretrainConfig(epochs=1, batch_size=8, seed=7),
                                     note_encoder=settings.note_encoder))
        second = train_flow(home=str(settings.home), epochs=2)
    assert first.alias == "champion"
    assert dict(second.trained.encoder_keys) != dict(first.trained.encoder_keys), "pretrain moved the encoders"
    assert "could not be re-scored" not in second.reason, second.reason
    configure_mlflow(settings)
    run = MlflowClient().get_run(second.run_id)
    assert "clinfuse.gate_warning" not in run.data.tags
    assert run.data.params["gate_champion_version"] == first.version
