"""The whole pipeline as Prefect flows (ephemeral API) on a real phantom cohort; re-runs are cache hits."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest


def _task_states(since: datetime) -> dict[str, list[str]]:
    """Task name prefix -> state names of every task run started after ``since``."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            start_time=TaskRunFilterStartTime(after_=since)), limit=200)
    out: dict[str, list[str]] = {}
    for run in runs:
        out.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name)
    return out


@pytest.mark.slow
def test_pipeline_runs_then_rerun_recomputes_nothing(settings, small_phantom, monkeypatch):
    import mlflow

    from flows.pipeline_flow import pipeline_flow
    from flows.prefect_env import prefect_settings
    from models.predictions_store import batch_files, read_latest_batch

    with prefect_settings(settings):
        first = pipeline_flow(source=str(small_phantom), cohort_csv=str(small_phantom / "cohort.csv"),
                              home=str(settings.home), epochs=8)
        assert first["ingest"]["new"] > 0
        assert first["train"]["alias"] == "champion" and first["train"]["version"] == "1"
        batch = read_latest_batch(settings.predictions_dir)
        cohort = pd.read_parquet(settings.cohort_path)
        assert set(batch.patient_id) == set(cohort.patient_id)
        assert batch.patient_id.str.fullmatch(r"P[0-9a-f]{12}").all()
        assert set(batch.model_version) == {"1"} and set(batch.run_id) == {first["train"]["run_id"]}
        manifest_mtime = settings.manifest_path.stat().st_mtime_ns

        since = datetime.now(timezone.utc)
        second = pipeline_flow(source=str(small_phantom), cohort_csv=str(small_phantom / "cohort.csv"),
                               home=str(settings.home), epochs=8)
        states = _task_states(since)

    for name in ("ingest", "encode", "train", "evaluate", "register", "predict"):
        assert states.get(name) and set(states[name]) == {"Cached"}, (name, states)
    assert set(states) <= {"ingest", "encode", "train", "evaluate", "register", "predict", "load-features"}
    assert second["predict"]["path"] == first["predict"]["path"]
    assert len(batch_files(settings.predictions_dir)) == 1
    assert settings.manifest_path.stat().st_mtime_ns == manifest_mtime
    assert len(mlflow.MlflowClient().search_model_versions("name='clinfuse'")) == 1
    train_runs = mlflow.search_runs(experiment_names=["clinfuse-train"])
    assert len(train_runs) == 1
    run = train_runs.iloc[0]
    assert run["params.fusion"] == "early" and run["params.epochs"] == "8"
    assert run["tags.clinfuse.manifest_sha256"] and run["tags.clinfuse.encoder.ct"]
    assert any(c.startswith("metrics.heldout.") for c in train_runs.columns)
    inputs = mlflow.get_run(run["run_id"]).inputs.dataset_inputs
    assert {d.dataset.name for d in inputs} == {"manifest", "encoders"}
