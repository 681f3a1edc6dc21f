"""MLflow helpers: experiments per stage, flat params/metrics, PHI-free lineage."""

from __future__ import annotations

import pandas as pd

from flows.tracking import runs as tracking
from ingestion.deid.pseudonym import pseudonymise


def test_flatten_and_numeric_metrics():
    nested = {"auroc": 0.8, "ci": {"low": 0.7, "high": 0.9}, "note": "x", "ok": True, "bad": float("nan"), "n": 5}
    assert tracking.numeric_metrics(nested) == {"auroc": 0.8, "ci.low": 0.7, "ci.high": 0.9, "n": 5.0}
    assert tracking.flatten({"a b": {"c(d)": 1}}) == {"a b.c_d_": 1}


def test_stage_run_lineage_and_config(mlflow_local, tmp_path):
    import mlflow

    from models.training.train import TrainConfig

    pid = pseudonymise("MRN00412345", "s")
    manifest = pd.DataFrame({"item_id": ["a", "b"], "patient_id": [pid, pid], "modality": ["ct", "note"],
                             "content_sha256": ["a", "b"], "status": ["ok", "quarantined"],
                             "source_uri": ["dicom/x", "notes/y.txt"], "reason": ["", "unreadable"],
                             "pipeline_version": ["0.1.0", "0.1.0"]})
    path = tmp_path / "manifest.parquet"
    manifest.to_parquet(path)
    encoders = pd.DataFrame([{"modality": "ct", "encoder_name": "ct-resnet3d", "encoder_version": "abc",
                              "preprocessing_hash": "def"}])
    with tracking.stage_run("train", mlflow_local, run_name="t") as run:
        tracking.log_config(TrainConfig(epochs=3))
        tracking.log_metrics({"auroc": 0.75, "by_cohort": {"paired": 0.8}}, prefix="heldout.")
        tags = tracking.log_lineage(path, encoders)
    got = mlflow.get_run(run.info.run_id)
    assert mlflow.get_experiment(got.info.experiment_id).name == "clinfuse-train"
    assert got.data.params["epochs"] == "3" and got.data.params["fusion"] == "early"
    assert got.data.metrics == {"heldout.auroc": 0.75, "heldout.by_cohort.paired": 0.8}
    assert got.data.tags["clinfuse.manifest_sha256"] == tags["clinfuse.manifest_sha256"]
    assert got.data.tags["clinfuse.encoder.ct"] == "ct-resnet3d@abc"
    assert "mlflow.source.git.commit" in got.data.tags and got.data.tags["clinfuse.version"]
    names = {d.dataset.name for d in got.inputs.dataset_inputs}
    assert names == {"manifest", "encoders"}
    # Lineage keeps ids and hashes, not source paths or free-text reasons.
    assert list(tracking.manifest_lineage(manifest).columns) == [
        "item_id", "patient_id", "modality", "content_sha256", "status", "pipeline_version"]
