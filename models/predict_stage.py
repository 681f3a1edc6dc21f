"""The predict stage: one saved model scores a cohort on embeddings from the encoder versions it recorded.

Why a stage of its own (re-exported by :mod:`models.stages`): predict used to be
assembled inside the flows, and the pipeline scored with the *newest* encoders'
embeddings while the predict flow pinned the champion's, so the same model gave a
patient two different inputs depending on the command. Here there is one path:
the model's recorded encoder keys are read from the model itself (no caller can
pass others), the store is brought up to date with exactly those weights
(:func:`models.features.assemble.encode_pinned`; store hits cost a lookup), the
cohort's patients are scored one by one (raw covariates, the model's training
statistics: the batch changes nothing) and the batch is appended to the
predictions store with the model's name, version and run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingestion.home_layout import HomeLayout
from models.features.stage_inputs import EncoderKeys, as_encoder_keys


@dataclass(frozen=True)
class PredictConfig:
    """Which model scores which cohort of a home, and the stamps its batch carries."""

    home: Path
    model_dir: Path
    """the saved model folder (the champion's, downloaded from the registry by version)"""
    model_name: str
    model_version: str
    run_id: str
    cohort_csv: Path | None = None
    """the batch's cohort CSV (pseudonymised here with ``secret``); None: every patient of the home's cohort"""
    n_mc: int = 30
    seed: int = 7
    """the encoders' seed (a seeded-init encoder must give the embeddings the model was trained on)"""
    device: str = "cpu"
    note_model_cache: Path | None = None
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class PredictResult:
    """The stored batch, what scored it, and the counts a person reads."""

    path: Path
    n: int
    model_version: str
    run_id: str
    abstained: int
    mean_risk: float | None
    encoder_keys: EncoderKeys

    def as_dict(self) -> dict[str, Any]:
        """The flows' and the CLI's view (``path`` as text, encoder keys as a mapping)."""
        return {"path": str(self.path), "n": self.n, "model_version": self.model_version, "run_id": self.run_id,
                "abstained": self.abstained, "mean_risk": self.mean_risk, "encoder_keys": dict(self.encoder_keys)}


def recorded_encoder_keys(model: Any) -> EncoderKeys:
    """The encoder versions ``model`` was trained on; ValueError when it recorded none (nothing to pin)."""
    keys = as_encoder_keys({m: k for m, k in (model.encoder_keys or {}).items()})
    if not any(k is not None for _, k in keys):
        raise ValueError("the model recorded no encoder versions (trained on a synthetic cohort?): it cannot "
                         "score a home's patients; train it on the home's embeddings")
    return keys


def predict(config: PredictConfig) -> PredictResult:
    """Score the cohort with the model at ``config.model_dir`` and append one batch to the predictions store."""
    from ingestion.manifest import read_manifest
    from models.features.assemble import encode_pinned
    from models.features.stage_inputs import home_features
    from models.stores.embeddings import EmbeddingStore
    from models.stores.predictions import append_batch
    from models.training.trained_model import TrainedModel

    layout = HomeLayout.at(config.home)
    model = TrainedModel.load(config.model_dir, device=config.device)
    keys = recorded_encoder_keys(model)
    encode_pinned(read_manifest(layout.manifest_path), layout.root, EmbeddingStore(layout.embeddings_dir),
                  dict(keys), layout.encoders_dir, device=config.device, seed=config.seed,
                  quarantine_dir=layout.quarantine_dir, note_model_cache=config.note_model_cache)
    features = home_features(layout, dict(keys), _batch_cohort(config))
    out = score_in_chunks(model, features, config.n_mc)
    out["predicted_class"] = out["predicted_class"].astype("int64")  # the registered pyfunc's output types
    out["abstain"] = out["abstain"].astype(bool)
    path = append_batch(layout.predictions_dir, out, model_name=config.model_name,
                        model_version=config.model_version, run_id=config.run_id)
    return PredictResult(path, len(out), config.model_version, config.run_id, int(out["abstain"].sum()),
                         float(out["risk"].mean()) if len(out) else None, keys)


PREDICT_CHUNK = 1024
"""Patients scored at once. The Monte-Carlo redraws of imputed patients hold n_mc x patients x embedding
floats, so scoring the whole cohort in one call made predict's peak memory grow with the cohort (issue 25:
505 -> 697 MiB from 500 to 5,000 patients); per chunk it is bounded. A patient's score does not depend on
the batch (its draws are seeded by its id: tests/models/test_invariance.py), so chunks change no score."""


def score_in_chunks(model: Any, features: Any, n_mc: int, chunk: int = PREDICT_CHUNK) -> Any:
    """``model.predict`` over ``features`` ``chunk`` patients at a time, rows in the features' order."""
    import numpy as np
    import pandas as pd

    n = len(features)
    if n <= chunk:
        return model.predict(features, n_mc=n_mc, seed=0)
    parts = [model.predict(features.subset(np.arange(i, min(i + chunk, n))), n_mc=n_mc, seed=0)
             for i in range(0, n, chunk)]
    return pd.concat(parts, ignore_index=True)


def _batch_cohort(config: PredictConfig) -> Any:
    """The batch's pseudonymised cohort frame, read by ingestion's own reader; None for the home's cohort."""
    if config.cohort_csv is None:
        return None
    from ingestion.cohort import read_cohort

    return read_cohort(config.cohort_csv, config.secret).frame

