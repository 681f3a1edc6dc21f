"""The pyfunc model, its signature with the availability mask, registration and the champion gate."""

from __future__ import annotations

import numpy as np
import pytest

from flows.tracking import registry
from flows.tracking.pyfunc_model import features_to_frame, frame_to_features


def test_decide_gate_rules():
    from models.evaluation.metrics import MetricCI

    assert registry.decide(0.70, None)[0] == "champion"
    assert registry.decide(0.80, 0.75, gain=MetricCI(0.05, 0.01, 0.09))[0] == "champion"
    assert registry.decide(0.75, 0.75, gain=MetricCI(0.0, -0.02, 0.02))[0] == "candidate"
    assert registry.decide(0.76, 0.75, min_gain=0.02, gain=MetricCI(0.01, 0.005, 0.02))[0] == "candidate"
    assert registry.decide(float("nan"), 0.6)[0] == "candidate"


def test_frame_round_trip_keeps_mask_and_rejects_wrong_width(synthetic_features):
    fs = synthetic_features.subset(np.arange(6))
    frame = features_to_frame(fs)
    assert {"patient_id", "emb_ct", "mask_ct", "mask_note", "covariates"} <= set(frame.columns)
    back = frame_to_features(frame, fs.modalities, fs.dims(), fs.covariates.shape[1])
    np.testing.assert_array_equal(back.mask, fs.mask)
    np.testing.assert_allclose(back.embeddings["eeg"], fs.embeddings["eeg"], rtol=1e-6)
    frame.at[int(np.flatnonzero(fs.mask[:, 0])[0]), "emb_ct"] = np.zeros(3)
    with pytest.raises(ValueError, match="emb_ct has 3 values"):
        frame_to_features(frame, fs.modalities, fs.dims(), fs.covariates.shape[1])


@pytest.mark.slow
def test_gate_promotes_better_keeps_worse_as_candidate(mlflow_local, good_and_bad_models, held_out):
    import mlflow

    from flows.tracking import runs as tracking

    settings = mlflow_local
    good, bad = good_and_bad_models
    decisions = []
    for model_dir in (good, bad):
        with tracking.stage_run("train", settings):
            info = registry.log_pyfunc(model_dir, held_out)
            decisions.append(registry.register_with_gate(info.model_uri, None, held_out))
    first, second = decisions
    assert (first.version, first.alias) == ("1", "champion")
    assert second.alias == "candidate" and second.champion_version == "1"
    assert second.candidate_auroc < second.champion_auroc
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("clinfuse", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("clinfuse", "candidate").version) == "2"
    assert client.get_model_version("clinfuse", "2").tags["gate_decision"] == "candidate"
    run = client.get_run(client.get_model_version("clinfuse", "2").run_id)
    assert run.data.params["gate_decision"] == "candidate" and "gate_champion_auroc" in run.data.metrics

    model, version, _ = registry.load_champion()
    assert version == "1"
    # The signature declares every embedding and mask column.
    names = model.metadata.get_input_schema().input_names()
    assert {"emb_ct", "emb_note", "mask_ct", "mask_xray", "mask_eeg", "mask_note"} <= set(names)
    out = registry.score(model, held_out, n_mc=5)
    assert len(out) == len(held_out) and out["risk"].between(0, 1).all()
    missing = ~held_out.mask
    for j, m in enumerate(held_out.modalities):
        # A missing modality is either imputed (with donors) or reported missing; never "present".
        assert not (out.loc[missing[:, j], f"mask_{m}"] == "present").any()
    imputed = out[[c for c in out.columns if c.startswith("mask_")]].eq("imputed").any(axis=1)
    assert out.loc[imputed, "donors_json"].str.contains("patient_id").all()
    # Hiding a modality through the mask changes what the model sees.
    hidden = held_out.with_mask(held_out.mask & np.array([False, True, True, True]))
    assert not np.allclose(registry.score(model, hidden, n_mc=0)["risk"], out["risk"])


@pytest.mark.slow
def test_pyfunc_holds_no_training_machine_paths(mlflow_local, good_and_bad_models, held_out, tmp_path):
    import mlflow

    from flows.tracking import runs as tracking

    good, _ = good_and_bad_models
    with tracking.stage_run("train", mlflow_local):
        info = registry.log_pyfunc(good, held_out)
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    for path in tmp_path.joinpath("dl").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".txt", ""):
            # MLflow's own note of where its store keeps the model is not part of the pyfunc.
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if not ln.startswith("artifact_path:")]
            text = "\n".join(lines)
            assert str(good) not in text and str(mlflow_local.home) not in text, path
    loaded = mlflow.pyfunc.load_model(local)
    assert len(loaded.predict(features_to_frame(held_out), params={"n_mc": 0})) == len(held_out)
