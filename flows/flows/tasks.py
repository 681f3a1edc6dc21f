"""Thin Prefect tasks: each wraps one library stage, adding a name, retries, a cache key and progress.

Caching: each expensive task's cache key is a hash of what determines its
output (source file contents, the manifest file, the stage config), so a
re-run on unchanged data returns the stored result in state ``Cached`` without
running. ``refresh_cache`` is switched on by the flows when a task's outputs
were deleted, so a cache hit never points at files that are gone. Results are
pickled into Prefect's local storage under ``CLINFUSE_HOME``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from flows import progress
from flows.flows.task_common import RETRY, cache_key, file_sha256, tree_sha256
from ingestion.home_layout import HomeLayout
from models.features.stage_inputs import features_sha256
from models.stages import (
    EncodeConfig, EncodeResult, EvaluateConfig, EvaluationResult, PredictConfig, PredictResult, PretrainResult,
    PretrainStageConfig, TrainResult, TrainStageConfig,
)

def _home_key(config: Any) -> tuple[str, str]:
    """The manifest's content hash and the encoder weights': what every model stage reads from a home."""
    layout = HomeLayout.at(config.home)
    enc = layout.encoders_dir
    if not enc.is_dir():
        return file_sha256(layout.manifest_path), "none"
    # The int8 MiniLM is derived from the packaged weights (models.encoders.note_onnx; homes made before
    # the machine-level note model cache built it here): its file, checksum, lock file and a build in
    # progress (.build-*) change no encoder's output, so they must not change the key. The lock file,
    # which stays after the first note chunk built the model, made the first warm run recompute.
    derived = (*enc.glob("minilm-*"), *(p for d in enc.glob(".build-*") for p in d.rglob("*")))
    return file_sha256(layout.manifest_path), tree_sha256(enc, tuple(derived))


def _stage_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    config = p["config"]
    return cache_key(context.task.name, asdict(config), *_home_key(config))


def _evaluate_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    config = p["config"]
    return cache_key("evaluate", asdict(config), tree_sha256(Path(config.model_dir)), file_sha256(config.answers),
                     file_sha256(HomeLayout.at(config.home).cohort_path))


def _register_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    return cache_key("register", tree_sha256(Path(p["model_dir"])), features_sha256(p["held_out"]), p["tracking_uri"])


def _predict_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    """The model (version and run: its downloaded folder's path changes every time), the cohort, the home."""
    config = p["config"]
    relevant = {k: v for k, v in asdict(config).items() if k not in ("model_dir", "secret")}
    cohort = config.cohort_csv or HomeLayout.at(config.home).cohort_path
    return cache_key("predict", relevant, hashlib.sha256(config.secret.encode()).hexdigest(), file_sha256(cohort),
                     *_home_key(config))


# -- tasks ---------------------------------------------------------------------------------------
@task(name="encode", cache_key_fn=_stage_key, persist_result=True, tags=["gpu"], **RETRY)
def encode_task(config: EncodeConfig) -> EncodeResult:
    """``models.stages.encode`` for the config's modalities (the flow maps one task per modality)."""
    from models.stages import encode

    result = encode(config, progress=progress.callback("encode"))
    for m in config.modalities:
        get_run_logger().info("encode %s: %d encoded, %d store hits, %d failed", m, result.encoded.get(m, 0),
                              result.hits.get(m, 0), result.failed(m))
    return result


@task(name="encode-chunks", cache_policy=NO_CACHE, **RETRY)
def plan_encode_task(home: str, chunk_items: int, modalities: tuple[str, ...]) -> list[Any]:
    """``models.encode_chunks.plan_chunks``: the manifest's usable items in chunks of ``chunk_items``."""
    from ingestion.manifest import read_manifest
    from models.encode_chunks import plan_chunks

    return plan_chunks(read_manifest(HomeLayout.at(home).manifest_path), chunk_items, modalities)


@task(name="pretrain", cache_key_fn=_stage_key, persist_result=True, tags=["gpu"])
def pretrain_task(config: PretrainStageConfig) -> PretrainResult:
    """``models.stages.pretrain``: new encoder weight versions under the home's encoders."""
    from models.stages import pretrain

    result = pretrain(config, progress=progress.callback("pretrain"))
    get_run_logger().info("pretrained %s on %d patients", dict(result.versions), result.n_patients)
    return result


@task(name="train", cache_key_fn=_stage_key, persist_result=True, tags=["gpu"])
def train_task(config: TrainStageConfig) -> TrainResult:
    """``models.stages.train`` (every strategy); the model lands in ``<models_dir>/<model_id>``."""
    from models.stages import train

    result = train(config, progress=progress.callback("train"))
    get_run_logger().info("trained %s (%s) on %d patients: best epoch %d, val AUROC %.3f", result.model_id,
                          config.strategy, result.n_train, result.best_epoch, result.best_val_auroc)
    return result


@task(name="evaluate", cache_key_fn=_evaluate_key, persist_result=True)
def evaluate_task(config: EvaluateConfig) -> EvaluationResult:
    """``models.stages.evaluate``: held-out metrics and the report folder."""
    from models.stages import evaluate

    result = evaluate(config)
    get_run_logger().info("held-out evaluation of %s on %d patients: AUROC %.3f", Path(config.model_dir).name,
                          result.n_held_out, result.metrics.get("auroc", float("nan")))
    return result


@task(name="register", cache_key_fn=_register_key, persist_result=True, **RETRY)
def register_task(model_dir: str, held_out: Any, tracking_uri: str, run_args: dict[str, Any]) -> dict:
    """Log the training run (params, metrics, lineage, report, pyfunc) and register it through the gate."""
    from flows.tracking.train_run import log_training_run

    return log_training_run(Path(model_dir), held_out, **run_args)


@task(name="predict", cache_key_fn=_predict_key, persist_result=True, **RETRY)
def predict_task(config: PredictConfig) -> PredictResult:
    """``models.stages.predict``: the model's own encoder versions, one batch appended to the predictions store."""
    from models.stages import predict

    result = predict(config)
    get_run_logger().info("predicted %d patients with %s v%s -> %s", result.n, config.model_name,
                          result.model_version, result.path.name)
    return result
