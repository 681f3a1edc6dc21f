"""The common shape of every modality encoder, and the torch plumbing they share.

An encoder turns one normalised array (see docs/CONTRACTS.md) into a fixed-length
float32 vector. Its identity for the embedding store is ``(name, version,
preprocessing_hash)``: ``version`` hashes the weights *and* the preprocessing
config, so retraining or re-configuring an encoder can never return stale
embeddings from the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from ingestion.atomic_files import atomic_write_bytes
from models.encoders.identity import EncoderKey  # noqa: F401 - defined torch-free, re-exported here

log = logging.getLogger(__name__)

Item = dict[str, Any]
"""A prepared item, MONAI dictionary style: ``{"x": network input, "extra": fixed features}``."""


@runtime_checkable
class Encoder(Protocol):
    """What :func:`models.features.assemble.encode_manifest` and the pretraining loop rely on."""

    name: str
    modality: str

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def preprocessing_hash(self) -> str: ...

    def key(self) -> EncoderKey: ...

    def load(self, path: Path) -> Any:
        """Read one normalised array file (``.npy`` or note ``.json``) as the encoder expects it."""

    def encode_batch(self, items: Sequence[Any]) -> np.ndarray:
        """Embed loaded items; float32 ``(len(items), dim)``, deterministic for fixed weights."""


def stable_hash(obj: Any, n: int = 12) -> str:
    """Short sha256 of a JSON-able object (sorted keys), for config and preprocessing hashes."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def state_dict_hash(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers in a fixed order (bytes, not pickles)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def resolve_device(device: str) -> torch.device:
    """``auto`` means CUDA when present; asking for CUDA without it is an actionable error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(device)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned, asynchronous host-to-GPU copy on CUDA; a no-op on CPU."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x


def auto_batch_size(encoder: object, cpu_default: int = 16, cap: int = 1024) -> int:
    """A batch that fits: ``cpu_default`` on CPU, half the free GPU memory over per-item need on CUDA."""
    device = getattr(encoder, "device", None)
    if isinstance(device, str):  # the note encoder keeps its device as a string ("cuda")
        device = torch.device(device)
    if not isinstance(device, torch.device) or device.type != "cuda":
        return cpu_default
    free, _ = torch.cuda.mem_get_info(device)
    per_item = int(getattr(encoder, "activation_bytes", 64 << 20))
    return int(max(cpu_default, min(cap, free // 2 // per_item)))


def saved_weights(encoders_dir: Path | None, name: str, suffix: str = ".pt") -> list[Path]:
    """``<name>-<version><suffix>`` files in ``encoders_dir``, newest (by modification time) first."""
    if encoders_dir is None or not Path(encoders_dir).is_dir():
        return []
    files = [p for p in Path(encoders_dir).glob(f"{name}-*{suffix}") if p.stem[len(name) + 1:].isalnum()]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def latest_weights(encoders_dir: Path | None, name: str, suffix: str = ".pt") -> Path | None:
    """Newest ``<name>-<version><suffix>`` in ``encoders_dir``, or None."""
    files = saved_weights(encoders_dir, name, suffix)
    return files[0] if files else None


_INIT_LOCK = threading.Lock()
"""Seeded initialisation draws from torch's global generator; two encoders built at once in threads (the
encode flow maps its four modality tasks concurrently) would interleave their draws, giving a "seeded" init
whose version no one can rebuild (so a model pinned to it could not be re-encoded). Inits take turns."""


class IncompatibleWeights(ValueError):
    """Saved weights made for another preprocessing or feature revision of the encoder."""


class TorchEncoder:
    """Base of the trainable encoders: seeded network, optional saved weights, batched inference.

    Subclasses set ``name``/``modality``, hold their preprocessing config in a frozen
    dataclass ``self.config`` and implement :meth:`build_network`, :meth:`prepare`
    (deterministic, cacheable) and :meth:`augmentation` (random, pretraining only).
    ``forward`` maps prepared items to the trainable part of the embedding; any
    ``extra`` fixed features are concatenated after it.
    """

    name: str = "torch"
    modality: str = ""
    extra_dim: int = 0
    activation_bytes: int = 64 << 20
    """Rough GPU memory one item needs in inference; sizes automatic CUDA batches."""
    revision: int = 1
    """Bump when the code that turns an array into a vector changes (enters preprocessing_hash)."""
    site_sha256: str | None = None
    """sha256 of the site's own weights file these weights came from (or were trained from), else None.
    It enters :attr:`version`, so embeddings from site weights never share a key with the project's own,
    even when the numbers are equal (see :mod:`models.encoders.site_weights`)."""

    def __init__(self, config: Any, *, seed: int = 0, encoders_dir: Path | None = None,
                 device: str = "cpu") -> None:
        self.config = config
        self.seed = seed
        self.device = resolve_device(device)
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):  # one seeded init at a time: see _INIT_LOCK
            torch.manual_seed(seed)
            self.net: nn.Module = self.build_network()
        self.net.eval()
        self.weights_path: Path | None = None
        self._version: str | None = None
        for path in saved_weights(encoders_dir, self.name):  # newest compatible file wins
            try:
                self.load_weights(path)
                break
            except IncompatibleWeights as exc:
                log.warning("%s", exc)
        self.net.to(self.device)

    # -- to implement -------------------------------------------------------------
    def build_network(self) -> nn.Module:
        raise NotImplementedError

    def prepare(self, array: np.ndarray) -> Item:
        raise NotImplementedError

    def augmentation(self) -> Callable[[Item], Item]:
        return lambda item: item

    @property
    def net_dim(self) -> int:
        raise NotImplementedError

    # -- identity -----------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.net_dim + self.extra_dim

    @property
    def preprocessing_hash(self) -> str:
        return stable_hash({"modality": self.modality, "revision": self.revision, "dim": self.dim,
                            **asdict(self.config)})

    @property
    def version(self) -> str:
        """Hash of weights + preprocessing config; recomputed after the weights change."""
        if self._version is None:
            site = [f"site-weights:{self.site_sha256}"] if self.site_sha256 else []
            self._version = stable_hash([state_dict_hash(self.net), self.preprocessing_hash] + site)
        return self._version

    def key(self) -> EncoderKey:
        return EncoderKey(self.name, self.version, self.preprocessing_hash)

    def weights_changed(self) -> None:
        """Call after training the network in place so :attr:`version` is recomputed."""
        self._version = None

    # -- weights ------------------------------------------------------------------
    def save_weights(self, encoders_dir: Path) -> Path:
        """Write ``<encoders_dir>/<name>-<version>.pt`` atomically; returns the path."""
        self.weights_changed()
        path = Path(encoders_dir) / f"{self.name}-{self.version}.pt"
        buf = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save({"state_dict": state, "config": asdict(self.config), "name": self.name,
                    "preprocessing_hash": self.preprocessing_hash, "site_sha256": self.site_sha256}, buf)
        atomic_write_bytes(path, buf.getvalue())
        self.weights_path = path
        return path

    def load_weights(self, path: Path) -> None:
        """Load saved weights; a file for other preprocessing, or whose hash does not match, is refused."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if (not configs_equal(blob.get("config") or {}, asdict(self.config))
                or blob.get("preprocessing_hash") != self.preprocessing_hash):
            raise IncompatibleWeights(f"{path} was trained for other preprocessing ({blob.get('config')}); "
                                      "ignored: retrain with `clinfuse pretrain`")
        self.net.load_state_dict(blob["state_dict"])
        self.site_sha256 = blob.get("site_sha256") or None
        self.weights_changed()
        expected = Path(path).stem[len(self.name) + 1:]
        if expected != self.version:
            raise ValueError(f"{path}: weights hash to version {self.version}, not {expected}; "
                             "the file is corrupt or was renamed")
        self.weights_path = Path(path)

    # -- inference ----------------------------------------------------------------
    def load(self, path: Path) -> np.ndarray:
        return np.load(path, allow_pickle=False)

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        """Trainable embedding of prepared items, on ``self.device`` (gradients flow)."""
        x = torch.from_numpy(np.stack([np.asarray(it["x"], np.float32) for it in items]))
        return self.net(to_device(x, self.device))

    def embed_prepared(self, items: Sequence[Item]) -> torch.Tensor:
        """Full embedding (trainable part + fixed extras) of prepared items."""
        z = self.forward(items).float()
        if self.extra_dim:
            extra = torch.from_numpy(np.stack([it["extra"] for it in items]).astype(np.float32))
            z = torch.cat([z, extra.to(z.device)], dim=1)
        return z

    def encode_batch(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """Embed normalised arrays: eval mode, no grad, mixed precision on CUDA only."""
        if len(items) == 0:
            return np.zeros((0, self.dim), np.float32)
        prepared = [self.prepare(a) for a in items]
        self.net.eval()
        amp = (torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else nullcontext())
        with torch.inference_mode(), amp:
            z = self.embed_prepared(prepared)
        return z.float().cpu().numpy().astype(np.float32)


def configs_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal after a JSON round trip (tuples saved by torch come back as tuples, configs as lists)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
