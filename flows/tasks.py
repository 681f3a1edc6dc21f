"""Thin Prefect tasks: each wraps one library call, with retries, a cache key over content hashes, a name.

Caching: each expensive task's cache key is a hash of what determines its
output (source file contents, the manifest file, the features, the configs),
so a re-run on unchanged data returns the stored result in state ``Cached``
without running. ``refresh_cache`` is switched on by the flows when a task's
outputs were deleted, so a cache hit never points at files that are gone.
Results are pickled into Prefect's local storage under ``CLINFUSE_HOME``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from ingestion.ingest import SOURCE_HASHES
from models.feature_set import FeatureSet

RETRY = {"retries": 2, "retry_delay_seconds": exponential_backoff(backoff_factor=5), "retry_jitter_factor": 0.5}
"""I/O can fail transiently (network filesystems, a locked store): retry after ~5 s, then ~10 s."""


# -- content hashes used as cache keys ------------------------------------------------------
def _sha() -> Any:
    return hashlib.sha256()


def tree_sha256(root: Path, exclude: tuple[Path, ...] = (), hashes: Path | None = None) -> str:
    """Hash of every file's relative path and content under ``root`` (sorted, so order-independent).

    With ``hashes`` (the home's source-hash cache), files unchanged since they were
    last hashed are not read: a warm run's cache key costs a directory walk.
    """
    from ingestion.ingest_hashing import HashCache

    digest = _sha()
    skip = {p.resolve() for p in exclude}
    cache = HashCache(hashes)
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        if path.resolve() in skip:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(bytes.fromhex(cache.sha256(path)))
    cache.save()
    return digest.hexdigest()


def file_sha256(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return "absent"
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def features_sha256(features: FeatureSet) -> str:
    """Hash of ids, embeddings, mask, covariates and labels: what a model sees."""
    digest = _sha()
    digest.update(json.dumps(list(features.patient_ids)).encode())
    for m in features.modalities:
        digest.update(m.encode() + np.ascontiguousarray(features.embeddings[m]).tobytes())
    digest.update(features.mask.tobytes() + np.ascontiguousarray(features.covariates).tobytes())
    if features.labels is not None:
        digest.update(np.asarray(features.labels, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _ingest_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    cohort = Path(p["cohort_csv"]) if p["cohort_csv"] else None
    skip = (*((cohort,) if cohort else ()), *map(Path, p.get("exclude") or ()))
    hashes = Path(p["home"]) / SOURCE_HASHES  # the cache ingest itself keeps: unchanged files are not read
    return _key("ingest", p["home"], tree_sha256(Path(p["source"]), skip, hashes),
                file_sha256(cohort), p["reader"], hashlib.sha256(p["secret"].encode()).hexdigest())


def _encode_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    enc_dir = Path(p["encoders_dir"])
    return _key("encode", p["home"], p["modality"], file_sha256(Path(p["home"]) / "manifest.parquet"),
                tree_sha256(enc_dir) if enc_dir.is_dir() else "none", p["options"])


def _train_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    return _key("train", str(model_dir_for(p["features"], p["config"], p["out_root"])))


def model_dir_for(features: FeatureSet, config: dict[str, Any], out_root: str | Path) -> Path:
    """Where the model trained on ``features`` with ``config`` is saved: named by the hash of both."""
    return Path(out_root) / _key("model", features_sha256(features), config)[:16]


def _model_dir_sha(model_dir: str) -> str:
    return tree_sha256(Path(model_dir))


def _evaluate_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    return _key("evaluate", p["model_key"], features_sha256(p["held_out"]), p["out_dir"])


def _register_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    return _key("register", _model_dir_sha(p["model_dir"]), features_sha256(p["held_out"]), p["tracking_uri"])


def _predict_key(context: TaskRunContext, p: dict[str, Any]) -> str:
    return _key("predict", p["model_version"], p["run_id"], features_sha256(p["features"]), p["predictions_dir"])


# -- tasks ---------------------------------------------------------------------------------------
@task(name="ingest", cache_key_fn=_ingest_key, persist_result=True, **RETRY)
def ingest_task(source: str, cohort_csv: str | None, home: str, secret: str, reader: dict[str, Any],
                workers: int, exclude: tuple[str, ...] = ()) -> Any:
    """``ingestion.ingest.ingest``: manifest, arrays, quarantine and cohort under ``home``."""
    from ingestion.ingest import ingest

    logger = get_run_logger()
    # The library forks its reader processes. Forking this process (Prefect's event loop and log
    # threads hold locks) can leave a child deadlocked, so the call runs in a freshly spawned,
    # single-threaded process, which then forks safely.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        report = pool.submit(ingest, Path(source), Path(cohort_csv) if cohort_csv else None, Path(home), secret,
                             workers=workers, exclude=tuple(map(Path, exclude)), **reader).result()
    logger.info("ingest: %d new, %d skipped, %d quarantined in %.1f s", report.new, report.skipped,
                report.n_quarantined, report.elapsed_s)
    return report


def fit_patients_of_home(home: str | Path, seed: int) -> tuple[str, ...] | None:
    """Labelled, not held-out patients of the home's cohort (what encoders may be fitted on); None without a cohort."""
    from flows.train_flow import HELD_OUT_FRACTION, held_out_mask
    from ingestion.cohort import load_cohort
    from models.features import fit_patient_ids

    path = Path(home) / "cohort.parquet"
    if not path.exists():
        return None
    cohort = load_cohort(path)
    ids = tuple(cohort["patient_id"].astype(str))
    held = [p for p, h in zip(ids, held_out_mask(ids, HELD_OUT_FRACTION, seed)) if h]
    return fit_patient_ids(cohort, held)


@task(name="encode", cache_key_fn=_encode_key, persist_result=True, tags=["gpu"], **RETRY)
def encode_task(modality: str, home: str, store_root: str, encoders_dir: str, quarantine_dir: str,
                options: dict[str, Any]) -> Any:
    """``models.features.encode_manifest`` for one modality (the four modalities fan out)."""
    from ingestion.manifest import read_manifest
    from models.embedding_store import EmbeddingStore
    from models.features import encode_manifest

    manifest = read_manifest(Path(home) / "manifest.parquet")
    report = encode_manifest(manifest, Path(home), EmbeddingStore(Path(store_root)), [modality],
                             encoders_dir=Path(encoders_dir), quarantine_dir=Path(quarantine_dir),
                             fit_patients=fit_patients_of_home(home, options.get("seed", 0)), **options)
    get_run_logger().info("encode %s: %d encoded, %d store hits, %d failed", modality,
                          report.encoded.get(modality, 0), report.hits.get(modality, 0), report.failed(modality))
    return report


@task(name="load-features", cache_policy=NO_CACHE, **RETRY)
def load_features_task(home: str, store_root: str, encoder_keys: dict[str, Any],
                       cohort: pd.DataFrame | None = None) -> FeatureSet:
    """``models.features.load_features`` for the home's cohort (or the given pseudonymised cohort)."""
    from ingestion.cohort import load_cohort
    from ingestion.manifest import read_manifest
    from models.embedding_store import EmbeddingStore
    from models.features import load_features

    cohort = cohort if cohort is not None else load_cohort(Path(home) / "cohort.parquet")
    manifest = read_manifest(Path(home) / "manifest.parquet")
    return load_features(manifest, cohort, EmbeddingStore(Path(store_root)), encoder_keys)


@task(name="train", cache_key_fn=_train_key, persist_result=True, tags=["gpu"])
def train_task(features: FeatureSet, config: dict[str, Any], out_root: str) -> str:
    """``models.train.train`` then ``TrainedModel.save``; returns the model folder (named by its input key)."""
    from models.train import TrainConfig, train

    logger = get_run_logger()
    model = train(features, TrainConfig(**config))
    out = model_dir_for(features, config, out_root)
    model.save(out)
    last = model.history[-1] if model.history else {}
    logger.info("trained %s on %d patients (%d epochs): %s", config.get("fusion"), len(features),
                len(model.history), {k: v for k, v in last.items() if isinstance(v, float)})
    return str(out)


@task(name="evaluate", cache_key_fn=_evaluate_key, persist_result=True)
def evaluate_task(model_dir: str, model_key: str, held_out: FeatureSet, out_dir: str,
                  options: dict[str, Any]) -> dict[str, Any]:
    """``models.evaluation`` on the held-out split: ``{"metrics": {...}, "out_dir": report folder}``."""
    from models.trained_model import TrainedModel

    logger = get_run_logger()
    model = TrainedModel.load(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from models.evaluation import evaluate_model
    except ImportError:
        from flows.train_tracking import basic_metrics

        logger.warning("models.evaluation is not installed: held-out AUROC/AUPRC/Brier only, no report")
        metrics = basic_metrics(model.predict_risk(held_out), np.asarray(held_out.labels))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return {"metrics": metrics, "out_dir": str(out)}
    options = dict(options)
    if options.get("answers"):
        from flows.commands.train import read_answers

        options["answers"] = read_answers(Path(options["answers"]), options.pop("secret"))
    options.pop("secret", None)
    result = evaluate_model(model, held_out, out, **options)
    metrics = result["metrics"] if isinstance(result, dict) else getattr(result, "metrics")
    logger.info("held-out evaluation of %s: %s", model_key[:12],
                {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    return {"metrics": metrics, "out_dir": str(out)}


@task(name="register", cache_key_fn=_register_key, persist_result=True, **RETRY)
def register_task(model_dir: str, held_out: FeatureSet, tracking_uri: str, run_args: dict[str, Any]) -> dict:
    """Log the training run (params, metrics, lineage, report, pyfunc) and register it through the gate."""
    from flows.train_tracking import log_training_run

    return log_training_run(Path(model_dir), held_out, **run_args)


@task(name="predict", cache_key_fn=_predict_key, persist_result=True, **RETRY)
def predict_task(features: FeatureSet, model_version: str, run_id: str, predictions_dir: str,
                 n_mc: int = 30) -> dict[str, Any]:
    """Score with ``models:/clinfuse@champion`` and append one batch to the predictions store."""
    from flows.registry import MODEL_NAME, load_champion, score
    from models.predictions_store import append_batch

    model, version, champion_run = load_champion()
    if version != model_version:
        raise RuntimeError(f"champion moved from v{model_version} to v{version} while predicting; re-run predict")
    out = score(model, features, n_mc=n_mc)
    path = append_batch(Path(predictions_dir), out, model_name=MODEL_NAME, model_version=version,
                        run_id=champion_run)
    get_run_logger().info("predicted %d patients with %s v%s -> %s", len(out), MODEL_NAME, version, path.name)
    return {"path": str(path), "n": len(out), "model_version": version, "run_id": champion_run,
            "abstained": int(out["abstain"].sum()), "mean_risk": float(out["risk"].mean()) if len(out) else None}


def summary_rows(report: Any) -> list[dict[str, Any]]:
    """Ingest counts as table rows (modality, status, n) for a Prefect table artifact."""
    return [{"modality": m, "status": s, "n": int(n)} for m, by in report.counts.items() for s, n in by.items()]


def config_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj) if hasattr(obj, "__dataclass_fields__") else dict(obj)
