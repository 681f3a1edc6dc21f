"""Log the pyfunc, register it as ``clinfuse`` and decide its alias: the champion gate.

The gate: a new version becomes ``champion`` only when its held-out AUROC gain
over the current champion clears ``min_gain`` at the *lower* bound of a paired
bootstrap interval on the same held-out patients (both models re-scored now),
not merely when the point AUROC is higher: the best of repeated looks at one
held-out split is an optimistic number. Every look is counted: each version is
tagged with a hash of the held-out patients it was compared on, and the bound is
one-sided at ``alpha / looks`` (Bonferroni over the versions compared on those
patients). The champion is scored on embeddings from its *own* encoder versions
(``features_for``); when they differ from the candidate's and no features with
them can be had, the champion is kept. The decision, the gain with its bound and
the look count are written as version tags, version description, run params and
run metrics, so the registry (and the model card) explains itself.
"""

from __future__ import annotations

import hashlib
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
from models.evaluation.metrics import MetricCI, paired_auroc_difference
from models.features.feature_set import FeatureSet

PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
"""Models-from-code script logged with each model (no pickled Python object in the artifacts)."""


GATE_ALPHA = 0.05
"""Family-wise error of the gate over every look at one held-out split (one-sided)."""
HELD_OUT_TAG = "held_out_set"
"""Version tag: hash of the held-out patients the version was compared on (counts the looks)."""


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
    gain_low: float | None = None
    """lower bound of the paired-bootstrap AUROC gain at ``alpha / looks`` (None: no champion compared)"""
    looks: int = 1
    """versions compared on these held-out patients, this one included"""


def decide(candidate_auroc: float, champion_auroc: float | None, min_gain: float = 0.0,
           gain: MetricCI | None = None, looks: int = 1) -> tuple[str, str]:
    """``(alias, reason)``: champion when there is none, or when the paired gain's lower bound exceeds ``min_gain``.

    ``gain`` is the paired-bootstrap AUROC(candidate) - AUROC(champion) on the same patients with its
    one-sided lower bound in ``gain.low``; without it (no paired scores) a candidate is never promoted
    over a scored champion, because a point difference alone does not say the candidate is better.
    """
    if champion_auroc is None or not np.isfinite(champion_auroc):
        return CHAMPION, "no champion could be scored on the held-out split: first promoted version"
    if not np.isfinite(candidate_auroc):
        return CANDIDATE, "candidate AUROC is undefined on the held-out split"
    if gain is None or not np.isfinite(gain.low):
        return CANDIDATE, (f"held-out AUROC {candidate_auroc:.4f} vs champion's {champion_auroc:.4f}: "
                           "no paired comparison, champion kept")
    what = (f"held-out AUROC {candidate_auroc:.4f} vs champion's {champion_auroc:.4f}, paired gain "
            f"{gain.value:+.4f} with lower bound {gain.low:+.4f} (one-sided, alpha {GATE_ALPHA:g} / {looks} "
            f"look{'s' if looks != 1 else ''} on these patients)")
    if gain.low > min_gain:
        return CHAMPION, f"{what} clears the margin {min_gain:.4f}"
    return CANDIDATE, f"{what} does not clear the margin {min_gain:.4f}"


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
            metadata=_output_metadata(model_dir),
        )


def _output_metadata(model_dir: Path) -> dict[str, str]:
    """How to read the output, from the bundle: the conformal level ("90 % nominal") and the range's kind."""
    import json

    from models.training.uncertainty import level_text

    meta = json.loads((Path(model_dir) / "model.json").read_text())
    level = meta.get("config", {}).get("interval_level")
    return {"interval_level": level_text(float(level)) if level is not None else "unknown",
            "risk_range": "Venn-Abers range of the calibrated risk (not a confidence interval of the true risk)"}


def held_out_risk(model_uri: str, held_out: FeatureSet) -> np.ndarray:
    """Risks of the model at ``model_uri`` for ``held_out`` (the pyfunc path, no Monte-Carlo draws)."""
    model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(features_to_frame(held_out), params={"n_mc": 0})["risk"].to_numpy()


def _auroc(labels: np.ndarray, risk: np.ndarray) -> float:
    return float(roc_auc_score(labels, risk)) if len(np.unique(labels)) == 2 else float("nan")


def held_out_key(held_out: FeatureSet) -> str:
    """Hash of the held-out patients (order-free): versions with the same key were compared on them."""
    return hashlib.sha256("\n".join(sorted(map(str, held_out.patient_ids))).encode()).hexdigest()[:16]


def count_looks(client: MlflowClient, name: str, key: str) -> int:
    """Versions of ``name`` already compared on the held-out patients ``key``, plus the one being registered."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return 1
    return 1 + sum(v.tags.get(HELD_OUT_TAG) == key for v in versions)


def _normal_keys(keys: dict | None) -> dict:
    return {m: (tuple(k) if k is not None else None) for m, k in (keys or {}).items()}


def model_encoder_keys(model_uri: str) -> dict:
    """The encoder versions the registered model at ``model_uri`` was trained on (from its bundle)."""
    model = mlflow.pyfunc.load_model(model_uri)
    return _normal_keys(getattr(model.unwrap_python_model().model, "encoder_keys", {}))


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
    scorer: Callable[[str, FeatureSet], np.ndarray] = held_out_risk,
    features_for: Callable[[dict], FeatureSet] | None = None,
    champion_keys: Callable[[str], dict] = model_encoder_keys,
    n_boot: int = 1000,
    seed: int = 0,
) -> GateDecision:
    """Register ``model_uri`` as a new version of ``name`` and give it ``champion`` or ``candidate``.

    Must run inside the training run (the decision is also logged as run params and metrics).
    ``scorer`` returns risks, so candidate and champion are compared patient by patient;
    ``candidate_auroc`` is accepted for callers that already have it but the candidate is re-scored
    for the paired comparison. ``features_for(encoder_keys)`` gives the same held-out patients
    embedded with the champion's encoders when they differ from ``held_out.encoder_keys``.
    """
    client = client or MlflowClient()
    labels = np.asarray(held_out.labels).astype(int)
    cand_risk = np.asarray(scorer(model_uri, held_out), float)
    candidate_auroc = _auroc(labels, cand_risk)
    key = held_out_key(held_out)
    looks = count_looks(client, name, key)
    current = champion_version(client, name)
    champ_auroc, gain, blocked = None, None, ""
    if current is not None:
        try:
            champ_risk = _champion_risk(f"models:/{name}@{CHAMPION}", held_out, scorer, features_for, champion_keys)
            champ_auroc = _auroc(labels, champ_risk)
            q = GATE_ALPHA / looks
            gain = paired_auroc_difference(labels, cand_risk, champ_risk, n_boot, seed, quantiles=(q, 1 - q))
        except Exception as exc:  # noqa: BLE001 - an unloadable champion must not block registration
            blocked = f"champion v{current.version} could not be re-scored ({exc})"
            mlflow.set_tag("clinfuse.gate_warning", blocked[:500])
    alias, reason = decide(candidate_auroc, champ_auroc, min_gain, gain, looks)
    if current is not None and champ_auroc is None:
        alias, reason = CANDIDATE, f"{blocked or f'champion v{current.version} could not be re-scored'}; kept, new version is candidate"
    version = _new_version(client, name, model_uri)
    _record(client, name, version.version, alias, reason, candidate_auroc, gain, looks, key)
    mlflow.log_params({"gate_decision": alias, "gate_reason": reason[:500], "registered_version": version.version,
                       "gate_champion_version": str(current.version) if current else "none"})
    mlflow.log_metric("gate_candidate_auroc", candidate_auroc)
    mlflow.log_metric("gate_looks", looks)
    if champ_auroc is not None and np.isfinite(champ_auroc):
        mlflow.log_metric("gate_champion_auroc", champ_auroc)
    if gain is not None:
        mlflow.log_metrics({"gate_auroc_gain": gain.value, "gate_auroc_gain_low": gain.low})
    mlflow.set_tag("clinfuse.gate_decision", alias)
    return GateDecision(name, str(version.version), alias, float(candidate_auroc),
                        str(current.version) if current else None, champ_auroc, reason,
                        gain.low if gain is not None else None, looks)


def _champion_risk(uri: str, held_out: FeatureSet, scorer: Callable[[str, FeatureSet], np.ndarray],
                   features_for: Callable[[dict], FeatureSet] | None,
                   champion_keys: Callable[[str], dict]) -> np.ndarray:
    """The champion's risks on the held-out patients, embedded with the champion's own encoder versions."""
    keys = champion_keys(uri)
    ours = _normal_keys(held_out.encoder_keys)
    features = held_out
    if keys and ours and keys != ours:
        if features_for is None:
            raise ValueError(f"it was trained on embeddings from other encoder versions ({keys}) than the "
                             f"candidate's ({ours}) and no features with them were given")
        features = features_for(keys)
        if tuple(features.patient_ids) != tuple(held_out.patient_ids):
            raise ValueError("features with the champion's encoders are not the same held-out patients in order")
    return np.asarray(scorer(uri, features), float)


def _record(client: MlflowClient, name: str, version: str, alias: str, reason: str, candidate_auroc: float,
            gain: MetricCI | None, looks: int, key: str) -> None:
    """Alias, tags (decision, AUROC, gain bound, looks, held-out hash) and description of the new version."""
    client.set_registered_model_alias(name, alias, version)
    tags = {"gate_decision": alias, "held_out_auroc": f"{candidate_auroc:.6f}", "gate_looks": str(looks),
            HELD_OUT_TAG: key}
    if gain is not None:
        tags.update(gate_auroc_gain=f"{gain.value:.6f}", gate_auroc_gain_low=f"{gain.low:.6f}")
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.update_model_version(name, version, description=f"Gate: {alias}. {reason}")


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
