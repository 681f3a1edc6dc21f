"""What the model stages read from a home: the features, the answers table, and the features' hash.

Feature loading is assembled here once (manifest + cohort + embedding store ->
:class:`FeatureSet`), for training, evaluation, prediction and the benchmarks.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

from ingestion.home_layout import HomeLayout
from models.features.feature_set import FeatureSet

if TYPE_CHECKING:
    import pandas as pd

EncoderKeys = tuple[tuple[str, tuple[str, str, str] | None], ...]
"""Per modality, the ``(encoder_name, encoder_version, preprocessing_hash)`` of the embeddings to use.

A tuple of pairs (not a dict) so that stage configs stay frozen and hashable.
"""


def as_encoder_keys(keys: dict | None) -> EncoderKeys:
    """``{modality: key | None}`` (e.g. ``EncodeResult.encoder_keys``) as a frozen ``EncoderKeys``."""
    return tuple((m, tuple(k) if k is not None else None) for m, k in sorted((keys or {}).items()))


def home_features(layout: HomeLayout, encoder_keys: dict, cohort: "pd.DataFrame | None" = None) -> FeatureSet:
    """Every cohort patient (the home's cohort, or ``cohort``) with the stored embeddings of ``encoder_keys``.

    Raises ``FileNotFoundError`` naming the stage to run when a store is absent.
    """
    from ingestion.cohort import load_cohort
    from ingestion.manifest import read_manifest
    from models.stores.embeddings import EmbeddingStore
    from models.features.assemble import load_features

    needed = [(layout.manifest_path, "ingest"), (layout.embeddings_dir / "index.parquet", "encode")]
    if cohort is None:
        needed.insert(1, (layout.cohort_path, "ingest (with a cohort table)"))
    for path, stage in needed:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `clinfuse {stage.split()[0]}` first "
                                    f"({stage}), or pass --synthetic N")
    cohort = cohort if cohort is not None else load_cohort(layout.cohort_path)
    return load_features(read_manifest(layout.manifest_path), cohort, EmbeddingStore(layout.embeddings_dir),
                         encoder_keys)


def features_sha256(features: FeatureSet) -> str:
    """Hash of ids, embeddings, mask, covariates and labels: everything a model sees."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(features.patient_ids)).encode())
    for m in features.modalities:
        digest.update(m.encode() + np.ascontiguousarray(features.embeddings[m]).tobytes())
    digest.update(features.mask.tobytes() + np.ascontiguousarray(features.covariates).tobytes())
    if features.labels is not None:
        digest.update(np.asarray(features.labels, dtype=np.float64).tobytes())
    return digest.hexdigest()
