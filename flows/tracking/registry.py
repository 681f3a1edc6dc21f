"""Log the pyfunc, register it as ``clinfuse`` and decide its alias: the champion gate.

The gate: a new version becomes ``champion`` only when its AUROC on the
held-out split beats the current champion's AUROC on that same split (the
champion is re-scored now, so both numbers come from identical patients);
otherwise it is ``candidate``. The decision and both numbers are written as a
version tag, version description and run params, so the registry explains
itself.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.metrics import roc_auc_score

from flows.names import CANDIDATE, CHAMPION, MODEL_NAME
from flows.tracking.pyfunc_model import ARTIFACT_KEY, features_to_frame, model_signature
from models.features.feature_set import FeatureSet

PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
"""Models-from-code script logged with each model (no pickled Python object in the artifacts)."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one registered version, and on which numbers."""

    model_name: str
    version: str
    alias: str
    candidate_auroc: float
    champion_version: str | None
    champion_auroc: float | None
    reason: str


def decide(candidate_auroc: float, champion_auroc: float | None, min_gain: float = 0.0) -> tuple[str, str]:
    """``(alias, reason)``: champion when there is none or the candidate beats it by more than ``min_gain``."""
    if champion_auroc is None or not np.isfinite(champion_auroc):
        return CHAMPION, "no champion could be scored on the held-out split: first promoted version"
    if not np.isfinite(candidate_auroc):
        return CANDIDATE, "candidate AUROC is undefined on the held-out split"
    if candidate_auroc > champion_auroc + min_gain:
        return CHAMPION, f"held-out AUROC {candidate_auroc:.4f} beats champion's {champion_auroc:.4f}"
    return CANDIDATE, f"held-out AUROC {candidate_auroc:.4f} does not beat champion's {champion_auroc:.4f}"


def _requirements() -> list[str]:
    """Pinned requirements without MLflow's slow import capture (the code is the installed clinfuse)."""
    reqs = []
    for pkg in ("torch", "numpy", "pandas", "scikit-learn", "scipy", "monai"):
        try:
            reqs.append(f"{pkg}=={md.version(pkg)}")
        except md.PackageNotFoundError:
            continue
    return reqs


def log_pyfunc(model_dir: Path, features: FeatureSet, n_example: int = 2) -> mlflow.models.model.ModelInfo:
    """Log the saved TrainedModel folder as the pyfunc ``model`` of the active run."""
    example = features_to_frame(features.subset(np.arange(min(n_example, len(features)))))
    with tempfile.TemporaryDirectory(prefix="clinfuse-model-") as tmp:
        # Logged from a throwaway copy: MLflow records the source folder's path in MLmodel,
        # and the training machine's paths must not travel with the model.
        staged = Path(tmp) / ARTIFACT_KEY
        shutil.copytree(model_dir, staged)
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_ENTRY), artifacts={ARTIFACT_KEY: str(staged)},
            signature=model_signature(tuple(features.modalities), tuple(features.covariate_names)),
            input_example=example,
            pip_requirements=_requirements(),
        )


def held_out_auroc(model_uri: str, held_out: FeatureSet) -> float:
    """AUROC of the model at ``model_uri`` on ``held_out`` (NaN when one class only)."""
    model = mlflow.pyfunc.load_model(model_uri)
    risk = model.predict(features_to_frame(held_out), params={"n_mc": 0})["risk"].to_numpy()
    labels = np.asarray(held_out.labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, risk))


def champion_version(client: MlflowClient, name: str = MODEL_NAME):
    """The version holding the ``champion`` alias, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _new_version(client: MlflowClient, name: str, model_uri: str):
    """A new version of ``name`` from the logged model at ``model_uri`` (``models:/<model id>``), in the active run.

    Through the client rather than ``mlflow.register_model``, which prints to stderr between the
    pipeline's progress lines; the version is the same (source, run, logged model).
    """
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    run = mlflow.active_run()
    return client.create_model_version(name, source=model_uri, run_id=run.info.run_id if run else None,
                                       model_id=model_id)


def register_with_gate(
    model_uri: str,
    candidate_auroc: float | None,
    held_out: FeatureSet,
    *,
    client: MlflowClient | None = None,
    name: str = MODEL_NAME,
    min_gain: float = 0.0,
    scorer: Callable[[str, FeatureSet], float] = held_out_auroc,
) -> GateDecision:
    """Register ``model_uri`` as a new version of ``name`` and give it ``champion`` or ``candidate``.

    Must run inside the training run (the decision is also logged as run params).
    ``candidate_auroc=None`` scores the candidate with ``scorer`` exactly as the champion is scored.
    """
    client = client or MlflowClient()
    if candidate_auroc is None:
        candidate_auroc = scorer(model_uri, held_out)
    current = champion_version(client, name)
    champ_auroc = None
    if current is not None:
        try:
            champ_auroc = scorer(f"models:/{name}@{CHAMPION}", held_out)
        except Exception as exc:  # noqa: BLE001 - an unloadable champion must not block registration
            mlflow.set_tag("clinfuse.gate_warning", f"champion v{current.version} could not be scored: {exc}"[:500])
    alias, reason = decide(candidate_auroc, champ_auroc, min_gain)
    if current is not None and champ_auroc is None:
        alias, reason = CANDIDATE, f"champion v{current.version} could not be re-scored; kept, new version is candidate"
    version = _new_version(client, name, model_uri)
    client.set_registered_model_alias(name, alias, version.version)
    client.set_model_version_tag(name, version.version, "gate_decision", alias)
    client.set_model_version_tag(name, version.version, "held_out_auroc", f"{candidate_auroc:.6f}")
    client.update_model_version(name, version.version, description=f"Gate: {alias}. {reason}")
    mlflow.log_params({"gate_decision": alias, "gate_reason": reason[:500], "registered_version": version.version,
                       "gate_champion_version": str(current.version) if current else "none"})
    mlflow.log_metric("gate_candidate_auroc", candidate_auroc)
    if champ_auroc is not None and np.isfinite(champ_auroc):
        mlflow.log_metric("gate_champion_auroc", champ_auroc)
    mlflow.set_tag("clinfuse.gate_decision", alias)
    return GateDecision(name, str(version.version), alias, float(candidate_auroc),
                        str(current.version) if current else None, champ_auroc, reason)


def require_champion(name: str = MODEL_NAME):
    """The ``champion`` version of ``name``; LookupError saying how to make one when there is none."""
    current = champion_version(MlflowClient(), name)
    if current is None:
        raise LookupError(f"no '{CHAMPION}' version of model '{name}' in the registry at "
                          f"{mlflow.get_registry_uri()}: run `clinfuse pipeline` (or the train flow) first")
    return current


def load_champion(name: str = MODEL_NAME) -> tuple[mlflow.pyfunc.PyFuncModel, str, str]:
    """``(model, version, run_id)`` of ``models:/<name>@champion``; a clear error when there is none."""
    current = require_champion(name)
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}"), str(current.version), str(current.run_id)


def score(model: mlflow.pyfunc.PyFuncModel, features: FeatureSet, n_mc: int = 30) -> pd.DataFrame:
    """Model output columns for ``features`` through the pyfunc (the path a serving endpoint takes)."""
    return model.predict(features_to_frame(features), params={"n_mc": n_mc})
