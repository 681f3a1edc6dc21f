"""Team mode on a Prefect server: work pools ``cpu`` and ``gpu``, deployments and their cron schedules.

Deployments point at the flows by module path (``flows.flows.ingest.ingest_flow``),
so any machine where clinfuse is installed can run them with
``prefect worker start --pool cpu`` (or ``gpu``) and no code is shipped. Encoding
and training go to ``gpu``; the pool's concurrency limit is the number of GPUs
on this machine (at least 1), and a tag concurrency limit ``gpu`` caps the
encode/train tasks (tagged ``gpu``) across every flow run at the same number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.choices import DEFAULT_FUSION, DEFAULT_IMPUTE
from flows.prefect_env import prefect_env
from flows.settings import Settings

POOLS = ("cpu", "gpu")
TRAINING_DEFAULTS: dict[str, Any] = {"fusion": DEFAULT_FUSION.value, "impute": DEFAULT_IMPUTE.value}
"""Spelled out on the scheduled runs so they train what `clinfuse train` and `clinfuse pipeline` train by default."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, which pool, when (cron, server time zone UTC unless set), which parameters."""

    flow: str
    name: str
    pool: str
    cron: str | None
    needs_source: bool = False
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec("ingest", "ingest-nightly", "cpu", "0 2 * * *", True, "Nightly ingest of the site's export folder."),
    DeploymentSpec("encode", "encode-nightly", "gpu", "0 3 * * *", False, "Nightly encoding of new items."),
    DeploymentSpec("train", "train-weekly", "gpu", "0 4 * * 0", False, "Weekly training + champion gate (Sunday).",
                   TRAINING_DEFAULTS),
    DeploymentSpec("evaluate", "evaluate-weekly", "cpu", "0 6 * * 0", False, "Weekly re-evaluation of the champion."),
    DeploymentSpec("predict", "predict", "cpu", None, False, "On demand: batch prediction of a cohort folder."),
    DeploymentSpec("pipeline", "pipeline", "cpu", None, True, "On demand: the whole pipeline.", TRAINING_DEFAULTS),
    DeploymentSpec("pacs-ingest", "pacs-hourly", "cpu", "0 * * * *", False,
                   "Hourly pull of new series from the PACS (CLINFUSE_PACS_URL), then ingest."),
)

ENTRYPOINTS = {
    "ingest": "flows.flows.ingest:ingest_flow", "encode": "flows.flows.encode:encode_flow",
    "train": "flows.flows.train:train_flow", "evaluate": "flows.flows.evaluate:evaluate_flow",
    "predict": "flows.flows.predict:predict_flow", "pipeline": "flows.flows.pipeline:pipeline_flow",
    "pacs-ingest": "flows.flows.pacs:pacs_ingest_flow",
}


def gpu_slots() -> int:
    """GPUs on this machine, at least 1 (a CPU-only machine still runs one encode/train at a time)."""
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001
        return 1


def preload(flows: bool = True) -> None:
    """Import what :func:`ensure_pools` and :func:`deploy_all` need (Prefect's client, the flow modules).

    ``clinfuse serve`` calls it while its servers boot, so these seconds of imports
    overlap the servers' start-up instead of following it.
    """
    import importlib

    gpu_slots()  # imports torch to count the GPUs; ensure_pools asks again, then at no cost
    modules = ["prefect.client.orchestration", "prefect.workers.process"]
    modules += [entry.split(":")[0] for entry in ENTRYPOINTS.values()] if flows else []
    for module in modules:
        importlib.import_module(module)


def _flow(name: str):
    import importlib

    module, attr = ENTRYPOINTS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def ensure_pools(gpu_limit: int | None = None, cpu_limit: int | None = None) -> dict[str, int | None]:
    """Create the process work pools (and the ``gpu`` tag limit) when absent; update their limits."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    gpu_limit = gpu_limit or gpu_slots()
    limits = {"cpu": cpu_limit, "gpu": gpu_limit}
    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        for pool, limit in limits.items():
            try:
                client.read_work_pool(pool)
                client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=limit))
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process", base_job_template=template, concurrency_limit=limit,
                    description=f"clinfuse {pool} work (process worker)"))
        client.create_concurrency_limit(tag="gpu", concurrency_limit=gpu_limit)
    return limits


HEARTBEAT_S = 30
LOST_AFTER_S = 90
REQUEUE_AUTOMATION = "clinfuse: requeue runs whose worker was lost"


def ensure_automations(heartbeat_s: int = HEARTBEAT_S, lost_after_s: int = LOST_AFTER_S) -> str:
    """Create (or update) the automation that gives a lost flow run to another worker; returns its id.

    Why: a worker killed mid-run (kill -9, OOM, a lost machine) leaves its flow run
    ``Running`` forever; nothing in the run survives to retry it. Each deployment run
    emits a heartbeat every ``heartbeat_s`` (see :func:`job_env`); a run whose
    heartbeats stop for ``lost_after_s`` without reaching a final state is set back to
    ``Scheduled`` (named ``AwaitingRetry``), so the next free worker of its pool runs
    it again with the same parameters. The stages are idempotent (content-hashed
    manifest, embedding store keyed by content), so the new attempt resumes.
    """
    from datetime import timedelta

    from prefect import get_client
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if lost_after_s < 2 * heartbeat_s:
        raise ValueError("lost_after_s must be at least two heartbeats, or a slow but live run is requeued")
    final = ("Completed", "Failed", "Cancelled", "Crashed", "Cancelling")
    automation = AutomationCore(
        name=REQUEUE_AUTOMATION,
        description=f"No heartbeat for {lost_after_s} s: the worker was lost; run it again on another worker.",
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in final)},
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=lost_after_s)),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", force=True,
                                    message=f"no heartbeat for {lost_after_s} s: its worker was lost; requeued")],
    )
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(REQUEUE_AUTOMATION)
        if existing:
            client.update_automation(existing[0].id, automation)
            return str(existing[0].id)
        return str(client.create_automation(automation))


def job_env(settings: Settings) -> dict[str, str]:
    """What a worker's flow-run process needs to find this site's data and servers, and its heartbeat."""
    env = {"CLINFUSE_HOME": str(settings.home), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
    if settings.mlflow_tracking_uri:
        env["CLINFUSE_MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.prefect_api_url:
        env["CLINFUSE_PREFECT_API_URL"] = settings.prefect_api_url
    env.update({k: v for k, v in prefect_env(settings).items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")})
    return env


def deploy_all(settings: Settings, source: str | None = None, cohort_csv: str | None = None,
               only: tuple[str, ...] | None = None, schedules: bool = True) -> list[tuple[str, str, str]]:
    """Create or update every deployment; returns ``(flow/deployment, pool, schedule)`` rows.

    Flows that need a source folder (ingest, pipeline) are deployed with ``source``
    as default parameter; without one they are skipped (their runs could not start).
    """
    from prefect.deployments.runner import EntrypointType

    done = []
    for spec in DEPLOYMENTS:
        if only and spec.flow not in only:
            continue
        if spec.flow == "pacs-ingest" and not settings.pacs_url:
            continue  # no PACS configured: its runs could not start
        params = dict(spec.parameters)
        if spec.needs_source:
            if not source:
                continue
            params.update({"source": source, "cohort_csv": cohort_csv})
        deployment = _flow(spec.flow).to_deployment(
            name=spec.name, cron=spec.cron if schedules else None, parameters=params,
            description=spec.description, tags=["clinfuse", spec.pool], work_pool_name=spec.pool,
            job_variables={"env": job_env(settings)}, entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.apply()
        done.append((f"{spec.flow}/{spec.name}", spec.pool, spec.cron or "on demand"))
    return done
