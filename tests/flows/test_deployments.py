"""Team mode with real servers on 127.0.0.1: Prefect server + process worker, and an MLflow server."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.serve.team import Services, mlflow_server, worker
from tests.conftest import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(900)]


def test_pools_deployments_and_a_worker_run(settings, small_phantom, prefect_api):
    from prefect import get_client
    from prefect.deployments import run_deployment

    from flows.serve.deployments import deploy_all, ensure_pools
    from flows.prefect_env import prefect_settings

    services = Services(settings.home / "logs", startup_timeout_s=300)
    with services:
        api = prefect_api  # the flows tests' shared Prefect server (tests/flows/conftest.py)
        served = settings.model_copy(update={"prefect_api_url": api})
        with prefect_settings(served):
            limits = ensure_pools(gpu_limit=1)
            rows = deploy_all(served, str(small_phantom), str(small_phantom / "cohort.csv"))
            assert ("ingest/ingest-nightly", "cpu", "0 2 * * *") in rows
            assert ("train/train-weekly", "gpu", "0 4 * * 0") in rows and ("predict/predict", "cpu", "on demand") in rows
            with get_client(sync_client=True) as client:
                pools = {name: client.read_work_pool(name) for name in ("cpu", "gpu")}
                assert pools["gpu"].type == "process" and pools["gpu"].concurrency_limit == limits["gpu"] == 1
                assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1
                dep = client.read_deployment_by_name("train/train-weekly")
                assert dep.work_pool_name == "gpu" and dep.schedules[0].schedule.cron == "0 4 * * 0"
                assert dep.parameters == {"fusion": "early", "impute": "auto"}  # the CLI's defaults, spelled out
            services.start(worker(settings, "cpu", api))
            run = run_deployment("ingest/ingest-nightly", timeout=600, poll_interval=3)
            assert run.state.is_completed(), run.state
    manifest = pd.read_parquet(settings.manifest_path)
    assert (manifest["status"] == "ok").sum() > 10
    assert pd.read_parquet(settings.cohort_path)["patient_id"].str.fullmatch(r"P[0-9a-f]{12}").all()


def test_mlflow_server_registry_gate_and_champion_pyfunc(settings, good_and_bad_models, held_out):
    import mlflow

    from flows.tracking import registry, runs as tracking

    services = Services(settings.home / "logs", startup_timeout_s=300)
    before = mlflow.get_tracking_uri()
    with services:
        url = services.start(mlflow_server(settings, free_port())).url
        served = settings.model_copy(update={"mlflow_tracking_uri": url})
        try:
            decisions = []
            for model_dir in good_and_bad_models:
                with tracking.stage_run("train", served):
                    info = registry.log_pyfunc(model_dir, held_out)
                    decisions.append(registry.register_with_gate(info.model_uri, None, held_out))
            assert [d.alias for d in decisions] == ["champion", "candidate"]
            model = mlflow.pyfunc.load_model("models:/clinfuse@champion")
            out = registry.score(model, held_out, n_mc=0)
            assert len(out) == len(held_out) and {"mask_ct", "donors_json", "contrib_eeg"} <= set(out.columns)
            client = mlflow.MlflowClient()
            assert client.get_model_version("clinfuse", "2").tags["gate_decision"] == "candidate"
        finally:
            mlflow.set_tracking_uri(before)
            mlflow.set_registry_uri(before)
