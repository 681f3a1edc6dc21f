"""Fan-out over a 2-worker Dask LocalCluster gives the same manifest as the default task runner."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.mark.slow
def test_dask_ingest_matches_default(tmp_path, small_phantom, monkeypatch):
    from flows.flows.ingest import ingest_flow
    from flows.prefect_env import prefect_settings, task_runner
    from flows.settings import Settings

    monkeypatch.setenv("CLINFUSE_PSEUDONYM_SECRET", "one-secret-for-both-homes")  # else each home draws its own
    homes = {"default": tmp_path / "default", "dask": tmp_path / "dask"}
    for kind, home in homes.items():
        settings = Settings(home=home)
        with prefect_settings(settings):
            runner = task_runner(settings, dask=(kind == "dask"))
            ingest_flow.with_options(task_runner=runner)(source=str(small_phantom),
                                                         cohort_csv=str(small_phantom / "cohort.csv"),
                                                         home=str(home))
    cols = ["item_id", "patient_id", "modality", "source_uri", "status", "reason", "array_uri"]
    a, b = (pd.read_parquet(h / "manifest.parquet")[cols].sort_values("item_id").reset_index(drop=True)
            for h in homes.values())
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)


def test_task_runner_choice(settings):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.prefect_env import task_runner

    assert isinstance(task_runner(settings, dask=False), ThreadPoolTaskRunner)
    local = task_runner(settings, dask=True)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    remote = task_runner(settings.model_copy(update={"dask_address": "tcp://10.0.0.5:8786"}), dask=True)
    assert remote.address == "tcp://10.0.0.5:8786"
