"""Registration that may be retried: the same trained model is never registered twice, nor left half-registered.

Why: registration is several requests to MLflow (create the version, alias, tags,
description). When the tracking server goes away between two of them, the task is
retried (``flows.flows.tasks.RETRY``) or the flow is re-run, and without care the
attempt before would leave a version that no alias points at, and the next one a
second version of the same model. Each attempt's training run is tagged with the
trained model's key (its folder's id) *before* anything is registered; a retry first
looks at the versions made by runs with that key: one without an alias was never
visible to a reader and is deleted, one with an alias is the finished registration
and is returned instead of registering again.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.names import MODEL_NAME
from flows.tracking import registry
from models.features.feature_set import FeatureSet

MODEL_KEY_TAG = "clinfuse.model_key"
"""Run tag: which trained model (its folder's id) this training run registers."""


def attempts_for(client: MlflowClient, name: str, model_key: str) -> list[Any]:
    """Versions of ``name`` registered by any training run of the trained model ``model_key``."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    found, runs = [], {}
    for version in versions:
        if not version.run_id:
            continue
        if version.run_id not in runs:
            try:
                runs[version.run_id] = client.get_run(version.run_id).data.tags.get(MODEL_KEY_TAG)
            except MlflowException:
                runs[version.run_id] = None
        if runs[version.run_id] == model_key:
            found.append(client.get_model_version(name, version.version))  # a search result lacks the aliases
    return sorted(found, key=lambda v: int(v.version))


def settle_earlier_attempts(client: MlflowClient, name: str, model_key: str) -> registry.GateDecision | None:
    """Delete versions an interrupted attempt left without an alias; the finished registration, if one exists."""
    finished = None
    for version in attempts_for(client, name, model_key):
        if not version.aliases:
            client.delete_model_version(name, version.version)
            mlflow.set_tag("clinfuse.registration_cleaned", f"v{version.version}: no alias, deleted")
        elif finished is None:
            finished = version
    if finished is None:
        return None
    tags = finished.tags or {}
    alias = tags.get("gate_decision") or sorted(finished.aliases)[0]
    return registry.GateDecision(name, str(finished.version), alias, float(tags.get("held_out_auroc", "nan")),
                                 None, None, f"registered by an earlier attempt ({finished.description or alias})")


def register_once(model_uri: str, held_out: FeatureSet, *, model_key: str, name: str = MODEL_NAME,
                  client: MlflowClient | None = None, **gate: Any) -> registry.GateDecision:
    """:func:`registry.register_with_gate` for the trained model ``model_key``, safe to call again after a failure.

    Must run inside the training run, which is tagged with ``model_key`` first.
    """
    client = client or MlflowClient()
    mlflow.set_tag(MODEL_KEY_TAG, model_key)
    earlier = settle_earlier_attempts(client, name, model_key)
    if earlier is not None:
        mlflow.log_params({"gate_decision": earlier.alias, "registered_version": earlier.version})
        mlflow.set_tag("clinfuse.gate_decision", earlier.alias)
        return earlier
    return registry.register_with_gate(model_uri, None, held_out, client=client, name=name, **gate)
