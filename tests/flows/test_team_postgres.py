"""Team mode on PostgreSQL, and a Prefect worker killed mid-flow (issue 16, items 2 and 3).

The session's throwaway PostgreSQL cluster (Debian's postgresql, initdb + pg_ctl, loopback, free port) holds
the Prefect server's database and the MLflow server's backend store; MLflow serves the artifacts.
A cpu and a gpu process worker run the deployments. Module-scoped: the servers start once.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from flows.serve.team import Services, mlflow_server, prefect_server, worker
from tests.conftest import free_port
from tests.flows.pg_cluster import pg_bindir
from tests.flows.proc_helpers import kill_all, survivors, tree

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(1800),
              pytest.mark.skipif(pg_bindir() is None, reason="PostgreSQL server binaries (initdb, pg_ctl) are not "
                                 "installed: apt-get install postgresql (scripts/ensure-system-packages.sh)")]

LOST_AFTER_S = 60  # the requeue automation's window; heartbeats every 30 s (Prefect's minimum)


@pytest.fixture(scope="module")
def team(tmp_path_factory, small_phantom, pg_session):
    """PostgreSQL, Prefect server + MLflow server on it, pools, deployments, the requeue automation, workers."""
    from flows.serve.deployments import deploy_all, ensure_automations, ensure_pools
    from flows.prefect_env import prefect_settings
    from flows.settings import Settings

    root = tmp_path_factory.mktemp("team")
    with pg_session.databases(("prefect", "mlflow")) as pg:
        settings = Settings(home=root / "home", prefect_database_url=SecretStr(pg.url("prefect", "asyncpg")),
                            mlflow_backend_store_uri=SecretStr(pg.url("mlflow")))
        settings.ensure_dirs()
        services = Services(root / "logs", startup_timeout_s=400)
        with services:
            prefect, mlflow = services.start_together([prefect_server(settings, free_port()),
                                                       mlflow_server(settings, free_port())])
            api, mlflow_url = prefect.url + "/api", mlflow.url
            served = settings.model_copy(update={"prefect_api_url": api, "mlflow_tracking_uri": mlflow_url})
            with prefect_settings(served):
                ensure_pools(gpu_limit=1)
                ensure_automations(lost_after_s=LOST_AFTER_S)
                deploy_all(served, str(small_phantom), str(small_phantom / "cohort.csv"), schedules=False)
                for pool in ("cpu", "gpu"):
                    services.start(worker(served, pool, api, mlflow_url))
                yield {"pg": pg, "settings": served, "services": services, "api": api, "mlflow": mlflow_url,
                       "root": root}


@pytest.fixture(scope="module")
def site(team):
    """The `pipeline` deployment run once by the cpu worker into a site home: (home, flow run)."""
    from prefect.deployments import run_deployment

    home = team["root"] / "site"
    run = run_deployment("pipeline/pipeline", parameters={"home": str(home), "epochs": 8, "n_mc": 0},
                         timeout=900, poll_interval=3)
    return home, run


def test_pipeline_on_postgres_servers_registers_a_champion_the_dashboard_reads(team, site):
    import mlflow

    from dashboard.registry_reads import read_registry

    home, run = site
    assert run.state.is_completed(), run.state
    client = mlflow.MlflowClient(tracking_uri=team["mlflow"], registry_uri=team["mlflow"])
    champion = client.get_model_version_by_alias("clinfuse", "champion")
    assert champion.version == "1"
    # The model's files went through the server (served artifacts), not to a path this test can see.
    assert client.get_run(champion.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    # Both URIs: an earlier test in this process may have left a registry URI set (mlflow keeps it globally),
    # and models:/ resolves through the registry, not the tracking server.
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        mlflow.set_tracking_uri(team["mlflow"])
        mlflow.set_registry_uri(team["mlflow"])
        model = mlflow.pyfunc.load_model("models:/clinfuse@champion")
        assert model.metadata.run_id == champion.run_id
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    # Both servers keep their state in PostgreSQL.
    pg = team["pg"]
    assert pg.sql("mlflow", "SELECT count(*) FROM model_versions WHERE name = 'clinfuse'") == "1"
    assert int(pg.sql("prefect", "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")) >= 4
    # The dashboard's registry page reads the same registry through the server.
    snapshot = read_registry(team["mlflow"])
    assert snapshot.available and snapshot.champion_version == "1" and snapshot.champion_metrics
    assert len(pd.read_parquet(next((home / "predictions").glob("*.parquet")))) > 0


def _index_rows(path: Path) -> int:
    try:
        return len(pd.read_parquet(path)) if path.exists() else 0
    except Exception:  # noqa: BLE001 - being written
        return 0


def _ingested_copy(site_home: Path, home: Path) -> None:
    """A new home holding the site's ingest outputs only (manifest paths are relative to the home)."""
    home.mkdir(parents=True)
    shutil.copytree(site_home / "arrays", home / "arrays")
    for name in ("manifest.parquet", "cohort.parquet", "pseudonym_secret"):
        if (site_home / name).exists():
            shutil.copy2(site_home / name, home / name)


def test_worker_killed_mid_encode_its_run_is_requeued_and_completes_cleanly(team, site):
    from prefect import get_client
    from prefect.deployments import run_deployment

    from ingestion.manifest import read_manifest
    from models.stores.embeddings import KEY_COLUMNS, EmbeddingStore
    from models.features.assemble import usable_items

    services, settings = team["services"], team["settings"]
    home = team["root"] / "killed"
    _ingested_copy(site[0], home)
    run = run_deployment("encode/encode-nightly", parameters={"home": str(home), "batch_size": 2}, timeout=0)
    index = home / "embeddings" / "index.parquet"
    gpu = next(s for s in services.started if s.name == "worker-gpu")
    deadline = time.monotonic() + 400
    while _index_rows(index) == 0:
        assert time.monotonic() < deadline, "encode stored nothing within 400 s"
        time.sleep(0.5)
    victims = tree(gpu.process.pid)  # the worker and the flow-run processes it started
    kill_all(victims)  # kill -9, as a lost machine or the OOM killer would
    killed_at, killed_wall = time.monotonic(), datetime.now(timezone.utc)
    assert survivors(victims, timeout_s=10) == []
    stored_at_kill = _index_rows(index)
    services.start(dataclasses.replace(worker(settings, "gpu", team["api"], team["mlflow"]), name="worker-gpu-2"))
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(run.id)
            if flow_run.state.is_final():
                break
            assert time.monotonic() - killed_at < 600, f"run not finished 600 s after the kill: {flow_run.state}"
            time.sleep(2)
        history = client.read_flow_run_states(run.id)
    states = [s.name for s in history]
    recovered_s = time.monotonic() - killed_at
    requeued_s = next(((s.timestamp - killed_wall).total_seconds() for s in history if s.name == "AwaitingRetry"), -1)
    assert flow_run.state.is_completed(), states
    assert "AwaitingRetry" in states and flow_run.run_count >= 2, states
    store = EmbeddingStore(home / "embeddings")
    assert store.verify() == [], "a stored vector fails its checksum"
    rows = store.index()
    assert not rows.duplicated(list(KEY_COLUMNS)).any(), "an item was stored twice"
    usable = usable_items(read_manifest(home / "manifest.parquet")).drop_duplicates("content_sha256")
    assert set(usable["content_sha256"]) <= set(rows["content_sha256"]) and 0 < stored_at_kill < len(rows)
    print(f"\nworker kill: {stored_at_kill}/{len(rows)} stored at the kill; requeued {requeued_s:.0f} s and "
          f"completed {recovered_s:.0f} s after it (states: {' -> '.join(states)})")
