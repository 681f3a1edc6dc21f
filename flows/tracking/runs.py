"""MLflow tracking helpers: one experiment per stage, code version, flat params/metrics, data lineage.

Why a module of its own: every flow logs the same way (experiment
``clinfuse-<stage>``, the git commit and package version as tags, configs as
params, nested metric dicts flattened) so runs of different stages can be
compared and traced back to the exact manifest and encoder versions that made
them. Nothing here writes patient identifiers: lineage tables hold only
pseudonymous ids, hashes and counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import json
import math
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from flows.settings import Settings
from ingestion.driver.hashing import sha256_file

EXPERIMENT_PREFIX = "clinfuse-"
HTTP_RETRIES = 3
"""MLflow's own retries of one request to a tracking server (its default, 7, waits about 4 minutes on a server
that is down): 3 wait about 14 s, and the flow's task retries (``flows.flows.tasks.RETRY``) add two more
attempts, so a registration against a dead server fails in about a minute, clearly, instead of hanging.
An ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` set in the environment wins."""
REPO_ROOT = Path(__file__).resolve().parents[2]
_KEY_RE = re.compile(r"[^0-9A-Za-z_\-. /]")


class TrackingUnavailable(ConnectionError):
    """The MLflow tracking server did not answer: nothing the run's data did, so worth a retry, then a clear stop."""


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it was raised from) is a refused, reset or timed-out connection."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError | requests.ConnectionError | requests.Timeout):
            return True
        current = current.__cause__ or current.__context__
    return False


def configure_mlflow(settings: Settings) -> str:
    """Point this process's MLflow client at ``settings.tracking_uri``; returns the URI."""
    import os

    settings.home.mkdir(parents=True, exist_ok=True)
    uri = settings.tracking_uri
    if uri.startswith("http"):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_RETRIES))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(stage: str, settings: Settings) -> str:
    """The id of experiment ``clinfuse-<stage>``, created (artifacts under ``artifact_root``) when absent."""
    name = EXPERIMENT_PREFIX + stage
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not settings.tracking_uri.startswith("http"):
        # A tracking server decides artifact locations itself; a local store uses ours.
        location = settings.artifact_root.rstrip("/") + "/" + name
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent flow
        return mlflow.get_experiment_by_name(name).experiment_id


def code_version() -> dict[str, str]:
    """Git commit (with a ``-dirty`` mark) when the code runs from a checkout, and the package version."""
    tags = {"clinfuse.version": _package_version()}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        tags["mlflow.source.git.commit"] = commit
        tags["clinfuse.git_dirty"] = str(bool(dirty)).lower()
    except (OSError, subprocess.SubprocessError):
        tags["mlflow.source.git.commit"] = "unknown (not a git checkout)"
    return tags


def _package_version() -> str:
    try:
        return md.version("clinfuse")
    except md.PackageNotFoundError:
        return "unknown"


@contextmanager
def stage_run(stage: str, settings: Settings, run_name: str | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run in experiment ``clinfuse-<stage>`` tagged with the code version; ends with the block.

    A tracking server that does not answer (before or inside the block) raises :class:`TrackingUnavailable`
    naming the server and what is kept, rather than MLflow's request error.
    """
    configure_mlflow(settings)
    try:
        exp = experiment_id(stage, settings)
        all_tags = {**code_version(), "clinfuse.stage": stage, **(tags or {})}
        with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=all_tags) as run:
            yield run
    except Exception as exc:
        if isinstance(exc, TrackingUnavailable) or not unreachable(exc):
            raise
        raise TrackingUnavailable(
            f"MLflow at {settings.tracking_uri} did not answer during the {stage} run ({type(exc).__name__}); "
            f"nothing was registered half-way and what was computed stays under {settings.home}: re-run the same "
            "command once MLflow is back (a trained model is registered without training again)") from exc


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``a.b.c`` keys (MLflow keys allow dots)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = _KEY_RE.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def log_config(config: Any, prefix: str = "") -> dict[str, str]:
    """Log a dataclass or mapping as params, every field; returns what was logged."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    params = {k: json.dumps(v) if isinstance(v, list | tuple) else str(v)
              for k, v in flatten(values, prefix).items()}
    params = {k: v[:6000] for k, v in params.items()}
    mlflow.log_params(params)
    return params


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested metrics dict (bools and strings are not metrics)."""
    out = {}
    for key, value in flatten(metrics, prefix).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def log_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Log every evaluation figure of a nested dict; returns what was logged."""
    values = numeric_metrics(metrics, prefix)
    if values:
        mlflow.log_metrics(values)
    return values


def manifest_lineage(manifest: pd.DataFrame) -> pd.DataFrame:
    """The PHI-free view of the manifest that lineage records: ids, hashes, modality, status."""
    cols = [c for c in ("item_id", "patient_id", "modality", "content_sha256", "status", "pipeline_version")
            if c in manifest.columns]
    return manifest.loc[:, cols].reset_index(drop=True)


def _file_source(uri: str):
    """The dataset source for a local file URI, picked explicitly.

    MLflow registers two local-artifact source classes (for the schemes "" and "file"), so resolving a
    file URI by string warns on every run that it is ambiguous; both read the file the same way.
    """
    from mlflow.data.dataset_source_registry import get_registered_sources

    for source in get_registered_sources():
        if source._can_resolve(uri):
            return source._resolve(uri)
    raise ValueError(f"MLflow has no dataset source for {uri}")


def log_lineage(manifest_path: Path, encoder_versions: pd.DataFrame | None = None,
                context: str = "training") -> dict[str, str]:
    """Record the manifest (hash + PHI-free table) and encoder versions as MLflow dataset inputs.

    ``encoder_versions`` has one row per ``(modality, encoder_name, encoder_version, preprocessing_hash)``.
    Returns the digests logged, also set as run tags for quick search.
    """
    manifest_path = Path(manifest_path)
    digest = sha256_file(manifest_path)
    manifest = pd.read_parquet(manifest_path)
    dataset = mlflow.data.from_pandas(manifest_lineage(manifest), source=_file_source(manifest_path.as_uri()),
                                      name="manifest", digest=digest[:32])
    mlflow.log_input(dataset, context=context)
    tags = {"clinfuse.manifest_sha256": digest}
    if encoder_versions is not None and len(encoder_versions):
        enc = encoder_versions.reset_index(drop=True)
        enc_digest = hashlib.sha256(enc.to_csv(index=False).encode()).hexdigest()
        mlflow.log_input(mlflow.data.from_pandas(enc, name="encoders", digest=enc_digest[:32]), context=context)
        tags["clinfuse.encoders_sha256"] = enc_digest
        for row in enc.itertuples(index=False):
            tags[f"clinfuse.encoder.{getattr(row, 'modality', row[0])}"] = \
                f"{getattr(row, 'encoder_name', '')}@{getattr(row, 'encoder_version', '')}"
    mlflow.set_tags(tags)
    return tags


def run_url(settings: Settings, run: mlflow.entities.Run | mlflow.ActiveRun) -> str:
    """A link to the run: the server's UI page when tracking goes to a server, the run id otherwise."""
    info = run.info
    uri = settings.tracking_uri
    if uri.startswith("http"):
        return f"{uri.rstrip('/')}/#/experiments/{info.experiment_id}/runs/{info.run_id}"
    return f"mlflow run {info.run_id} (open with: mlflow ui --backend-store-uri {uri})"
